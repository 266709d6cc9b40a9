"""The project file's `format`: a file of every earlier format loads, upgraded in memory with a
note per change; a newer format is refused; the key is typed strictly; errors in an old file
name the keys as it wrote them (hmi/config/migrations.py, docs/project-file.md)."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.config.loader import validate_project
from hmi.config.migrations import CURRENT_FORMAT
from tests.config.common import errors, write_project
from tests.helpers import REPO

# The same project in the current format ...
CURRENT = """
format = 2

[project]
name = "Line 1"

[connections.plc]
kind = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840"
keepalive_s = 2.5

[machines.cnc01]

[tags."cnc01.speed"]
connection = "plc"
address = "ns=2;s=speed"
"""

# ... and as each earlier format wrote it (format 1 had no `format` key).
EARLIER = {
    1: CURRENT.replace("format = 2\n", "").replace("keepalive_s", "watchdog_interval_s"),
}

NOTES_1 = [
    "format: format 1, read as format 2 with the changes below (the file is not changed; "
    "to update it, make them and write format = 2 above the first [table])",
    "connections.plc.watchdog_interval_s: renamed keepalive_s in format 2",
]


def notes(path: Path) -> list[str]:
    return [line.removeprefix(f"{path}: ") for line in load_project(path).migration_notes]


def test_every_earlier_format_has_a_fixture() -> None:
    """Raising CURRENT_FORMAT without a fixture of the format it leaves behind fails here."""
    assert CURRENT_FORMAT == 2
    assert sorted(EARLIER) == list(range(1, CURRENT_FORMAT))


@pytest.mark.parametrize("version", sorted(EARLIER))
def test_a_file_of_every_earlier_format_loads_as_the_current_one(tmp_path: Path, version: int) -> None:
    """An old file gives the same project as the current file saying the same thing."""
    (tmp_path / "new").mkdir()
    old = load_project(write_project(tmp_path, EARLIER[version]))
    new = load_project(write_project(tmp_path / "new", CURRENT))
    assert old.model_dump() == new.model_dump()
    assert old.format == CURRENT_FORMAT
    assert old.connections["plc"].keepalive_s == 2.5


def test_the_notes_say_what_changed_and_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Upgrading format 1 names the renamed key as the file wrote it and its new name, and logs it at INFO."""
    path = write_project(tmp_path, EARLIER[1])
    with caplog.at_level(logging.INFO, logger="hmi.config.loader"):
        assert notes(path) == NOTES_1
    assert [r.getMessage().removeprefix(f"{path}: ") for r in caplog.records] == NOTES_1


def test_an_explicit_format_1_is_read_as_a_missing_key(tmp_path: Path) -> None:
    """`format = 1` and no `format` key are the same format."""
    path = write_project(tmp_path, "format = 1\n" + EARLIER[1])
    assert notes(path) == NOTES_1


def test_nothing_to_say_about_a_current_file_or_an_old_one_that_needed_no_change(tmp_path: Path) -> None:
    """Notes only for changes: a current file, or a format-1 file without a renamed key, has none."""
    assert notes(write_project(tmp_path, CURRENT)) == []
    assert notes(write_project(tmp_path, CURRENT.replace("format = 2\n", ""))) == []


def test_the_demo_projects_are_in_the_current_format() -> None:
    """config/*.toml say `format = CURRENT_FORMAT` and need no migration."""
    for path in sorted((REPO / "config").glob("*.toml")):
        assert f"\nformat = {CURRENT_FORMAT} " in path.read_text(encoding="utf-8"), path
        assert load_project(path).migration_notes == ()


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    """A file from a newer program is refused with the file, the key and the newest format this one reads."""
    text = CURRENT.replace("format = 2", "format = 3")
    assert errors(tmp_path, text) == [
        "format: format 3 was written by a newer version of the program; this program reads formats up to 2"
    ]


