"""The project file is strict: a value of the wrong TOML type is refused with its key path,
never coerced (`port = "1883"`, `writable = "yes"`), and absurd nesting is a clear error."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hmi.config import ConfigError, load_project
from hmi.config.base import NumberOrBool
from hmi.config.loader import format_key_path, validate_project
from hmi.config.models import Project
from tests.config.common import errors
from tests.helpers import REPO

MQTT = """
[project]
name = "Line 1"

[connections.mqtt]
kind = "mqtt"
host = "127.0.0.1"

[machines.cnc01]

[tags."cnc01.speed"]
connection = "mqtt"
address = "factory/cnc01/speed"
range = [0, 200]
"""


WRONG_TYPES = {
    "port as a string": (
        MQTT.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nport = "1883"'),
        ['connections.mqtt.port: expected an integer, got the string "1883"'],
    ),
    "writable as a string": (
        MQTT + 'writable = "yes"\n',
        ['tags."cnc01.speed".writable: expected true or false, got the string "yes"'],
    ),
    "keepalive as a boolean": (
        MQTT.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nkeepalive_s = true'),
        ["connections.mqtt.keepalive_s: expected an integer, got the boolean true"],
    ),
    "range of strings": (
        MQTT.replace("range = [0, 200]", 'range = ["0", "200"]'),
        [
            'tags."cnc01.speed".range[0]: expected a number, got the string "0"',
            'tags."cnc01.speed".range[1]: expected a number, got the string "200"',
        ],
    ),
    "a float where an integer belongs": (
        MQTT.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nkeepalive_s = 10.0'),
        ["connections.mqtt.keepalive_s: expected an integer, got the number 10.0"],
    ),
    "a boolean where a number belongs": (
        MQTT + "history_deadband = true\n",
        ['tags."cnc01.speed".history_deadband: expected a number, got the boolean true'],
    ),
    "a number where a string belongs": (
        MQTT + "unit = 5\n",
        ['tags."cnc01.speed".unit: expected a string, got the integer 5'],
    ),
    "a date where a string belongs": (
        MQTT + '\n[[shifts]]\nname = "A"\nstart = 06:00:00\nend = "14:00"\n',
        ["shifts[0].start: expected a string, got the time 06:00:00"],
    ),
    "an enum value of the wrong type": (
        MQTT + "datatype = 1\n",
        ["tags.\"cnc01.speed\".datatype: expected 'float', 'int', 'bool' or 'string', got the integer 1"],
    ),
    "a table where a number belongs": (
        MQTT.replace("[machines.cnc01]", "[simulator]\nrate_hz = { hz = 10 }\n\n[machines.cnc01]"),
        ["simulator.rate_hz: expected a number, got a table"],
    ),
    "an array where a table belongs": (
        "simulator = [1]\n" + MQTT,
        ["simulator: expected a table, got an array"],
    ),
    "an axis of the wrong type": (
        MQTT + '\n[[bindings]]\nmachine = "cnc01"\nnode = "Spindle"\nrotate = { tag = "cnc01.speed", axis = 3 }\n',
        ["bindings[0].rotate.axis: expected 'x', 'y', 'z', '-x', '-y' or '-z' or an array, got the integer 3"],
    ),
}


@pytest.mark.parametrize("text, expected", list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_a_wrong_type_is_refused_with_its_key_path(tmp_path: Path, text: str, expected: list[str]) -> None:
    """Each wrong TOML type is an error at its own key, saying what was expected and what the file has."""
    assert errors(tmp_path, text) == expected


def test_what_toml_writes_naturally_is_accepted(tmp_path: Path) -> None:
    """An integer for a float key, arrays for pairs and vectors, strings for enums, booleans in
    a discrete alarm's states: all normal TOML, all accepted."""
    text = (
        MQTT.replace("[machines.cnc01]", "[simulator]\nrate_hz = 10\n\n[machines.cnc01]")
        + 'datatype = "int"\nhistory_deadband = 0\n\n[tags."cnc01.door"]\nconnection = "mqtt"\n'
        + 'address = "factory/cnc01/door"\ndatatype = "bool"\n'
        + '\n[[alarms]]\ntag = "cnc01.door"\ncondition = "discrete"\nstates = [true]\n'
        + '\n[[bindings]]\nmachine = "cnc01"\nnode = "Spindle"\n'
        + 'rotate = { tag = "cnc01.speed", axis = [0, 0, 1] }\n'
        + 'label = { tag = "cnc01.speed", offset = [0, 0.5, 0] }\n'
        + '\n[[cameras]]\nmachine = "cnc01"\nname = "Front"\nposition = [1, 2, 3]\nfocal_point = [0, 0, 0]\n'
    )
    path = tmp_path / "project.toml"
    path.write_text(text, encoding="utf-8")
    project = load_project(path)
    assert project.simulator.rate_hz == 10.0
    assert project.tags["cnc01.speed"].range == (0.0, 200.0)
    assert str(project.tags["cnc01.speed"].datatype) == "int"
    assert project.alarms[0].states == [1.0]
    assert project.bindings[0].rotate is not None and project.bindings[0].rotate.axis == (0.0, 0.0, 1.0)
    assert project.cameras[0].position == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("name", ["demo.toml", "demo-mqtt.toml"])
