"""A real, private PostgreSQL server for the central historian's tests.

`PostgresServer` runs initdb into a temporary folder and starts the server on a free
127.0.0.1 port with its Unix socket in that folder, password (scram) authentication and a
superuser `hmi_admin`. PostgreSQL refuses to run as root, and CI runs as root: then initdb
and the server run as the `postgres` system user (runuser), in a folder handed to it.
Durability is switched off (fsync, full_page_writes): the data is thrown away anyway, and
CREATE DATABASE's checkpoint becomes cheap.

`CentralDatabase` is one fresh database on that server (the `central_db` fixture).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import free_port

ADMIN_USER = "hmi_admin"
PASSWORD_REF = "central_test"
SYSTEM_USER = "postgres"


def postgres_bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres live (Debian keeps them out of PATH)."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    # Newest version first: "15" < "16" sorts right for the versions that exist.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; `start()`, then `stop()`."""

    ssl_files: tuple[Path, Path] | None = None  # (certificate, key) to serve TLS with
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    user: str = ADMIN_USER
    start_seconds: float = 0.0
    directory: Path = field(init=False)

    def __post_init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs it")
        self.bindir = bindir
        # Not under pytest's tmp folder: that one is private to the user running the tests,
        # and the server may run as another user (postgres) that must reach its folder.
        self.directory = Path(tempfile.mkdtemp(prefix="hmi-pg-"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self._as_other_user = os.geteuid() == 0

    # -- running commands as the server's user ------------------------------------------

    def _command(self, argv: Sequence[str]) -> list[str]:
        if self._as_other_user:
            return ["runuser", "-u", SYSTEM_USER, "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], timeout: float = 120) -> None:
        result = subprocess.run(self._command(argv), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}{log}")

    def _hand_over(self, path: Path) -> None:
        if self._as_other_user:
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> PostgresServer:
        started = time.monotonic()
        self._hand_over(self.directory)
        password_file = self.directory / "pwfile"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        self._hand_over(password_file)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        password_file.unlink()
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
        }
        if self.ssl_files is not None:
            cert, key = self.ssl_files
            for source, name in ((cert, "server.crt"), (key, "server.key")):
                target = self.data / name
                shutil.copyfile(source, target)
                target.chmod(0o600)
                self._hand_over(target)
            settings.update({"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"})
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/pg.py\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "start"]
        )
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], 60)
            except (RuntimeError, subprocess.SubprocessError):
                pass
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- clients --------------------------------------------------------------------------

    def url(self, database: str = "postgres", user: str | None = None) -> str:
        """A SQLAlchemy URL without the password (that goes through password_ref)."""
        return f"postgresql+psycopg://{user or self.user}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg connection as the superuser (autocommit unless told otherwise)."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=database, **kwargs
        )


@dataclass
class CentralDatabase:
    """A fresh database on the test server; `password_env` makes `password_ref` resolve."""

    server: PostgresServer
    name: str
    create_seconds: float = 0.0

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def password_ref(self) -> str:
        return PASSWORD_REF

    @property
    def password_env(self) -> tuple[str, str]:
        from hmi.config.credentials import env_name

        return env_name(PASSWORD_REF), self.server.password

    def connect(self, **kwargs: Any) -> Any:
        return self.server.connect(self.name, **kwargs)

    def engine(self) -> Any:
        """A SQLAlchemy engine as the superuser, through the historian's own back end."""
        from hmi.historian.postgres import PostgresDialect

        return PostgresDialect(password_ref=PASSWORD_REF).create_engine(self.url)

    def create(self) -> CentralDatabase:
        started = time.monotonic()
        with self.server.connect() as conn:
            # PostgreSQL 15's default (WAL_LOG) copies the template through the WAL: 0.4 s a
            # database here; FILE_COPY with fsync off takes 0.15 s.
            strategy = " STRATEGY = FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(f'CREATE DATABASE "{self.name}"{strategy}')
        self.create_seconds = time.monotonic() - started
        return self

    def drop(self) -> None:
        with self.server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
