"""Project files: the demo is valid; each broken file gets the exact message an engineer needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hmi.config import ConfigError, load_project
from tests.config.common import errors
from tests.config.common import write_project as write
from tests.helpers import DEMO_PROJECT, REPO

MINIMAL = """
[project]
name = "Line 1"

[connections.plc]
kind = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840"

[machines.cnc01]
label = "CNC"

[tags."cnc01.speed"]
connection = "plc"
address = "ns=2;s=Speed"
unit = "rpm"
range = [0, 100]

[[trends]]
name = "Speed"
pens = ["cnc01.speed"]
"""


def test_demo_project_is_valid() -> None:
    project = load_project(DEMO_PROJECT)
    assert project.project.name == "Demo plant"
    assert "cnc01.spindle_speed" in project.tags
    assert project.simulator.enabled
    assert project.connections["plant"].endpoint.endswith("/hmi-demo")


def test_minimal_project_is_valid(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, MINIMAL))
    spec = project.tag_specs()[0]
    assert (spec.name, spec.unit, spec.low, spec.high, spec.connection) == ("cnc01.speed", "rpm", 0, 100, "plc")


BROKEN = {
    "unknown top-level key": (
        MINIMAL + '\n[historain]\nurl = "x"\n',
        ["historain: unknown key (check the spelling)"],
    ),
    "unknown key in a tag": (
        MINIMAL.replace('unit = "rpm"', 'units = "rpm"'),
        ['tags."cnc01.speed".units: unknown key (check the spelling)'],
    ),
    "missing project name": (
        MINIMAL.replace('name = "Line 1"', ""),
        ["project.name: required key is missing"],
    ),
    "endpoint without opc.tcp": (
        MINIMAL.replace("opc.tcp://127.0.0.1:4840", "http://127.0.0.1:4840"),
        ["connections.plc.endpoint: an OPC UA endpoint starts with opc.tcp://"],
    ),
    "unknown connection kind": (
        MINIMAL.replace('kind = "opcua"', 'kind = "modbus"'),
        ["connections.plc.kind: unknown kind 'modbus' (use one of: 'opcua', 'mqtt')"],
    ),
    "negative publishing interval": (
        MINIMAL.replace(
            'endpoint = "opc.tcp://127.0.0.1:4840"',
            'endpoint = "opc.tcp://127.0.0.1:4840"\npublishing_interval_ms = -5',
        ),
        ["connections.plc.publishing_interval_ms: Input should be greater than 0"],
    ),
    "tag on an unknown connection": (
        MINIMAL.replace('connection = "plc"', 'connection = "plcc"'),
        ["tags.\"cnc01.speed\".connection: unknown connection 'plcc' (known: plc)"],
    ),
    "tag of an undefined machine": (
        MINIMAL.replace('[tags."cnc01.speed"]', '[tags."cnc02.speed"]').replace('"cnc01.speed"]', '"cnc02.speed"]'),
        ["tags.\"cnc02.speed\": machine 'cnc02' is not defined under [machines.cnc02]"],
    ),
    "tag name not machine.signal": (
        MINIMAL.replace('[tags."cnc01.speed"]', '[tags."Speed"]').replace('pens = ["cnc01.speed"]', 'pens = ["Speed"]'),
        ["tags.Speed: a tag name is machine.signal in lower snake case"],
    ),
    "range reversed": (
        MINIMAL.replace("range = [0, 100]", "range = [100, 0]"),
        ['tags."cnc01.speed".range: range must be [low, high] with low < high'],
    ),
    "range not numbers": (
        MINIMAL.replace("range = [0, 100]", 'range = [0, "max"]'),
        ['tags."cnc01.speed".range[1]: expected a number, got the string "max"'],
    ),
    "trend pen unknown": (
        MINIMAL.replace('pens = ["cnc01.speed"]', 'pens = ["cnc01.speed", "cnc01.sped"]'),
        ["trends[0].pens[1]: unknown tag 'cnc01.sped'"],
    ),
    "unknown datatype": (
        MINIMAL.replace('unit = "rpm"', 'unit = "rpm"\ndatatype = "double"'),
        ["tags.\"cnc01.speed\".datatype: expected 'float', 'int', 'bool' or 'string', got the string \"double\""],
    ),
    "port out of range": (
        MINIMAL + "\n[simulator]\nopcua_port = 70000\n",
        ["simulator.opcua_port: Input should be less than or equal to 65535"],
    ),
    "unknown time zone": (
        MINIMAL.replace('name = "Line 1"', 'name = "Line 1"\ntimezone = "Mars/Olympus"'),
        ["project.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as 'Europe/Berlin')"],
    ),
    "several errors at once": (
        MINIMAL.replace('unit = "rpm"', "unit = 5").replace('connection = "plc"', 'connection = "x"'),
        ['tags."cnc01.speed".unit: expected a string, got the integer 5'],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_file_message(tmp_path: Path, case: str) -> None:
    """Each broken file is reported as `dotted.key.path: message`, exactly."""
    text, expected = BROKEN[case]
    assert errors(tmp_path, text) == expected


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    assert errors(tmp_path, '[project]\nname = "x\n') == [
        "line 2, column 10: TOML syntax error: Illegal character '\\n'"
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: cannot read the file: No such file or directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b'[project]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_project(path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hmi", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_check_config_ok_prints_summary_and_exits_0() -> None:
    result = run_cli("check-config", str(DEMO_PROJECT))
    assert result.returncode == 0, result.stderr
    assert "OK: project 'Demo plant'" in result.stdout


def test_check_config_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    path = write(
        tmp_path, MINIMAL.replace('unit = "rpm"', 'units = "rpm"').replace('connection = "plc"', 'connection = "x"')
    )
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'{path}: tags."cnc01.speed".units: unknown key (check the spelling)',
    ]


def test_check_config_cross_reference_errors_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('connection = "plc"', 'connection = "x"'))
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{path}: tags.\"cnc01.speed\".connection: unknown connection 'x' (known: plc)"


def test_run_with_a_broken_project_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[project]\n")
    result = run_cli("run", "--project", str(path), "--headless", "--duration", "1")
    assert result.returncode == 2
    assert f"{path}: project.name: required key is missing" in result.stderr


def test_every_project_file_key_is_described_in_the_reference() -> None:
    """docs/project-file.md is the engineer's reference: every key the loader accepts, at any
    depth, is named there (as `key`, `parent.key`, `key = …` or a [section] header)."""
    import re
    import typing

    from pydantic import BaseModel

    from hmi.config.models import Project
    from tests.helpers import REPO

    doc = (REPO / "docs" / "project-file.md").read_text(encoding="utf-8")

    def models_in(annotation: object) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    missing: list[str] = []
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            key = re.escape(field.alias or name)
            described = rf"`{key}[`.]|`\w+\.{key}\b|\b{key}\s*=|\[{key}[\].]|\.{key}\]"
            if not field.exclude and not re.search(described, doc):
                missing.append(f"{path}{field.alias or name}")
            for inner in models_in(field.annotation):
                walk(inner, f"{path}{field.alias or name}.")

    walk(Project, "")
    assert missing == [], f"keys not described in docs/project-file.md: {missing}"
