"""CNC tool and spindle health: a tool-wear indicator from the vibration in cut over time in cut.

A worn cutting edge cuts less cleanly: the spindle vibration while the tool is in the
material rises with the wear, at the same feed. The model averages the vibration over
each cut (a bin counts as in cut while axis Z is below `cut_below_z_mm` and the spindle
turns), learns a fresh tool's in-cut vibration from its first cuts per feed-override band
(the load regime), and publishes the tool-wear indicator

    wear = (mean vibration in this cut) / (fresh tool's, same feed band) − 1

against the accumulated time in cut, with the wear rate over the last cuts and the time
in cut left until `wear_limit`. It warns (an advisory) at `warn_fraction` of the limit, or
earlier when the time left falls below `warn_remaining_s`. Out of cut, the vibration of
the turning spindle has its own baseline: a rise there that tool wear does not explain
points at the spindle (bearings, balance, tool clamping).
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

import numpy as np

from hmi.config.twin import CncToolHealthConfig
from hmi.core.quality import Quality
from hmi.core.tags import TagRegistry
from hmi.twin.bins import Bin, Binner
from hmi.twin.model import Derived, Finding, InputFrame, RecommendedCommand, TwinModel
from hmi.twin.rules import Diagnoser, Rule, rule

IDLE_LEARN_BINS = 60
IDLE_TAU_S = 30.0
RATE_CUTS = 8  # cuts the wear rate is fitted over

RULES: tuple[Rule, ...] = (
    rule(
        "tool_wear",
        "Tool wear: change the tool soon",
        all_of=("tool_worn",),
        checks=(
            "Inspect the cutting edge (flank wear, chipping, built-up edge).",
            "Change the tool before the wear limit; reset the tool's life counter in the control.",
            "Chip evacuation and coolant flow at the cutting edge.",
            "Feeds and speeds of O1001 against the tool maker's data.",
        ),
        on_delay_s=0.0,
        off_delay_s=0.0,
    ),
    rule(
        "spindle",
        "Spindle vibration high out of cut",
        all_of=("spindle_vibration_high",),
        none_of=("tool_worn",),
        checks=(
            "Tool clamping and tool holder runout; clean the taper.",
            "Spindle balance (after a tool or holder change).",
            "Spindle bearings: vibration spectrum, temperature, running noise.",
        ),
        on_delay_s=60.0,
        off_delay_s=120.0,
    ),
)


class ToolHealthModel(TwinModel):
    KIND: ClassVar[str] = "cnc_tool_health"

    def __init__(self, machine: str, config: CncToolHealthConfig, registry: TagRegistry) -> None:
        super().__init__(machine, config, registry)
        self.cfg = config
        self.binner = Binner(len(self.roles), config.bin_s)
        self.r_speed = self.role("spindle_speed")
        self.r_z = self.role("axis_z")
        self.r_vib = self.role("vibration_spindle")
        self.r_feed = self.role("feed_override")
        self.feed_spec = registry.by_name(config.feed_override_tag) if config.feed_override_tag else None
        self.diagnoser = Diagnoser(RULES)
        self.rules = {r.cause: r for r in RULES}
        self.time_in_cut = 0.0
        self._cut_sum = 0.0
        self._cut_bins = 0
        self._cut_feed = 0.0
        self.fresh: dict[int, list[float]] = {}  # feed band -> in-cut means of the fresh tool's first cuts
        self.history: deque[tuple[float, float]] = deque(maxlen=RATE_CUTS)  # (time in cut, wear)
        self.wear = math.nan
        self.remaining = math.nan
        self.last_cut = math.nan
        self.last_band = 0
        self.worn = False
        self._idle_learn: list[float] = []
        self.idle_baseline = math.nan
        self.idle = math.nan
        self.symptoms: set[str] = set()

    def process(self, frame: InputFrame, derived: Derived) -> None:
        for b in self.binner.add(frame.role, frame.ts_ns, frame.values):
            self._on_bin(b, derived)

    def _on_bin(self, b: Bin, derived: Derived) -> None:
        cfg = self.cfg
        z_max, z_min = b.max[self.r_z], b.min[self.r_z]
        spindle_min = b.min[self.r_speed]
        vib = b.mean[self.r_vib]
        if not (np.isfinite(z_max) and np.isfinite(spindle_min) and np.isfinite(vib)):
            return
        turning = spindle_min >= cfg.min_spindle_rpm
        ts = b.end_ns
        if turning and z_max < cfg.cut_below_z_mm and b.count[self.r_vib] > 0:
            self.time_in_cut += cfg.bin_s
            self._cut_sum += float(vib)
            self._cut_bins += 1
            self._cut_feed += float(b.mean[self.r_feed]) if self.r_feed >= 0 else 100.0
            derived.add(self.out("time_in_cut"), ts, self.time_in_cut)
            return
        if self._cut_bins:
            self._end_cut(ts, derived)
        if turning and z_min > cfg.cut_below_z_mm and b.count[self.r_vib] > 0:
            self._on_idle(float(vib), ts, derived)

    def _end_cut(self, ts: int, derived: Derived) -> None:
        cfg = self.cfg
        bins, mean, feed = self._cut_bins, self._cut_sum / self._cut_bins, self._cut_feed / self._cut_bins
        self._cut_sum = self._cut_feed = 0.0
        self._cut_bins = 0
        if bins * cfg.bin_s < cfg.min_cut_s:
            return
        band = round(feed / cfg.feed_band_pct)
        self.last_band = band
        self.last_cut = mean
        derived.add(self.out("vibration_in_cut"), ts, mean)
        fresh = self.fresh.setdefault(band, [])
        if len(fresh) < cfg.baseline_cuts:
            fresh.append(mean)
            return
        baseline = float(np.median(fresh))
        self.wear = mean / baseline - 1.0
        self.history.append((self.time_in_cut, self.wear))
        self.remaining = self._remaining()
        derived.add(self.out("tool_wear"), ts, self.wear)
        derived.add(
            self.out("tool_life_remaining"),
            ts,
            self.remaining,
            Quality.GOOD if math.isfinite(self.remaining) else Quality.UNCERTAIN,
        )
        limit = cfg.wear_limit
        warn = cfg.warn_fraction * limit
        if self.worn:
            self.worn = self.wear >= 0.8 * warn  # hysteresis: a new tool brings it down
        else:
            soon = math.isfinite(self.remaining) and self.remaining < cfg.warn_remaining_s and self.wear >= 0.5 * warn
            self.worn = self.wear >= warn or soon
        self._update_symptom("tool_worn", self.worn)
        self._diagnose(ts, derived)

    def _remaining(self) -> float:
        """Time in cut left until the wear limit at the wear rate of the last cuts (NaN: not wearing)."""
        if len(self.history) < 3:
            return math.nan
        data = np.array(self.history)
        t, w = data[:, 0], data[:, 1]
        t_mean = t.mean()
        denom = float(((t - t_mean) ** 2).sum())
        if denom <= 0:
            return math.nan
        rate = float(((t - t_mean) * (w - w.mean())).sum() / denom)  # wear per second in cut
        if rate <= 1e-6:
            return math.nan
        return max((self.cfg.wear_limit - self.wear) / rate, 0.0)

    def _on_idle(self, vib: float, ts: int, derived: Derived) -> None:
        if len(self._idle_learn) < IDLE_LEARN_BINS:
            self._idle_learn.append(vib)
            if len(self._idle_learn) == IDLE_LEARN_BINS:
                self.idle_baseline = float(np.median(self._idle_learn))
            self.idle = float(np.median(self._idle_learn))
            return
        self.idle += (vib - self.idle) * (1.0 - math.exp(-self.cfg.bin_s / IDLE_TAU_S))
        derived.add(self.out("spindle_vibration_idle"), ts, self.idle)
        high = self.idle > self.idle_baseline * (1.0 + self.cfg.spindle_rise_pct / 100.0)
        self._update_symptom("spindle_vibration_high", high)
        self._diagnose(ts, derived)

    def _update_symptom(self, name: str, present: bool) -> None:
        if present:
            self.symptoms.add(name)
        else:
            self.symptoms.discard(name)

    def _diagnose(self, ts: int, derived: Derived) -> None:
        raised, cleared = self.diagnoser.update(ts, self.symptoms)
        for rl in raised:
            tag = self.advisory_tag(rl.cause)
            self.findings[tag] = self._finding(rl, ts)
            derived.add(self.output_ids[tag], ts, 1.0)
        for rl in cleared:
            tag = self.advisory_tag(rl.cause)
            self.findings.pop(tag, None)
            derived.add(self.output_ids[tag], ts, 0.0)

    def _finding(self, rl: Rule, ts: int) -> Finding:
        cfg = self.cfg
        evidence: list[str] = []
        command = None
        if rl.cause == "tool_wear":
            baseline = float(np.median(self.fresh[self.last_band]))
            evidence.append(
                f"in-cut vibration {self.last_cut:.2f} mm/s, {100 * self.wear:+.0f} % over the fresh tool's"
                f" {baseline:.2f} mm/s at {self.last_band * cfg.feed_band_pct:.0f} % feed"
            )
            evidence.append(
                f"wear indicator {self.wear:.2f} of limit {cfg.wear_limit:.2f} after"
                f" {self.time_in_cut / 60:.0f} min in cut"
            )
            if math.isfinite(self.remaining):
                evidence.append(f"about {self.remaining / 60:.0f} min of cutting left at the present wear rate")
            command = self._feed_command()
        else:
            rise = 100 * (self.idle / self.idle_baseline - 1)
            evidence.append(
                f"spindle vibration out of cut {self.idle:.2f} mm/s, {rise:+.0f} %"
                f" over its baseline {self.idle_baseline:.2f} mm/s"
            )
        return Finding(
            advisory=self.advisory_tag(rl.cause),
            machine=self.machine,
            cause=rl.cause,
            title=rl.title,
            evidence=tuple(evidence),
            checks=rl.checks,
            command=command,
            since_ns=ts,
            details={
                "tool_wear": None if not math.isfinite(self.wear) else round(self.wear, 4),
                "time_in_cut_s": round(self.time_in_cut, 1),
                "remaining_s": None if not math.isfinite(self.remaining) else round(self.remaining, 1),
                "spindle_vibration_idle": None if not math.isfinite(self.idle) else round(self.idle, 4),
            },
        )

    def _feed_command(self) -> RecommendedCommand | None:
        spec = self.feed_spec
        if spec is None:
            return None
        feed = self.last_band * self.cfg.feed_band_pct or 100.0
        target = math.floor(0.8 * feed / 5.0) * 5.0
        if spec.low is not None:
            target = max(target, spec.low)
        if spec.high is not None:
            target = min(target, spec.high)
        return RecommendedCommand(spec.name, target, "a lower feed lowers the load on the worn edge until the change")
