"""Load a project file: TOML syntax, its format (an older one is upgraded in memory:
hmi/config/migrations.py), then the schema, then cross-references.

Every problem becomes a ConfigIssue printed as `FILE: dotted.key.path: message`, and all
of them are reported at once, so an engineer fixes a file in one pass. A key path is always
the key as the file wrote it, also when a migration renamed it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hmi.config.alarms import alarm_problems
from hmi.config.bindings import check_bindings
from hmi.config.connections import KINDS, SourceConnection
from hmi.config.migrations import CURRENT_FORMAT, MigrationError, Note, migrate, path_in_file
from hmi.config.models import Project
from hmi.config.tags import KIND_TAG_KEYS, TagConfig
from hmi.config.twin import twin_problems, twin_tag_specs
from hmi.core.tags import TAG_NAME_RE

log = logging.getLogger(__name__)

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_POSITION = re.compile(r"\(at line (?P<line>\d+), column (?P<column>\d+)\)")

_FRIENDLY = {
    "extra_forbidden": "unknown key (check the spelling)",
    "missing": "required key is missing",
}
# Wrong-type errors of strict mode (base.py), as the TOML type the key takes.
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "an array",
    "tuple_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}
# Far deeper than any key of the schema (4 levels), far shallower than Python's recursion limit.
MAX_DEPTH = 100
_TOO_DEEP = f"nesting deeper than {MAX_DEPTH} levels (arrays or tables inside each other)"


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
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: thousands deep exhaust the stack.
        raise ConfigError([ConfigIssue(name, "", _TOO_DEEP)]) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        position = f"line {where['line']}, column {where['column']}" if where else ""
        message = _TOML_POSITION.sub("", message).strip()
        raise ConfigError([ConfigIssue(name, position, f"TOML syntax error: {message}")]) from None
    return validate_project(raw, name, path)


def validate_project(raw: dict[str, Any], name: str, path: Path | None = None) -> Project:
    deep = _too_deep(raw)
    if deep is not None:
        raise ConfigError([ConfigIssue(name, format_key_path(deep), _TOO_DEEP)])
    raw, notes, note_lines = _upgrade(raw, name)

    def issue(loc: Sequence[str | int], message: str) -> ConfigIssue:
        return ConfigIssue(name, format_key_path(path_in_file(tuple(loc), notes)), message)

    try:
        project = Project.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([issue(loc, msg) for loc, msg in _schema_issues(raw, exc)]) from None
    issues = [issue(loc, msg) for loc, msg in cross_check(project)]
    if issues:
        raise ConfigError(issues)
    update: dict[str, Any] = {"migration_notes": note_lines} if note_lines else {}
    if path is not None:
        update["source_path"] = path.resolve()
    return project.model_copy(update=update) if update else project


def _upgrade(raw: dict[str, Any], name: str) -> tuple[dict[str, Any], list[Note], tuple[str, ...]]:
    """`raw` in the current format, what the migration changed, and the lines that say so
    (logged at INFO; `hmi check-config` prints them). Refuses a format it cannot read."""
    version = raw.get("format", 1)  # a file without the key predates it: format 1
    where = "format"
    if "format" not in raw and isinstance(raw.get("project"), dict) and "format" in raw["project"]:
        where, message = "project.format", "format is a top-level key: write it above the first [table]"
    elif isinstance(version, bool) or not isinstance(version, int):
        message = f"expected an integer, got {_describe(version)}"
    elif version < 1:
        message = f"unknown format {version} (the first format is 1)"
    elif version > CURRENT_FORMAT:
        message = (
            f"format {version} was written by a newer version of the program; "
            f"this program reads formats up to {CURRENT_FORMAT}"
        )
    else:
        try:
            raw, notes = migrate(raw, version)
        except MigrationError as exc:
            raise ConfigError([ConfigIssue(name, format_key_path(exc.path), exc.message)]) from None
        lines: tuple[str, ...] = ()
        if notes:
            head = (
                f"format {version}, read as format {CURRENT_FORMAT} with the changes below (the file is not "
                f"changed; to update it, make them and write format = {CURRENT_FORMAT} above the first [table])"
            )
            issues = [ConfigIssue(name, "format", head)]
            issues += [ConfigIssue(name, format_key_path(note.path), note.text) for note in notes]
            lines = tuple(str(i) for i in issues)
            for line in lines:
                log.info("%s", line)
        return {**raw, "format": CURRENT_FORMAT}, notes, lines
    raise ConfigError([ConfigIssue(name, where, message)])


def _too_deep(raw: Any) -> list[str | int] | None:
    """The first levels of a key path nested deeper than MAX_DEPTH, else None (iterative: a
    table header `[x.y.z...]` thousands deep parses without recursion but would not validate)."""
    stack: list[tuple[Any, list[str | int]]] = [(raw, [])]
    while stack:
        node, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            return loc[:3]
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((child, [*loc, key]) for key, child in items)
    return None


def _schema_issues(raw: dict[str, Any], exc: ValidationError) -> list[tuple[list[str | int], str]]:
    """One (key path, message) per problem. A value that fits no member of a union (an axis is
    a name or a vector) gets one message listing what each member expects, or, when one member
    got further into the value, only that member's messages."""
    rows = []
    for err in exc.errors():
        loc, union_at = _error_loc(raw, err)
        rows.append((loc, union_at, err))
    deeper = {tuple(u) for loc, u, _ in rows if u is not None and len(loc) > len(u)}
    out: list[tuple[list[str | int], str]] = []
    merged: dict[tuple[str | int, ...], list[str]] = {}
    for loc, union_at, err in rows:
        if union_at is not None and len(loc) == len(union_at) and tuple(union_at) in deeper:
            continue
        expected = _expected(err)
        if union_at is not None and expected is not None and len(loc) == len(union_at):
            if tuple(loc) not in merged:
                merged[tuple(loc)] = []
                out.append((loc, ""))
            merged[tuple(loc)].append(expected)
            continue
        value = _value_at(raw, loc)
        out.append((loc, f"expected {expected}, got {_describe(value)}" if expected else _message(err, value)))
    got = {key: _describe(_value_at(raw, list(key))) for key in merged}
    return [
        (loc, msg or f"expected {' or '.join(dict.fromkeys(merged[tuple(loc)]))}, got {got[tuple(loc)]}")
        for loc, msg in out
    ]


