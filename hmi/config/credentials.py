"""Passwords referenced by name from the project file, never written in it.

`password_ref = "plant"` is looked up, in this order, in the environment variable
HMI_PASSWORD_PLANT and in the user's credentials file, <data folder>/credentials.toml:

    version = 1
    [passwords]
    plant = "s3cret"

The file must be readable by its owner only (chmod 600); a file others can read is refused
rather than used, because a password that leaked once cannot be un-leaked. On Windows the
check is left to the folder's ACL (the data folder is in the user's profile).

Here, below both the sources and the historian (which connects to a central PostgreSQL
with a password_ref too).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tomllib
from pathlib import Path

from hmi.paths import data_dir

CREDENTIALS_VERSION = 1
ENV_PREFIX = "HMI_PASSWORD_"


class CredentialError(Exception):
    """A password that cannot be had; the message says what to do."""


def credentials_file() -> Path:
    return data_dir() / "credentials.toml"


def env_name(ref: str) -> str:
    return ENV_PREFIX + ref.upper()


def resolve_password(ref: str) -> str:
    """The password `ref` names; raises CredentialError with the fix in its message."""
    env = env_name(ref)
    value = os.environ.get(env)
    if value is not None:
        return value
    path = credentials_file()
    if not path.exists():
        raise CredentialError(
            f"no password for password_ref {ref!r}: set the environment variable {env} "
            f'or add {ref} = "..." under [passwords] in {path} (chmod 600)'
        )
    passwords = _read_file(path)
    if ref not in passwords:
        raise CredentialError(f'no password for password_ref {ref!r} in {path}: add {ref} = "..." under [passwords]')
    secret = passwords[ref]
    if not isinstance(secret, str):
        raise CredentialError(f"{path}: passwords.{ref}: a password is a string")
    return secret


def _read_file(path: Path) -> dict[str, object]:
    try:
        info = path.stat()
    except OSError as exc:
        raise CredentialError(f"cannot read {path}: {exc.strerror or exc}") from None
    if sys.platform != "win32":
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialError(
                f"{path} may be read by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"refusing to use it: run `chmod 600 {path}`"
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise CredentialError(f"{path} belongs to another user (uid {info.st_uid}); refusing to use it")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CredentialError(f"cannot read {path}: {exc}") from None
    version = data.get("version", CREDENTIALS_VERSION)
    if version != CREDENTIALS_VERSION:
        raise CredentialError(f"{path}: version {version!r} is not supported (this program reads version 1)")
    passwords = data.get("passwords", {})
    if not isinstance(passwords, dict):
        raise CredentialError(f"{path}: [passwords] must be a table")
    return passwords


def store_password(ref: str, password: str) -> Path:
    """Add or replace one password in the credentials file, created owner-only (for tools and tests)."""
    path = credentials_file()
    passwords: dict[str, object] = _read_file(path) if path.exists() else {}
    passwords[ref] = password
    lines = [f"version = {CREDENTIALS_VERSION}", "", "[passwords]"]
    for key, value in sorted(passwords.items()):
        # A JSON string is a valid TOML basic string (same escapes).
        lines.append(f"{key} = {json.dumps(str(value), ensure_ascii=False)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path
