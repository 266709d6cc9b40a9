"""The PostgreSQL test fixture itself: a server that takes the historian's password_ref."""

from __future__ import annotations

import pytest

from tests.pg import CentralDatabase, PostgresServer

pytestmark = pytest.mark.postgres


def test_central_db_is_a_fresh_database_reached_with_password_ref(
    central_db: CentralDatabase, postgres_server: PostgresServer
) -> None:
    assert "@" in central_db.url and ":" + postgres_server.password not in central_db.url
    engine = central_db.engine()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_database()").scalar() == central_db.name
            tables = conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").scalar()
            assert tables == 0
    finally:
        engine.dispose()
    with central_db.connect() as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "hmi_admin"
    print(f"server start {postgres_server.start_seconds:.2f} s, database {central_db.create_seconds:.3f} s")
