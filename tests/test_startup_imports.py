"""What `hmi run` loads before its first live frame: the plant (`hmi sim`) does not load the
project-config package it never uses, and the supervisor's historian lock check, which runs
before any child starts, does not import SQLAlchemy (issue 18, docs/performance.md "Start-up")."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hmi.historian.lock import WriterLock, is_plain_sqlite, sqlite_lock_for
from hmi.historian.sqlite import SqliteDialect, url_for_file
from tests.helpers import REPO, free_port, write_demo_project


def _run_python(code: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


SIM_LIST = """
import json, sys
from hmi.cli import main
code = main(["sim", "--list"])
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy"
    or m.startswith("hmi.config"))}))
"""


def test_hmi_sim_does_not_load_the_project_config_package() -> None:
    """The plant serves the demo machines without a project: loading hmi.config (pydantic
    models, 0.25-0.34 s) would only delay the first value `hmi run` shows."""
    result = _run_python(SIM_LIST)
    assert result["code"] == 0
    assert result["loaded"] == []


LOCK_CHECK = """
import json, sys
from pathlib import Path
from hmi.config.loader import load_project
from hmi.supervisor import Supervisor
path = Path(sys.argv[1])
supervisor = Supervisor(path, load_project(path), with_window=False, stream_address=sys.argv[2],
    request_address=sys.argv[3])
problem = supervisor.historian_in_use()
print(json.dumps({"problem": problem, "sqlalchemy": "sqlalchemy" in sys.modules}))
"""


def test_the_supervisor_lock_check_names_the_holder_without_importing_sqlalchemy(
    tmp_path: Path, private_data_dir: Path
) -> None:
    """`hmi run` checks the historian lock before it starts any child; for the project's
    SQLite file that check takes the file lock only, not the database library."""
    project = write_demo_project(tmp_path, free_port())
    addresses = (f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}")
    holder = WriterLock(private_data_dir / "demo.sqlite")
    holder.acquire()
    try:
        taken = _run_python(LOCK_CHECK, str(project), *addresses)
    finally:
        holder.release()
    free = _run_python(LOCK_CHECK, str(project), *addresses)
    assert "already being recorded by another process" in str(taken["problem"])
    assert free["problem"] is None
    assert taken["sqlalchemy"] is False and free["sqlalchemy"] is False


_path_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), min_size=1, max_size=12)


@given(parts=st.lists(_path_text, min_size=1, max_size=3), query=st.sampled_from(["", "?mode=ro", "?timeout=5"]))
def test_the_light_sqlite_reading_locks_the_same_file_as_the_back_end(parts: list[str], query: str) -> None:
    """For every file path (spaces, percent signs, non-ASCII) the lock check of `hmi run`
    and the writer of the runtime lock the same file."""
    url = url_for_file(Path("/tmp", *parts)) + query
    assert is_plain_sqlite(url)
    light, backend = sqlite_lock_for(url), SqliteDialect().writer_lock(url)
    assert light is not None and backend is not None
    assert light.path == backend.path


def test_an_in_memory_or_server_database_has_no_file_lock() -> None:
    assert sqlite_lock_for("sqlite://") is None
    assert sqlite_lock_for("sqlite:///:memory:") is None
    assert not is_plain_sqlite("postgresql://host/db?station=ws1")


def test_hmi_help_lists_every_command_and_each_builds_alone() -> None:
    """`hmi --help` lists every command of the table, in its order, and no module adds a
    command the table does not name (it would be missing when that command is run alone)."""
    from hmi.cli.app import COMMANDS, build_parser

    def choices(parser: argparse.ArgumentParser) -> list[str]:
        (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(sub.choices)

    assert choices(build_parser()) == list(COMMANDS)
    for command in COMMANDS:
        assert command in choices(build_parser(command))
    help_text = subprocess.run(
        [sys.executable, "-m", "hmi", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert all(f"    {command} " in help_text for command in COMMANDS)
