"""Load a project file: TOML syntax, then the schema, then cross-references.

Every problem becomes a ConfigIssue printed as `FILE: dotted.key.path: message`, and all
of them are reported at once, so an engineer fixes a file in one pass.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hmi.config.alarms import alarm_problems
from hmi.config.bindings import check_bindings
from hmi.config.models import MqttConnection, OpcUaConnection, Project, TagConfig
from hmi.config.twin import twin_problems, twin_tag_specs
from hmi.core.tags import TAG_NAME_RE

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POSITION = re.compile(r"\(at line (?P<line>\d+), column (?P<column>\d+)\)")

_FRIENDLY = {
    "extra_forbidden": "unknown key (check the spelling)",
    "missing": "required key is missing",
}


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    path: str  # dotted key path, or "line N, column M" for a syntax error
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def format_key_path(loc: Sequence[str | int]) -> str:
    """('tags', 'cnc01.speed', 'unit') -> tags."cnc01.speed".unit; list indices as [i]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _BARE_KEY.match(part) else '"' + part.replace('"', '\\"') + '"'
        out += ("." if out else "") + key
    return out


def load_project(path: str | Path) -> Project:
    """Read and validate a project file; raises ConfigError listing every problem."""
    path = Path(path)
    name = str(path)
    try:
        raw_text = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(name, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        text = raw_text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(name, "", f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        position = f"line {where['line']}, column {where['column']}" if where else ""
        message = _TOML_POSITION.sub("", message).strip()
        raise ConfigError([ConfigIssue(name, position, f"TOML syntax error: {message}")]) from None
    return validate_project(raw, name, path)


def validate_project(raw: dict[str, Any], name: str, path: Path | None = None) -> Project:
    try:
        project = Project.model_validate(raw)
    except ValidationError as exc:
        issues = [ConfigIssue(name, format_key_path(_error_loc(raw, err)), _message(err)) for err in exc.errors()]
        raise ConfigError(issues) from None
    issues = [ConfigIssue(name, format_key_path(loc), msg) for loc, msg in cross_check(project)]
    if issues:
        raise ConfigError(issues)
    if path is not None:
        project = project.model_copy(update={"source_path": path.resolve()})
    return project


def _error_loc(raw: Any, err: Any) -> list[str | int]:
    loc = _file_loc(raw, err["loc"], missing_key=err["type"] == "missing")
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(str(err.get("ctx", {}).get("discriminator", "kind")).strip("'"))
    return loc


def _message(err: Any) -> str:
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown kind {ctx.get('tag')!r} (use one of: {ctx.get('expected_tags')})"
    if err["type"] == "union_tag_not_found":
        return "required key is missing"
    friendly = _FRIENDLY.get(err["type"])
    if friendly:
        return friendly
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _file_loc(raw: Any, loc: Sequence[str | int], missing_key: bool = True) -> list[str | int]:
    """Drop the parts of a pydantic location that are not keys of the file (union tags).

    The last part may be a key the file lacks (a "missing" error); for other errors a last
    part that is not in the file is a union member's name (a model validator's error).
    """
    out: list[str | int] = []
    node = raw
    last = len(loc) - 1
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and (i < last or not missing_key):
            # Not a key of the file: a union member's name.
            continue
        else:
            out.append(part)
            node = None
    return out


def cross_check(project: Project) -> list[tuple[list[str | int], str]]:
    """References between sections: tags to connections and machines, trends to tags, twin inputs."""
    problems: list[tuple[list[str | int], str]] = []
    connections = sorted(project.connections)
    for tag_name, tag in project.tags.items():
        if not TAG_NAME_RE.match(tag_name):
            problems.append((["tags", tag_name], "a tag name is machine.signal in lower snake case"))
            continue
        machine = tag_name.split(".", 1)[0]
        if machine not in project.machines:
            problems.append((["tags", tag_name], f"machine {machine!r} is not defined under [machines.{machine}]"))
        if tag.connection not in project.connections:
            known = ", ".join(connections) or "none defined"
            problems.append(
                (["tags", tag_name, "connection"], f"unknown connection {tag.connection!r} (known: {known})")
            )
        if tag.range is not None and not tag.range[0] < tag.range[1]:
            problems.append((["tags", tag_name, "range"], "range must be [low, high] with low < high"))
        conn = project.connections.get(tag.connection)
        if conn is not None:
            problems.extend(_check_tag_for_connection(tag_name, tag, conn))
    derived = {spec.name for spec in twin_tag_specs(project)}
    for i, trend in enumerate(project.trends):
        for j, pen in enumerate(trend.pens):
            if pen not in project.tags and pen not in derived:
                problems.append((["trends", i, "pens", j], f"unknown tag {pen!r}"))
    for machine, config in project.machines.items():
        if not re.match(r"^[a-z][a-z0-9_]*$", machine):
            problems.append((["machines", machine], "a machine id is lower snake case (e.g. cnc01)"))
        for i, tag in enumerate(config.key_tags):
            if tag not in project.tags:
                problems.append((["machines", machine, "key_tags", i], f"unknown tag {tag!r}"))
    problems.extend(alarm_problems(project))
    problems.extend(check_bindings(project.bindings, project.cameras, project.machines, project.tags))
    problems.extend(twin_problems(project))
    return problems


def _check_tag_for_connection(
    name: str, tag: TagConfig, conn: OpcUaConnection | MqttConnection
) -> list[tuple[list[str | int], str]]:
    """Keys that only make sense for one kind of connection, and addresses of the right shape."""
    out: list[tuple[list[str | int], str]] = []
    where: list[str | int] = ["tags", name]
    if isinstance(conn, OpcUaConnection):
        if not tag.address:
            out.append(([*where, "address"], "an OPC UA tag needs an address (its NodeId)"))
        if tag.json_path is not None:
            out.append(([*where, "json_path"], f"json_path is for MQTT tags; {tag.connection!r} is OPC UA"))
        if tag.group is not None and tag.group not in conn.groups:
            known = ", ".join(sorted(conn.groups)) or "none defined"
            out.append(([*where, "group"], f"unknown group {tag.group!r} of connection {tag.connection!r} ({known})"))
    else:
        for key in ("group", "deadband", "index"):
            if getattr(tag, key) is not None:
                out.append(([*where, key], f"{key} is for OPC UA tags; {tag.connection!r} is MQTT"))
        if "+" in tag.address or "#" in tag.address:
            out.append(([*where, "address"], "an MQTT tag's address is one topic, without wildcards"))
        if tag.json_path is not None and not tag.address:
            out.append(([*where, "json_path"], "json_path needs the topic in address"))
    return out
