"""The project file's formats and the steps from each to the next (docs/project-file.md,
"format").

A file says which format it is written in with the top-level key `format`; a file without it
is format 1 (every file written before the key existed). The loader upgrades an older file
in memory, one step at a time, before it validates it, so the schema only ever knows the
current format; the file on disk is left as it is. Each step says what it changed, naming
the key as the file wrote it, and the loader maps any error found after the migration back
to that key.

Changing the schema incompatibly (renaming or moving a key, changing what a value means)
means: raise CURRENT_FORMAT, append one step to STEPS, describe the new format in
docs/project-file.md, and give tests/config/test_format.py a file of the old format.
(glue's saver and loader versions are the model.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Note:
    """One change a step made: the key as the file wrote it, where it is after the step (the
    same path unless it moved), and what happened to it."""

    path: KeyPath
    new_path: KeyPath
    text: str


class MigrationError(Exception):
    """An old file that no step can translate unambiguously (both an old key and its new name)."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


Raw = dict[str, Any]
Step = Callable[[Raw], tuple[Raw, list[Note]]]


def migrate_1_to_2(raw: Raw) -> tuple[Raw, list[Note]]:
    """An OPC UA connection's `watchdog_interval_s` is now `keepalive_s`, as an MQTT
    connection's: it is the keep-alive period the subscriptions request (asyncua's word had
    leaked into the file). Builds new tables rather than editing the caller's."""
    connections = raw.get("connections")
    if not isinstance(connections, dict):
        return raw, []
    notes: list[Note] = []
    renamed = dict(connections)
    for name, conn in connections.items():
        # Only an OPC UA connection had the key; on another kind it was already an error.
        if not (isinstance(conn, dict) and conn.get("kind") == "opcua" and "watchdog_interval_s" in conn):
            continue
        old: KeyPath = ("connections", name, "watchdog_interval_s")
        if "keepalive_s" in conn:
            raise MigrationError(old, "renamed keepalive_s in format 2, and keepalive_s is set too: keep one")
        renamed[name] = {("keepalive_s" if key == "watchdog_interval_s" else key): v for key, v in conn.items()}
        notes.append(Note(old, (*old[:-1], "keepalive_s"), "renamed keepalive_s in format 2"))
    return ({**raw, "connections": renamed}, notes) if notes else (raw, [])


# STEPS[n - 1] upgrades format n to n + 1.
STEPS: list[Step] = [migrate_1_to_2]
CURRENT_FORMAT = len(STEPS) + 1


def migrate(raw: Raw, version: int) -> tuple[Raw, list[Note]]:
    """`raw`, read as format `version` (1 ... CURRENT_FORMAT), upgraded to the current format."""
    notes: list[Note] = []
    for step in STEPS[version - 1 :]:
        raw, more = step(raw)
        notes += more
    return raw, notes


def path_in_file(path: KeyPath, notes: list[Note]) -> KeyPath:
    """A key path of the migrated document as the file wrote it (the latest step first, so a
    key renamed twice maps back to its first name)."""
    for note in reversed(notes):
        if note.new_path != note.path and path[: len(note.new_path)] == note.new_path:
            path = note.path + path[len(note.new_path) :]
    return path
