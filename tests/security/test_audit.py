"""The audit trail's hash chain: an intact trail verifies; an edited, deleted or reordered
record is found by `hmi audit verify`, which then exits non-zero."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hmi.security.audit import AuditEntry, AuditTrail
from tests.helpers import REPO


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "historian.sqlite"
    trail = AuditTrail(path)
    trail.append([AuditEntry("login", "olga", "", "ok", {"role": "operator"})])
    for i in range(5):
        trail.record("acknowledge", "olga", f"cnc01.t{i}.hi", comment=f"note {i}")
    trail.record("write", "olga", "cnc01.feed_override", old=100.0, new=80)
    trail.close()
    return path


def verify_cli(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hmi", "audit", "verify", "--db", str(db)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def tamper(db: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


def problems(db: Path) -> list[str]:
    trail = AuditTrail(db, create=False)
    try:
        return [str(p) for p in trail.verify()[1]]
    finally:
        trail.close()


def test_intact_trail_verifies(db: Path) -> None:
    """Seven chained records verify; the CLI prints the head and exits 0."""
    assert problems(db) == []
    result = verify_cli(db)
    assert result.returncode == 0, result.stderr
    assert "audit trail intact: 7 record(s)" in result.stdout


def test_edited_record_is_found(db: Path) -> None:
    """Changing who acknowledged is reported as an edit of that record."""
    tamper(db, "UPDATE audit_records SET user = 'mallory' WHERE seq = 3")
    assert problems(db) == ["audit record 3: edited: its content does not match its hash"]
    result = verify_cli(db)
    assert result.returncode == 1
    assert "audit record 3: edited" in result.stderr and "BROKEN" in result.stderr


def test_edited_details_are_found(db: Path) -> None:
    """Changing the written value (details JSON) is an edit too."""
    tamper(db, "UPDATE audit_records SET details = ? WHERE kind = 'write'", '{"new":20,"old":100.0}')
    assert problems(db) == ["audit record 7: edited: its content does not match its hash"]


def test_deleted_record_is_found(db: Path) -> None:
    """Deleting a record in the middle leaves a gap and a broken link."""
    tamper(db, "DELETE FROM audit_records WHERE seq = 4")
    found = problems(db)
    assert "audit record 5: record(s) 4 before it are missing (deleted)" in found
    assert verify_cli(db).returncode == 1


def test_deleted_last_records_are_found(db: Path) -> None:
    """Deleting the newest records is found through the head kept beside the chain."""
    tamper(db, "DELETE FROM audit_records WHERE seq >= 6")
    assert problems(db) == ["records 6-7 at the end are missing (deleted)"]
    assert verify_cli(db).returncode == 1


def test_reordered_records_are_found(db: Path) -> None:
    """Swapping two records' places in storage is reported as a reordering."""
    with sqlite3.connect(db) as conn:
        rows = {r[0]: r[1:] for r in conn.execute("SELECT id, seq, ts, kind, user, target, outcome, details, "
                                                   "prev_hash, hash FROM audit_records")}  # fmt: skip
        cols = "seq = ?, ts = ?, kind = ?, user = ?, target = ?, outcome = ?, details = ?, prev_hash = ?, hash = ?"
        conn.execute("UPDATE audit_records SET seq = -1 WHERE id = 3")
        conn.execute(f"UPDATE audit_records SET {cols} WHERE id = 4", rows[3])
        conn.execute(f"UPDATE audit_records SET {cols} WHERE id = 3", rows[4])
    found = problems(db)
    assert any("reordered" in p for p in found), found
    assert verify_cli(db).returncode == 1


def test_audit_tables_have_their_own_schema_version(tmp_path: Path) -> None:
    """The audit store marks its own schema version and refuses a newer one."""
    path = tmp_path / "h.sqlite"
    AuditTrail(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM audit_meta WHERE key = 'schema_version'").fetchone() == ("1",)
        conn.execute("UPDATE audit_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(Exception, match="audit schema version 99"):
        AuditTrail(path)
