"""`hmi self-test`: the installation checks itself end to end, and says which step failed."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hmi.selftest as selftest
from hmi.historian.postgres import safe_url
from hmi.selftest import SelfTest, StepFailed
from tests.helpers import REPO
from tests.pg import CentralDatabase

STEPS = (
    "data folder",
    "project",
    "plant",
    "opc ua",
    "window",
    "write",
    "3d models",
    "historian",
    "replay",
    "audit",
    "postgresql",
)


def test_self_test_passes_from_the_source_tree_without_a_display(private_data_dir: Path) -> None:
    """`hmi --self-test` with no DISPLAY runs every step from the source tree, exits 0 and
    leaves nothing in the user's data folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run(
        [sys.executable, "-m", "hmi", "--self-test"], cwd=REPO, env=env, capture_output=True, text=True, timeout=110
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in STEPS:
        assert re.search(rf"^  ok\s+{re.escape(step)}\s", out, re.MULTILINE), f"step {step!r} not ok:\n{out}"
    assert f"self-test passed: {len(STEPS)} steps" in out
    assert len(out.splitlines()) <= 14, "the summary fits on one screen"
    assert list(private_data_dir.iterdir()) == [], "the self-test wrote into the user's data folder"


def test_a_failing_step_is_named_and_everything_started_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """When a step fails, the run stops there with exit 1 naming the step, the plant child
    process and the runtime it started are stopped, and its temporary folder is removed."""

    def broken_window(self: SelfTest) -> str:
        raise StepFailed("the window would not open")

    monkeypatch.setattr(SelfTest, "check_window", broken_window)
    out = io.StringIO()
    test = SelfTest(timeout_s=60, out=out)
    assert test.run() == selftest.EXIT_FAILED
    text = out.getvalue()
    assert re.search(r"^  FAILED window\s.*the window would not open$", text, re.MULTILINE), text
    assert "self-test FAILED at step 'window'" in text
    assert "  ok     opc ua" in text and "write" not in text.split("FAILED window")[1].split("\n", 1)[1]
    assert test.plant is not None and test.plant.poll() is not None, "the plant child process is still running"
    assert test.runtime_thread is not None and not test.runtime_thread.alive, "the runtime is still running"
    assert not test.workdir.exists()


def test_a_broken_demo_project_fails_the_project_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A demo project that does not validate fails the 'project' step with its file and key."""
    bad = tmp_path / "demo.toml"
    bad.write_text('[project]\nname = "x"\n[historian]\nretention_days = "soon"\n', encoding="utf-8")
    monkeypatch.setattr(selftest, "default_project", lambda: bad)
    out = io.StringIO()
    assert SelfTest(timeout_s=10, out=out).run(keep=False) == selftest.EXIT_FAILED
    text = out.getvalue()
    assert re.search(r"FAILED project .*demo\.toml.*retention_days", text), text
    assert "plant" not in text.split("FAILED project")[1]


@pytest.mark.postgres
def test_the_postgresql_step_connects_and_copies_rows_through_the_driver(
    central_db: CentralDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Given a server (as make package-test gives the installed bundle), the step loads
    psycopg's C implementation, connects with the password its password_ref names and
    copies rows in and back out; it shows the URL, never the password."""
    monkeypatch.setenv(selftest.POSTGRES_ENV, f"{central_db.url}?password_ref={central_db.password_ref}")
    detail = SelfTest(out=io.StringIO(), workdir=tmp_path).check_postgres()
    assert re.match(r"psycopg [\d.]+ \((binary|c), libpq [\d.]+\); PostgreSQL \d+", detail), detail
    assert detail.endswith(f"at {safe_url(central_db.url)}: 3 rows copied in and read back"), detail
    assert central_db.password_env[1] not in detail


@pytest.mark.postgres
def test_the_postgresql_step_fails_on_a_wrong_password_saying_so(
    central_db: CentralDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(selftest.POSTGRES_ENV, f"{central_db.url}?password_ref={central_db.password_ref}")
    monkeypatch.setenv(central_db.password_env[0], "not-the-password")
    with pytest.raises(StepFailed, match=r"cannot connect to postgresql://.*wrong user name or password") as failed:
        SelfTest(out=io.StringIO(), workdir=tmp_path).check_postgres()
    assert "not-the-password" not in str(failed.value)


def test_the_postgresql_step_without_a_server_checks_the_driver_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(selftest.POSTGRES_ENV, raising=False)
    detail = SelfTest(out=io.StringIO(), workdir=tmp_path).check_postgres()
    assert re.match(
        r"psycopg [\d.]+ \((binary|c), libpq [\d.]+\) and SQLAlchemy's postgresql\+psycopg dialect load", detail
    )
