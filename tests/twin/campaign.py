"""Fault-injection campaigns and healthy shifts for the twin's figures (docs/twin.md).

Each injection runs a fresh demo machine with its own seed, injects the fault at a
seeded time after the baselines are learned, and records which advisories come up and
when. `python -m tests.twin.campaign [runs]` prints the table the docs quote.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from tests.twin.feed import PlantFeed

# fault -> (machine, expected advisory cause, time limit in simulated s after the injection)
FAULTS: dict[str, tuple[str, str, float]] = {
    "cavitation": ("pump01", "cavitation", 30.0),
    "undervoltage": ("pump01", "undervoltage", 30.0),
    "bearing_wear": ("pump01", "bearing_wear", 180.0),
    "blocked_suction": ("pump01", "blocked_suction", 120.0),  # 60 s onset, 20 s on-delay
    "misalignment": ("pump01", "misalignment", 480.0),  # a step: 300 s on-delay after the trend settles
    "tool_wear": ("cnc01", "tool_wear", 600.0),
}
SHIFT_S = 8 * 3600.0


@dataclass(frozen=True)
class Injection:
    fault: str
    seed: int
    at_s: float
    detected_after_s: float | None  # right cause, within the run
    wrong: tuple[str, ...]  # other advisories raised on the machine meanwhile

    @property
    def hit(self) -> bool:
        limit = FAULTS[self.fault][2]
        return self.detected_after_s is not None and self.detected_after_s <= limit and not self.wrong


def inject(fault: str, seed: int) -> Injection:
    machine, cause, limit = FAULTS[fault]
    feed = PlantFeed.demo(machine, seed=seed)
    at = 300.0 + float(np.random.default_rng(seed).uniform(0, 300))
    feed.run(at)
    before = len(feed.raised)
    feed.machines[machine].inject_fault(fault)
    expected = f"{machine}.advisory.{cause}"
    deadline = at + limit
    while feed.t < deadline and feed.first(expected, at) is None:
        feed.run(5.0)
    found = feed.first(expected, at)
    wrong = tuple(r.advisory for r in feed.raised[before:] if r.advisory != expected and r.t_s <= (found or deadline))
    return Injection(fault, seed, at, None if found is None else found - at, wrong)


def healthy_shift(machine: str, seed: int = 1, seconds: float = SHIFT_S) -> list[str]:
    """Advisories raised during a healthy shift; the pump's operator changes the speed twice."""
    feed = PlantFeed.demo(machine, seed=seed, rate_hz=2.0 if machine == "cmm01" else 10.0)

    def operator(f: PlantFeed) -> None:
        if machine == "pump01" and abs(f.t - seconds * 0.25) < 0.05:
            f.machines["pump01"].write("speed_setpoint", 2400)
        if machine == "pump01" and abs(f.t - seconds * 0.6) < 0.05:
            f.machines["pump01"].write("speed_setpoint", 2950)

    feed.run(seconds, operator)
    return [r.advisory for r in feed.raised]


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 20
    print(f"{'fault':<14} {'recall':>8} {'limit s':>8} {'median s':>9} {'max s':>7}  wrong cause")
    for fault, (_, _, limit) in FAULTS.items():
        started = time.monotonic()
        results = [inject(fault, seed) for seed in range(runs)]
        hits = [r for r in results if r.hit]
        times = [r.detected_after_s for r in results if r.detected_after_s is not None]
        wrong = sum(1 for r in results if r.wrong)
        median = statistics.median(times) if times else float("nan")
        longest = max(times) if times else float("nan")
        print(
            f"{fault:<14} {len(hits)}/{runs:<5} {limit:>8.0f} {median:>9.0f} {longest:>7.0f}  {wrong}"
            f"   ({time.monotonic() - started:.0f} s)"
        )
    for machine in ("pump01", "cnc01", "cmm01"):
        raised = healthy_shift(machine)
        print(f"healthy 8 h shift {machine}: {len(raised)} advisories {raised}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
