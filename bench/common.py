"""Small shared pieces for the benchmarks: timing, stopping a child, percentiles and table printing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def best_rate(run: Callable[[], int], repeats: int = 5) -> float:
    """Items per second of the fastest of `repeats` runs; `run()` returns the items it did."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        items = run()
        elapsed = time.perf_counter() - start
        best = max(best, items / elapsed)
    return best


def stop_process(proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`: a benchmark leaves no child behind."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentiles_ms(samples_ns: Sequence[int] | np.ndarray) -> tuple[float, float, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), float(arr.max())


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")
