"""Fixtures for historian tests: a registry of tags, a writer on a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hmi.core.samples import SampleBatch
from hmi.core.tags import DataType, TagRegistry, TagSpec
from hmi.historian import HistorianWriter
from tests.conftest import make_test_pki
from tests.pg import PostgresServer

T0 = 1_790_000_000_000_000_000  # 2026-09-21T14:13:20Z
NS = 1_000_000_000


def make_registry(n: int = 4, string_tags: int = 0) -> TagRegistry:
    specs = [TagSpec(f"m.t{i}", unit="mm", description=f"tag {i}") for i in range(n)]
    specs += [TagSpec(f"m.s{i}", datatype=DataType.STRING) for i in range(string_tags)]
    return TagRegistry(specs)


def grid_batch(tags: int, start_s: int, seconds: int, hz: float = 1.0, t0: int = T0) -> SampleBatch:
    """`tags` tags sampled at `hz` from t0 + start_s for `seconds`; value = tag + time in s."""
    steps = int(seconds * hz)
    ts = t0 + ((start_s + np.arange(steps) / hz) * NS).astype(np.int64)
    ids = np.repeat(np.arange(tags, dtype=np.int32), steps)
    all_ts = np.tile(ts, tags)
    values = ids + (all_ts - t0) / NS
    return SampleBatch.from_arrays(ids, all_ts, values, 0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "historian.sqlite"


@pytest.fixture
def make_writer(db_path: Path) -> Iterator[Callable[..., HistorianWriter]]:
    """Build (and finally close) writers on `db_path`; kwargs go to HistorianWriter."""
    writers: list[HistorianWriter] = []

    def make(registry: TagRegistry | None = None, start: bool = True, **kwargs: Any) -> HistorianWriter:
        kwargs.setdefault("commit_interval_s", 0.05)
        kwargs.setdefault("retry_initial_s", 0.05)
        writer = HistorianWriter(str(kwargs.pop("target", db_path)), registry or make_registry(), **kwargs)
        writers.append(writer)
        if start:
            writer.start()
        return writer

    yield make
    for writer in writers:
        writer.close()


@dataclass(frozen=True)
class TlsPostgres:
    server: PostgresServer  # serves TLS only with a certificate `ca` signed
    ca: Path
    other_ca: Path  # a CA that did not sign it


@pytest.fixture
def tls_postgres(tmp_path: Path) -> Iterator[TlsPostgres]:
    """A private PostgreSQL server of its own (not the shared `central_db` one) serving TLS."""
    (tmp_path / "server").mkdir()
    (tmp_path / "other").mkdir()
    ca, _, _, server_cert, server_key = make_test_pki(tmp_path / "server")
    other_ca = make_test_pki(tmp_path / "other")[0]
    server = PostgresServer(ssl_files=(server_cert, server_key)).start()
    try:
        yield TlsPostgres(server, ca, other_ca)
    finally:
        server.stop()