def test_the_demo_projects_still_load(name: str) -> None:
    """Strict types refuse nothing the shipped examples write."""
    project = load_project(REPO / "config" / name)
    assert project.tags


# -- every key of the schema ---------------------------------------------------------------------

TomlKind = str  # "string", "integer", "float", "boolean", "array", "table", "datetime", "date", "time"
ALL_KINDS = ("string", "integer", "float", "boolean", "array", "table", "datetime", "date", "time")

# Keys whose validator accepts a second TOML type on purpose (documented in docs/project-file.md).
EXTRA_KINDS = {"tls": {"boolean"}}


NUMBER_OR_BOOL = typing.get_args(NumberOrBool)[1]


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _kinds(annotation: Any) -> set[TomlKind]:
    """The TOML types a value of this annotation may have in the file."""
    kinds: set[TomlKind] = {"boolean"} if annotation is NumberOrBool else set()
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if member is type(None):
            continue
        if member is bool:
            kinds.add("boolean")
        elif member is int:
            kinds.add("integer")
        elif member is float:
            kinds |= {"integer", "float"}
        elif member is str or origin is typing.Literal or (isinstance(member, type) and issubclass(member, str)):
            kinds.add("string")
        elif origin in (list, tuple):
            kinds.add("array")
        elif origin is dict or (isinstance(member, type) and issubclass(member, BaseModel)):
            kinds.add("table")
        else:
            raise AssertionError(f"the schema walk does not know {member!r}")
    return kinds


def _walk(model: type[BaseModel], path: list[Any], fixed: dict[tuple[Any, ...], Any]) -> list[tuple[Any, ...]]:
    """(key path, accepted kinds, fixed keys) of every key below `model`, into lists, dicts and unions."""
    out: list[tuple[Any, ...]] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # set by the loader, not read from the file
        here = [*path, name]
        kinds = _kinds(field.annotation) | EXTRA_KINDS.get(name, set())
        if NUMBER_OR_BOOL in field.metadata:  # pydantic moves a field's own Annotated[] here
            kinds.add("boolean")
        out.append((tuple(here), frozenset(kinds), dict(fixed)))
        out += _walk_inside(field.annotation, here, fixed)
    return out


