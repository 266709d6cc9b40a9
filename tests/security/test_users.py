"""Users: salted scrypt hashes, no default password, the first user is an admin, disabled
users cannot log in, and the file keeps its version and owner-only permissions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hmi.security.audit import AuditTrail
from hmi.security.roles import Action, Role, may
from hmi.security.sessions import LoginRefused, LoginThrottle, Sessions
from hmi.security.users import USERS_FILE_VERSION, UserError, UserStore, check_password, hash_password
from tests.config.test_project_file import MINIMAL
from tests.helpers import REPO


def test_hashes_are_salted_scrypt() -> None:
    """The same password hashes differently each time and checks against its own hash only."""
    a, b = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert check_password("s3cret-pass", a) and not check_password("s3cret-pasS", a)
    assert not check_password("x", "md5$abc")


def test_store_round_trip_and_rules(tmp_path: Path) -> None:
    """Users persist with roles; short passwords, duplicates and losing the last admin are refused."""
    store = UserStore(tmp_path / "users.json")
    store.add("ada", Role.ADMIN, "admin-pass-1")
    store.add("olga", Role.OPERATOR, "operator-pass")
    with pytest.raises(UserError, match="at least 8"):
        store.add("bob", Role.VIEWER, "short")
    with pytest.raises(UserError, match="exists already"):
        store.add("olga", Role.VIEWER, "whatever-123")
    with pytest.raises(UserError, match="no enabled admin"):
        store.set_disabled("ada", True)
    assert store.authenticate("olga", "operator-pass").role == Role.OPERATOR
    assert store.authenticate("olga", "wrong-pass") is None
    assert store.authenticate("nobody", "operator-pass") is None
    store.set_disabled("olga", True)
    assert store.authenticate("olga", "operator-pass") is None
    data = json.loads((tmp_path / "users.json").read_text())
    assert data["version"] == USERS_FILE_VERSION == 2 and "operator-pass" not in json.dumps(data)
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600


def test_roles_are_ordered() -> None:
    assert may(Role.OPERATOR, Action.ACKNOWLEDGE) and not may(Role.VIEWER, Action.ACKNOWLEDGE)
    assert may(Role.ENGINEER, Action.RELOAD_CONFIG) and not may(Role.OPERATOR, Action.RELOAD_CONFIG)
    assert may(Role.ADMIN, Action.OUT_OF_SERVICE) and not may(None, Action.WRITE)


def test_sessions_end_after_idle_time_and_throttle_doubles(tmp_path: Path) -> None:
    """A session unused longer than the idle time is gone; lockouts double after further failures."""
    store = UserStore(tmp_path / "users.json")
    store.add("ada", Role.ADMIN, "admin-pass-1")
    sessions = Sessions(store, idle_timeout_s=60, throttle=LoginThrottle(2, 10.0))
    s = sessions.login("ada", "admin-pass-1", 0)
    assert sessions.resolve(s.token, 59 * 10**9) == s
    assert sessions.resolve(s.token, 200 * 10**9) is None
    for _ in range(2):
        with pytest.raises(LoginRefused, match="wrong user name or password"):
            sessions.login("ada", "nope", 0)
    assert sessions.throttle.locked_for_s("ada", 0) == 10.0
    with pytest.raises(LoginRefused, match="try again in 10 s"):
        sessions.login("ada", "admin-pass-1", 0)
    assert sessions.throttle.locked_for_s("ada", 0) == 20.0


def run_users(data: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HMI_DATA_DIR=str(data))
    return subprocess.run([sys.executable, "-m", "hmi", "users", *args], cwd=REPO, env=env, input=password,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_users_cli_first_admin_then_others(tmp_path: Path) -> None:
    """`hmi users`: no users at first, the first must be an admin, then list/disable work."""
    assert "no users yet" in run_users(tmp_path, "list").stdout
    result = run_users(tmp_path, "add", "olga", "--role", "operator", "--password-stdin", password="operator-pass\n")
    assert result.returncode == 2 and "first user must be an admin" in result.stderr
    assert (
        run_users(tmp_path, "add", "ada", "--role", "admin", "--password-stdin", password="admin-pass-1\n").returncode
        == 0
    )
    assert (
        run_users(
            tmp_path, "add", "olga", "--role", "operator", "--password-stdin", password="operator-pass\n"
        ).returncode
        == 0
    )
    assert run_users(tmp_path, "disable", "olga").returncode == 0
    listing = run_users(tmp_path, "list").stdout.split("\n")
    assert listing[0].split() == ["ada", "admin", "enabled"] and listing[1].split() == ["olga", "operator", "disabled"]
    assert run_users(tmp_path, "passwd", "olga", "--password-stdin", password="short\n").returncode == 2
    assert UserStore(tmp_path / "users.json").get("olga") is not None


def test_every_change_is_in_the_change_log_with_who_and_where(tmp_path: Path) -> None:
    """Each change (add, password, role, disable, enable) is logged in the file with who made it,
    from where, in order; a refused change logs nothing; no password or hash is logged."""
    store = UserStore(tmp_path / "users.json")
    store.add("ada", Role.ADMIN, "admin-pass-1", by="root@ws1", station="ws1")
    store.add("olga", Role.OPERATOR, "operator-pass", by="root@ws1", station="ws1")
    store.set_password("olga", "operator-pass-2", by="ada@ws2", station="ws2")
    store.set_role("olga", Role.ENGINEER, by="ada@ws2", station="ws2")
    with pytest.raises(UserError):
        store.set_disabled("ada", True, by="ada@ws2")
    store.set_disabled("olga", True, by="ada@ws2", station="ws2")
    store.set_disabled("olga", False, by="ada@ws2", station="ws2")
    changes = UserStore(tmp_path / "users.json").changes()
    assert [(c.seq, c.action, c.name, c.by) for c in changes] == [
        (1, "add", "ada", "root@ws1"), (2, "add", "olga", "root@ws1"), (3, "passwd", "olga", "ada@ws2"),
        (4, "role", "olga", "ada@ws2"), (5, "disable", "olga", "ada@ws2"), (6, "enable", "olga", "ada@ws2"),
    ]  # fmt: skip
    assert changes[3].details == {"role": "engineer", "old_role": "operator"}
    assert [c.seq for c in store.changes(after_seq=4)] == [5, 6]
    text = (tmp_path / "users.json").read_text()
    assert "operator-pass" not in text and text.count("scrypt$") == 2  # the two users' hashes only


def test_version_1_users_file_is_read_and_upgraded_on_the_next_change(tmp_path: Path) -> None:
    """A users.json written before the change log (version 1) still logs in; the next change
    writes version 2 with that change as the first of its log."""
    path = tmp_path / "users.json"
    ada = {"name": "ada", "role": "admin", "password_hash": hash_password("admin-pass-1"), "disabled": False,
           "created_ns": 1, "changed_ns": 1}  # fmt: skip
    path.write_text(json.dumps({"version": 1, "users": [ada]}))
    store = UserStore(path)
    assert store.authenticate("ada", "admin-pass-1") is not None and store.changes() == []
    store.add("olga", Role.OPERATOR, "operator-pass", by="ada@ws1")
    data = json.loads(path.read_text())
    assert data["version"] == 2 and [c["name"] for c in data["changes"]] == ["olga"]
    path.write_text(json.dumps({"version": 3, "users": []}))
    with pytest.raises(UserError, match="users file version 3; this program reads versions 1, 2"):
        store.load()


def test_users_cli_records_who_changed_what_in_the_project_audit_trail(tmp_path: Path) -> None:
    """`hmi users ... --project FILE` puts the change, made by the OS user at this host, into that
    project's audit trail; a broken --project changes nothing."""
    db = tmp_path / "historian.sqlite"
    project = tmp_path / "project.toml"
    project.write_text(MINIMAL + f'\n[historian]\nurl = "sqlite:///{db.as_posix()}"\n')
    data = tmp_path / "data"
    result = run_users(data, "add", "ada", "--role", "admin", "--password-stdin", "--project", str(project),
                       password="admin-pass-1\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert run_users(data, "role", "ada", "--role", "viewer", "--project", str(project)).returncode == 2
    assert run_users(data, "disable", "ada", "--project", str(tmp_path / "missing.toml")).returncode == 2
    trail = AuditTrail(db, create=False)
    try:
        records = trail.records()
    finally:
        trail.close()
    change = UserStore(data / "users.json").changes()
    assert len(change) == 1 and [(r.kind, r.target, r.user, r.ts_ns) for r in records] == [
        ("user_add", "users", change[0].by, change[0].ts_ns)
    ]
    assert "@" in change[0].by and records[0].details_dict() == {
        "name": "ada", "role": "admin", "station": change[0].station, "change": 1,
    }  # fmt: skip
