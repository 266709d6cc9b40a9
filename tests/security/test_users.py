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

from hmi.security.roles import Action, Role, may
from hmi.security.sessions import LoginRefused, LoginThrottle, Sessions
from hmi.security.users import UserError, UserStore, check_password, hash_password
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
    assert data["version"] == 1 and "operator-pass" not in json.dumps(data)
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
