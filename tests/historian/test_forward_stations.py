"""Two stations forwarding into one central database at once, with the same tag names: kept
apart by station, each station's data there exactly once, and a reader without a station
shows both side by side."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from hmi.core.bus import TagBus
from hmi.core.events import Event, EventCategory, Severity
from hmi.historian import HistorianReader
from hmi.historian.reader import with_password_ref
from tests.historian.conftest import NS, T0, grid_batch, make_registry
from tests.historian.test_forward import central_samples, forward_config, local_samples, make_forwarding_writer
from tests.pg import CentralDatabase

pytestmark = pytest.mark.postgres

TAGS = 20
SECONDS = 120


def test_two_stations_with_the_same_tag_names_arrive_apart_each_exactly_once(
    tmp_path: Path, central_db: CentralDatabase
) -> None:
    stations = {"ws1": 0.0, "ws2": 1000.0}  # ws2's values are ws1's + 1000
    writers, paths, buses = {}, {}, {}
    for name in stations:
        registry = make_registry(TAGS)
        buses[name] = TagBus(registry)
        paths[name] = tmp_path / f"{name}.sqlite"
        config = forward_config(central_db, batch_rows=500).model_copy(update={"station": name})
        writers[name] = make_forwarding_writer(paths[name], central_db, registry, buses[name], config=config)

    def record(name: str) -> None:
        # One second per batch, so both forwarders ship many small batches at the same time
        # (the schema, partitions and tags created concurrently).
        for second in range(SECONDS):
            batch = grid_batch(TAGS, second, 1, hz=10)
            batch.values[:] += stations[name]
            buses[name].publish(batch)
        buses[name].publish_events([Event(EventCategory.SYSTEM, "test", f"hello from {name}", Severity.INFO, T0)])

    threads = [threading.Thread(target=record, args=(name,)) for name in stations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        for writer in writers.values():
            assert writer.flush() and writer.forwarder is not None and writer.forwarder.wait_caught_up(30)
    finally:
        for writer in writers.values():
            writer.close()

    for name in stations:
        local = local_samples(paths[name])
        assert len([row for row in local if row[0].startswith("m.")]) == TAGS * SECONDS * 10
        assert central_samples(central_db, name) == local, f"{name}: each sample once, as recorded"
        forwarder = writers[name].forwarder
        assert forwarder is not None and forwarder.stats.merged_batches == 0

    target = with_password_ref(central_db.url, central_db.password_ref)  # no station: every one
    with HistorianReader(target) as reader:
        names = {t.name for t in reader.tags()}
        assert {"ws1/m.t3", "ws2/m.t3"} <= names
        assert "m.t3" not in names
        end = T0 + SECONDS * NS
        one, two = reader.read("ws1/m.t3", T0, end), reader.read("ws2/m.t3", T0, end)
        assert len(one) == len(two) == SECONDS * 10
        assert np.array_equal(one.ts, two.ts)
        assert np.allclose(two.values - one.values, 1000.0)
        sources = {e.source for e in reader.events(T0, end)}
        assert {"ws1/test", "ws2/test"} <= sources
    with HistorianReader(with_password_ref(central_db.url + "?station=ws2", central_db.password_ref)) as reader:
        assert reader.read("m.t3", T0, end).values[0] == 1003.0  # tag 3 at T0, plus 1000
