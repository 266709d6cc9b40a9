"""The source seam (hmi/sources/base.py, hmi/config/connections/): every kind is found through
one registry, and a kind from another package plugs in by entry point alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hmi.config.connections import KINDS
from hmi.config.loader import ConfigError, validate_project
from hmi.sources.base import Source, source_factory

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(__file__).parent / "plugin_kind"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_registered_kind_names_a_source_the_runtime_can_make(kind: str) -> None:
    model = KINDS[kind]
    assert model.label and model.source_class, f"{kind} must say its label and its source"
    factory = source_factory(model.model_construct(kind=kind))
    for attribute in ("run", "rejected"):
        assert hasattr(factory, attribute), f"{model.source_class} lacks {attribute}"


def _project(connections: dict[str, object], tags: dict[str, object]) -> dict[str, object]:
    return {"format": 2, "project": {"name": "seam"}, "machines": {"m1": {}}, "connections": connections, "tags": tags}


def test_a_key_of_another_kind_is_refused_naming_the_kind_that_takes_it() -> None:
    raw = _project(
        {"plc": {"kind": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840"}, "broker": {"kind": "mqtt", "host": "h"}},
        {
            "m1.a": {"connection": "plc", "address": "ns=2;s=A", "json_path": "x"},
            "m1.b": {"connection": "broker", "address": "t/b", "index": 2},
        },
    )
    with pytest.raises(ConfigError) as caught:
        validate_project(raw, "f.toml")
    messages = {(i.path, i.message) for i in caught.value.issues}
    assert ('tags."m1.a".json_path', "json_path is for MQTT tags; 'plc' is OPC UA") in messages
    assert ('tags."m1.b".index', "index is for OPC UA tags; 'broker' is MQTT") in messages


def test_tag_specs_carry_the_typed_address_of_their_kind() -> None:
    from hmi.config.connections import MqttAddress, OpcUaAddress

    raw = _project(
        {"plc": {"kind": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840"}, "broker": {"kind": "mqtt", "host": "h"}},
        {
            "m1.a": {"connection": "plc", "address": "ns=2;s=A", "index": 3},
            "m1.b": {"connection": "broker", "address": "t/b", "json_path": "v[1]"},
        },
    )
    specs = {s.name: s for s in validate_project(raw, "f.toml").tag_specs()}
    assert specs["m1.a"].source_address == OpcUaAddress("ns=2;s=A", index=3)
    assert specs["m1.b"].source_address == MqttAddress("t/b", "v[1]")


RUN_PLUGIN = r"""
import asyncio, json, sys
from pathlib import Path
from hmi.config.loader import load_project
from hmi.historian.reader import HistorianReader
from hmi.runtime import Runtime

project = load_project(sys.argv[1])
runtime = Runtime(project)
source = runtime.sources[0]
asyncio.run(runtime.run(duration_s=1.5))
with HistorianReader(Path(sys.argv[2])) as reader:
    series = reader.read("m1.count", 0, 2**62)
    print(json.dumps({
        "type": type(source).__name__,
        "attempts": source.attempts,
        "values": [float(v) for v in series.values],
        "quality": [int(q) for q in series.quality],
    }))
"""


def test_a_kind_from_another_package_plugs_in_by_entry_point(tmp_path: Path) -> None:
    """One model, one source module, one entry point: the project file takes the new kind, the
    runtime makes its source, its values are recorded, and on stop its tags are COMM_LOST."""
    db = tmp_path / "h.sqlite"
    project = tmp_path / "p.toml"
    project.write_text(
        f"""format = 2
[project]
name = "plug-in"
[historian]
url = "sqlite:///{db}"
[machines.m1]
[connections.counter1]
kind = "counter"
period_s = 0.05
fail_first = 2
[tags."m1.count"]
connection = "counter1"
address = "2.5"
"""
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), str(REPO)]), "HMI_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", RUN_PLUGIN, str(project), str(db)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["type"] == "CounterSource"
    assert out["attempts"] == 3  # two refusals, retried by the shared policy, then connected
    good = [v for v, q in zip(out["values"], out["quality"], strict=True) if q == 0]
    assert len(good) >= 5 and good[:3] == [2.5, 5.0, 7.5]
    assert out["quality"][-1] != 0, "the last record of a stopped source is not GOOD"


def test_a_kind_whose_address_is_wrong_is_refused_by_its_own_check(tmp_path: Path) -> None:
    project = tmp_path / "p.toml"
    project.write_text(
        'format = 2\n[project]\nname = "x"\n[machines.m1]\n[connections.c]\nkind = "counter"\n'
        '[tags."m1.count"]\nconnection = "c"\naddress = "two"\n'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), str(REPO)]), "HMI_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "hmi", "check-config", str(project)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert 'tags."m1.count".address: a counter tag\'s address is its step, a number' in result.stdout + result.stderr


def test_without_the_plug_in_the_kind_is_unknown() -> None:
    raw = _project({"c": {"kind": "counter"}}, {})
    with pytest.raises(ConfigError) as caught:
        validate_project(raw, "f.toml")
    assert any(i.path == "connections.c.kind" and "unknown kind 'counter'" in i.message for i in caught.value.issues)
    assert isinstance(Source, type)