@pytest.mark.parametrize(
    "value, expected",
    [
        ('"2"', 'expected an integer, got the string "2"'),
        ("2.0", "expected an integer, got the number 2.0"),
        ("true", "expected an integer, got the boolean true"),
        ("[2]", "expected an integer, got an array"),
        ("0", "unknown format 0 (the first format is 1)"),
        ("-1", "unknown format -1 (the first format is 1)"),
    ],
)
def test_the_format_is_an_integer_from_1(tmp_path: Path, value: str, expected: str) -> None:
    """The key is typed as strictly as every other: a string "2" is not the format 2."""
    assert errors(tmp_path, CURRENT.replace("format = 2", f"format = {value}")) == [f"format: {expected}"]


def test_a_format_written_inside_project_is_pointed_to_the_top(tmp_path: Path) -> None:
    """`format` below [project] (TOML puts it in the table) gets a message saying where it belongs."""
    text = CURRENT.replace("format = 2\n", "").replace('name = "Line 1"', 'name = "Line 1"\nformat = 2')
    assert errors(tmp_path, text) == ["project.format: format is a top-level key: write it above the first [table]"]


def test_an_error_in_an_old_file_names_the_key_as_the_file_wrote_it(tmp_path: Path) -> None:
    """A wrong value under a renamed key is reported at the old name, not at the name it was migrated to."""
    text = EARLIER[1].replace("watchdog_interval_s = 2.5", 'watchdog_interval_s = "2.5"')
    assert errors(tmp_path, text) == ['connections.plc.watchdog_interval_s: expected a number, got the string "2.5"']
    text = EARLIER[1].replace("watchdog_interval_s = 2.5", "watchdog_interval_s = 0")
    assert errors(tmp_path, text) == ["connections.plc.watchdog_interval_s: Input should be greater than 0"]


def test_the_old_name_in_a_current_file_is_an_unknown_key(tmp_path: Path) -> None:
    """Format 2 no longer has watchdog_interval_s: the file said it is format 2, so nothing is renamed."""
    text = CURRENT.replace("keepalive_s", "watchdog_interval_s")
    assert errors(tmp_path, text) == ["connections.plc.watchdog_interval_s: unknown key (check the spelling)"]


def test_both_names_in_an_old_file_are_refused(tmp_path: Path) -> None:
    """A format-1 file with both the old key and the new name cannot be translated: the old key is named."""
    text = EARLIER[1].replace("watchdog_interval_s = 2.5", "watchdog_interval_s = 2.5\nkeepalive_s = 3")
    assert errors(tmp_path, text) == [
        "connections.plc.watchdog_interval_s: renamed keepalive_s in format 2, and keepalive_s is set too: keep one"
    ]


def test_only_an_opcua_connection_is_migrated(tmp_path: Path) -> None:
    """watchdog_interval_s was never an MQTT key: on an MQTT connection it stays an unknown key
    (renaming it would make it MQTT's keepalive_s, another meaning)."""
    text = """
[project]
name = "Line 1"

[connections.broker]
kind = "mqtt"
host = "127.0.0.1"
watchdog_interval_s = 5
"""
    assert errors(tmp_path, text) == ["connections.broker.watchdog_interval_s: unknown key (check the spelling)"]


def test_migration_leaves_the_callers_document_alone() -> None:
    """validate_project upgrades a copy: the dict it was given still says what the file said."""
    raw = {
        "project": {"name": "p"},
        "connections": {"plc": {"kind": "opcua", "endpoint": "opc.tcp://h:4840", "watchdog_interval_s": 2.0}},
    }
    before = copy.deepcopy(raw)
    project = validate_project(raw, "p.toml")
    assert raw == before
    assert project.connections["plc"].keepalive_s == 2.0


def test_check_config_prints_the_notes_after_the_summary(tmp_path: Path) -> None:
    """`hmi check-config` on an old file: OK, then what was changed, each line naming file and key."""
    path = write_project(tmp_path, EARLIER[1])
    result = subprocess.run(
        [sys.executable, "-m", "hmi", "check-config", str(path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{path}: OK: project 'Line 1'")
    assert lines[1:] == [f"{path}: {note}" for note in NOTES_1]