def _walk_inside(annotation: Any, path: list[Any], fixed: dict[tuple[Any, ...], Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            here_fixed = dict(fixed)
            kind = member.model_fields.get("kind")
            if kind is not None:  # a member of a discriminated union: the file names it
                here_fixed[(*path, "kind")] = typing.get_args(_strip(kind.annotation))[0]
            out += [row for row in _walk(member, path, here_fixed) if row[0][-1] != "kind" or kind is None]
        elif origin is list:
            (item,) = typing.get_args(member)
            out += _element(item, [*path, 0], fixed)
        elif origin is tuple:
            for i, item in enumerate(typing.get_args(member)):
                out += _element(item, [*path, i], fixed, length=len(typing.get_args(member)))
        elif origin is dict:
            _, value = typing.get_args(member)
            out += _element(value, [*path, "k1"], fixed)
    return out


def _element(annotation: Any, path: list[Any], fixed: dict[tuple[Any, ...], Any], length: int = 1) -> list[Any]:
    here_fixed = dict(fixed)
    if length > 1:  # the other elements of a tuple are right, so only this one is wrong
        here_fixed[(*path[:-1], "__tuple__")] = length
    kinds = _kinds(annotation)
    rows: list[tuple[Any, ...]] = [(tuple(path), frozenset(kinds), here_fixed)]
    return rows + _walk_inside(annotation, path, here_fixed)


SCHEMA_KEYS = _walk(Project, [], {})


def _value_of(kind: TomlKind) -> st.SearchStrategy[Any]:
    simple = st.one_of(st.integers(-5, 5), st.text(max_size=5), st.booleans())
    return {
        "string": st.text(max_size=20),
        "integer": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
        "boolean": st.booleans(),
        "array": st.lists(simple, max_size=3),
        "table": st.dictionaries(st.sampled_from(["zz_a", "zz_b"]), simple, max_size=2),
        "datetime": st.datetimes(timezones=st.just(dt.UTC)),
        "date": st.dates(),
        "time": st.times(),
    }[kind]


def _raw_with(path: tuple[Any, ...], value: Any, fixed: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
    """The smallest raw document that puts `value` at `path` (plus the union kinds on the way)."""
    raw: dict[str, Any] = {"project": {"name": "p"}}
    for fixed_path, fixed_value in fixed.items():
        if fixed_path[-1] != "__tuple__":
            _put(raw, fixed_path, fixed_value)
    tuple_len = next((n for p, n in fixed.items() if p[-1] == "__tuple__" and p[:-1] == path[:-1]), None)
    if tuple_len is not None:
        container = [0.0] * tuple_len
        container[path[-1]] = value
        _put(raw, path[:-1], container)
    else:
        _put(raw, path, value)
    return raw


def _put(raw: Any, path: tuple[Any, ...], value: Any) -> None:
    node = raw
    for part, nxt in zip(path, [*path[1:], None], strict=True):
        if nxt is None:
            if isinstance(node, list):
                node.append(value)
            else:
                node[part] = value
            return
        child: Any = [] if isinstance(nxt, int) else {}
        if isinstance(node, list):
            if not node:
                node.append(child)
            node = node[part]
        else:
            node = node.setdefault(part, child)


def _refused_at(path: tuple[Any, ...], raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_project(raw, "p.toml")
    key = format_key_path(path)
    return [issue.message for issue in info.value.issues if issue.path == key]


def test_the_schema_walk_reaches_every_section() -> None:
    """The walk below covers nested tables, dict values, union members, list and tuple elements."""
    keys = {format_key_path(path) for path, _, _ in SCHEMA_KEYS}
    for key in (
        "connections.k1.port",
        "connections.k1.subscriptions[0].qos",
        "connections.k1.groups.k1.deadband.value",
        "tags.k1.range[1]",
        "bindings[0].label.offset[2]",
        "twin.k1.curve.head_k",
        "alarms[0].states[0]",
        "alarm_system.positions.k1[0]",
    ):
        assert key in keys
    assert len(keys) > 200


@pytest.mark.parametrize("path, kinds, fixed", SCHEMA_KEYS, ids=[format_key_path(k[0]) for k in SCHEMA_KEYS])
def test_every_key_refuses_every_wrong_type(path: tuple[Any, ...], kinds: frozenset[str], fixed: dict) -> None:
    """For each key of the schema, one value of every TOML type it does not take is refused at that key."""
    samples = {
        "string": "1",
        "integer": 1,
        "float": 1.5,
        "boolean": True,
        "array": [1],
        "table": {"zz": 1},
        "datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "date": dt.date(2024, 1, 1),
        "time": dt.time(6, 0),
    }
    for kind in ALL_KINDS:
        if kind in kinds or (kind == "float" and "integer" in kinds and "float" in kinds):
            continue
        messages = _refused_at(path, _raw_with(path, samples[kind], fixed))
        assert any(m.startswith("expected ") for m in messages), (kind, messages)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_a_wrong_toml_type_names_its_key(data: st.DataObject) -> None:
    """For any key and any value of a TOML type the key does not take, the error names that key."""
    path, kinds, fixed = data.draw(st.sampled_from(SCHEMA_KEYS))
    wrong = [k for k in ALL_KINDS if k not in kinds]
    value = data.draw(st.sampled_from(wrong).flatmap(_value_of))
    messages = _refused_at(path, _raw_with(path, value, fixed))
    assert any(m.startswith("expected ") for m in messages), messages


# -- nesting -------------------------------------------------------------------------------------

DEEP = {
    "arrays": "x = " + "[" * 5000 + "]" * 5000 + "\n",
    "inline tables": "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
    "dotted keys": "x" + ".y" * 5000 + " = 1\n",
    "table headers": "[x" + ".y" * 5000 + "]\n",
}


@pytest.mark.parametrize("text", list(DEEP.values()), ids=list(DEEP))
def test_absurd_nesting_is_a_clear_error(tmp_path: Path, text: str) -> None:
    """Thousands of levels end in one message naming the file, never a RecursionError."""
    found = errors(tmp_path, '[project]\nname = "p"\n' + text)
    assert len(found) == 1
    assert "nesting deeper than 100 levels" in found[0]


def test_check_config_exits_2_on_absurd_nesting(tmp_path: Path) -> None:
    """`hmi check-config` prints the file and the reason, no traceback, and exits 2."""
    path = tmp_path / "deep.toml"
    path.write_text('[project]\nname = "p"\n' + DEEP["arrays"], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "hmi", "check-config", str(path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}: ") and "nesting deeper than 100 levels" in result.stderr
    assert "Traceback" not in result.stderr
