"""Tag bus throughput: batches of 1000 samples through publish to three subscribers,
beside a raw numpy copy of the same four arrays (the ceiling) in the same run."""

from __future__ import annotations

import collections

import numpy as np

from bench.common import best_rate, fmt_rate, print_table
from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec

BATCH = 1000
BATCHES = 2000
TAGS = 200


def make_batches() -> list[SampleBatch]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(BATCHES):
        ids = rng.integers(0, TAGS, BATCH).astype(np.int32)
        ts = np.arange(i * BATCH, (i + 1) * BATCH, dtype=np.int64)
        out.append(SampleBatch.from_arrays(ids, ts, rng.standard_normal(BATCH), 0))
    return out


def main() -> dict[str, float]:
    batches = make_batches()
    bus = TagBus(TagRegistry(TagSpec(f"m.t{i}") for i in range(TAGS)))
    sinks = [collections.deque(maxlen=16) for _ in range(3)]
    for sink in sinks:
        bus.subscribe(sink.append)

    def through_bus() -> int:
        for batch in batches:
            bus.publish(batch)
        return BATCHES * BATCH

    def raw_copy() -> int:
        for b in batches:
            b.tag_ids.copy()
            b.ts_ns.copy()
            b.values.copy()
            b.quality.copy()
        return BATCHES * BATCH

    bus_rate = best_rate(through_bus)
    copy_rate = best_rate(raw_copy)
    print_table(
        f"Tag bus: batches of {BATCH} samples, {TAGS} tags, 3 subscribers",
        [
            ("TagBus.publish", fmt_rate(bus_rate), f"{bus_rate / copy_rate:.2f}"),
            ("numpy copy of the 4 arrays (ceiling)", fmt_rate(copy_rate), "1.00"),
        ],
        ("path", "samples/s", "ratio"),
    )
    return {"bus_samples_per_s": bus_rate, "copy_samples_per_s": copy_rate}


if __name__ == "__main__":
    main()