def _expected(err: Any) -> str | None:
    """What a wrong-type error expected, or None for any other error."""
    if err["type"] in ("enum", "literal_error"):
        return str(err.get("ctx", {}).get("expected", "")) or None
    return _EXPECTED.get(err["type"])


def _describe(value: Any) -> str:
    """A value from the file as the engineer wrote it: its TOML type and, when short, the value."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return 'the string "' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, dt.datetime):
        return f"the date-time {value.isoformat()}"
    if isinstance(value, dt.date):
        return f"the date {value.isoformat()}"
    if isinstance(value, dt.time):
        return f"the time {value.isoformat()}"
    return f"{value!r:.40}"


_ABSENT = object()


def _value_at(raw: Any, loc: Sequence[str | int]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _ABSENT
    return node


def _error_loc(raw: Any, err: Any) -> tuple[list[str | int], list[str | int] | None]:
    """The key path of an error, and the key path of the union whose member reported it (or None)."""
    loc, union_at = _file_loc(raw, err["loc"], missing_key=err["type"] == "missing")
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(str(err.get("ctx", {}).get("discriminator", "kind")).strip("'"))
    return loc, union_at


def _message(err: Any, value: Any = _ABSENT) -> str:
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        if value is not _ABSENT and not isinstance(value, str):
            return f"expected one of {ctx.get('expected_tags')}, got {_describe(value)}"
        return f"unknown kind {ctx.get('tag')!r} (use one of: {ctx.get('expected_tags')})"
    if err["type"] == "union_tag_not_found":
        return "required key is missing"
    friendly = _FRIENDLY.get(err["type"])
    if friendly:
        return friendly
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _file_loc(
    raw: Any, loc: Sequence[str | int], missing_key: bool = True
) -> tuple[list[str | int], list[str | int] | None]:
    """Drop the parts of a pydantic location that are not keys of the file (union members'
    names), and say where the last one was dropped.

    The last part may be a key the file lacks (a "missing" error); for other errors a last
    part that is not in the file is a union member's name (a model validator's error). Below
    an array or a value, a name is always a union member's (`axis` is a name or a vector).
    """
    out: list[str | int] = []
    union_at: list[str | int] | None = None
    node = raw
    last = len(loc) - 1
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif (isinstance(node, dict) and (i < last or not missing_key)) or (
            isinstance(part, str) and node is not _ABSENT and not isinstance(node, dict)
        ):
            union_at = list(out)
            continue
        else:
            out.append(part)
            node = _ABSENT
    return out, union_at


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
    derived = {spec.name for spec in twin_tag_specs(project.twin)}
    for i, trend in enumerate(project.trends):
        for j, pen in enumerate(trend.pens):
            if pen not in project.tags and pen not in derived:
                problems.append((["trends", i, "pens", j], f"unknown tag {pen!r}"))
    for machine, config in project.machines.items():
        if not re.match(r"^[a-z][a-z0-9_]*$", machine):
            problems.append((["machines", machine], "a machine id is lower snake case (e.g. cnc01)"))
        for i, key_tag in enumerate(config.key_tags):
            if key_tag not in project.tags:
                problems.append((["machines", machine, "key_tags", i], f"unknown tag {key_tag!r}"))
    problems.extend(alarm_problems(project))
    problems.extend(check_bindings(project.bindings, project.cameras, project.machines, project.tags))
    problems.extend(twin_problems(project.twin, project.machines, project.tags))
    return problems


def _check_tag_for_connection(name: str, tag: TagConfig, conn: SourceConnection) -> list[tuple[list[str | int], str]]:
    """Keys that belong to another kind of connection, then the kind's own checks."""
    where: list[str | int] = ["tags", name]
    out: list[tuple[list[str | int], str]] = []
    for key in KIND_TAG_KEYS:
        if key not in conn.tag_keys and getattr(tag, key) is not None:
            owners = " or ".join(k.label for k in KINDS.values() if key in k.tag_keys)
            out.append(([*where, key], f"{key} is for {owners} tags; {tag.connection!r} is {conn.label}"))
    return out + [([*where, *loc], message) for loc, message in conn.tag_problems(tag)]
