"""Alarm engine: samples/s against 1,000 alarm definitions beside a bare numpy comparison of
the same values against the same limits (the ceiling) in the same run; transitions/s in a
flood; and the window's longest UI-thread stall while 10,000 alarms arrive (run in a child
process with its own runtime side, see bench/_ui_alarm_flood.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from bench.common import best_rate, fmt_rate, print_table
from hmi.core.alarms import AlarmDefinition, AlarmEngine, Condition, Priority
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry, TagSpec

TAGS = 250
CONDITIONS = ((Condition.HI, 80.0), (Condition.HIHI, 90.0), (Condition.LO, 20.0), (Condition.LOLO, 10.0))
BATCH = 1000
BATCHES = 1000
FLOOD = 10_000


def definitions(tags: int) -> tuple[TagRegistry, list[AlarmDefinition]]:
    registry = TagRegistry(TagSpec(f"m{i // 25:02d}.t{i:04d}") for i in range(tags))
    defs = [
        AlarmDefinition(f"m{i // 25:02d}.t{i:04d}.{c}", f"m{i // 25:02d}.t{i:04d}", c, Priority.MEDIUM, limit, 1.0)
        for i in range(tags)
        for c, limit in CONDITIONS
    ]
    return registry, defs


def make_batches(sigma: float) -> list[SampleBatch]:
    """Values around 50 with noise; the limits sit at 50 +- 30 and 40."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(BATCHES):
        ids = rng.integers(0, TAGS, BATCH).astype(np.int32)
        ts = np.arange(i * BATCH, (i + 1) * BATCH, dtype=np.int64) * 1000
        out.append(SampleBatch.from_arrays(ids, ts, 50.0 + sigma * rng.standard_normal(BATCH), 0))
    return out


def engine_vs_numpy(sigma: float) -> tuple[float, float, int]:
    registry, defs = definitions(TAGS)
    batches = make_batches(sigma)
    transitions = 0

    def engine_run() -> int:
        nonlocal transitions
        engine = AlarmEngine(defs, registry)
        count = 0
        for batch in batches:
            count += len(engine.evaluate(batch))
        transitions = count
        return BATCHES * BATCH

    # The ceiling: gather each sample's four limits and compare, nothing else.
    limits = np.array([[80.0, 90.0, -20.0, -10.0]] * TAGS)
    signs = np.array([1.0, 1.0, -1.0, -1.0])

    def numpy_run() -> int:
        for batch in batches:
            hit = batch.values[:, None] * signs > np.take(limits, batch.tag_ids, axis=0)
            hit.any()
        return BATCHES * BATCH

    # Interleaved, best of five each: on a shared machine both see the same load.
    engine_rate = numpy_rate = 0.0
    for _ in range(5):
        engine_rate = max(engine_rate, best_rate(engine_run, repeats=1))
        numpy_rate = max(numpy_rate, best_rate(numpy_run, repeats=1))
    return engine_rate, numpy_rate, transitions


def flood_transitions() -> tuple[float, float, float]:
    """10,000 HI alarms on 10,000 tags all trip in one batch; then all are acknowledged."""
    registry = TagRegistry(TagSpec(f"m{i // 100:03d}.t{i:05d}") for i in range(FLOOD))
    defs = [
        AlarmDefinition(f"m{i // 100:03d}.t{i:05d}.hi", f"m{i // 100:03d}.t{i:05d}", Condition.HI, limit=1.0)
        for i in range(FLOOD)
    ]
    best = (0.0, 0.0, 0.0)
    for _ in range(3):
        engine = AlarmEngine(defs, registry)
        batch = SampleBatch.from_arrays(np.arange(FLOOD), np.arange(FLOOD) * 100 + 1, np.full(FLOOD, 2.0), 0)
        start = time.perf_counter()
        records = engine.evaluate(batch)
        evaluated = time.perf_counter()
        events = [r.to_event() for r in records]
        as_events = time.perf_counter()
        for d in defs:
            engine.acknowledge(d.name, "bench", 10**12)
        acked = time.perf_counter()
        assert len(events) >= FLOOD
        rates = (FLOOD / (evaluated - start), FLOOD / (as_events - start), FLOOD / (acked - as_events))
        best = max(best, rates)
    return best


def ui_flood_stall() -> str:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen" if not env.get("DISPLAY") else env.get("QT_QPA_PLATFORM", ""))
    if not env["QT_QPA_PLATFORM"]:
        del env["QT_QPA_PLATFORM"]
    result = subprocess.run(
        [sys.executable, "-m", "bench._ui_alarm_flood"], capture_output=True, text=True, env=env, timeout=300
    )
    if result.returncode != 0:
        return f"failed: {result.stderr.strip().splitlines()[-1:]}"
    return result.stdout.strip().splitlines()[-1]


def main() -> dict[str, float]:
    rows = []
    results = {}
    for label, sigma in (("steady plant", 7.0), ("busy plant", 9.0)):
        engine_rate, numpy_rate, transitions = engine_vs_numpy(sigma)
        results[label] = engine_rate / numpy_rate
        rows.append((f"AlarmEngine.evaluate, {label}", f"{transitions:,}", fmt_rate(engine_rate),
                     f"{engine_rate / numpy_rate:.2f}"))  # fmt: skip
        rows.append(("  numpy: gather 4 limits per sample, compare (ceiling)", "", fmt_rate(numpy_rate), "1.00"))
    print_table(
        f"Alarm engine: {BATCHES * BATCH:,} samples in batches of {BATCH}, {TAGS} tags x 4 limits = "
        f"{TAGS * 4} alarm definitions (values 50 + noise; limits 10, 20, 80, 90)",
        rows,
        ("path", "transitions", "samples/s", "ratio"),
    )
    evaluate_rate, with_events, ack_rate = flood_transitions()
    print_table(
        f"Alarm flood: {FLOOD:,} alarms trip in one batch, then each is acknowledged",
        [
            ("activations (evaluate)", fmt_rate(evaluate_rate)),
            ("activations incl. Event records", fmt_rate(with_events)),
            ("acknowledgements", fmt_rate(ack_rate)),
        ],
        ("path", "transitions/s"),
    )
    stall = ui_flood_stall()
    print_table(
        f"Window during a flood of {FLOOD:,} alarms in one second (runtime in a child process)",
        [("longest UI-thread stall", stall)],
        ("measure", "result"),
    )
    return {
        "steady_ratio": results["steady plant"],
        "busy_ratio": results["busy plant"],
        "flood_transitions_per_s": with_events,
    }


if __name__ == "__main__":
    main()
