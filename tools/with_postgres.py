"""Run a command beside a throwaway PostgreSQL server: `with_postgres.py CMD [ARG...]`.

The server is the tests' own (tests/pg.py: initdb into a temporary folder, a free
127.0.0.1 port, password authentication; as the `postgres` system user when run as root).
CMD gets HMI_SELFTEST_POSTGRES (the server's URL, no password in it) and the password
under the name its `?password_ref=` gives, and nothing else from here: the rest of its
environment is this process's own, so `env -i ... with_postgres.py hmi --self-test` keeps
the self-test's clean environment. The server is stopped and removed when CMD ends; the
exit code is CMD's. Exit 3 without running anything when PostgreSQL is not installed
(`--check` says only that).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hmi.config.credentials import env_name  # noqa: E402
from hmi.selftest import POSTGRES_ENV  # noqa: E402
from tests.pg import PostgresServer, postgres_bindir  # noqa: E402

PASSWORD_REF = "selftest_postgres"
EXIT_NO_POSTGRES = 3


def main(argv: list[str]) -> int:
    if postgres_bindir() is None:
        print("with_postgres: PostgreSQL is not installed (initdb, pg_ctl)", file=sys.stderr)
        return EXIT_NO_POSTGRES
    if argv == ["--check"]:
        return 0
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    env = dict(os.environ)
    # runuser (root starts the server as `postgres`) lives in sbin, which a clean PATH lacks;
    # CMD keeps the PATH it was given.
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])
    server = PostgresServer()
    try:
        server.start()
        print(f"with_postgres: PostgreSQL on port {server.port}, started in {server.start_seconds:.1f} s", flush=True)
        env[POSTGRES_ENV] = f"{server.url()}?password_ref={PASSWORD_REF}"
        env[env_name(PASSWORD_REF)] = server.password
        return subprocess.run(argv, env=env, check=False).returncode
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
