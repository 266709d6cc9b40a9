"""Centrifugal pump: expected values from its curve, residuals, and a diagnosis of the residuals.

Expected behaviour at speed ratio s = n / n_rated (affinity laws):

- head H = H0·s² − k·Q² (the pump curve at rated speed, scaled), so the expected discharge
  pressure is the measured suction pressure + ρ·g·H(Q, s);
- flow Q = Q_rated·s: through a fixed system curve without static head (a closed loop)
  the operating point moves along a parabola and the flow scales with the speed;
- motor current I = √(I_mag² + (a·s² + b)²): hydraulic power goes with s³ and the drive's
  voltage with s, so the active current goes with s²; the magnetising current is constant;
- suction pressure p_s = p_vessel − k_s·Q²;
- bearing temperature: a first-order lag (τ) towards T_amb + ΔT·s^1.5.

Residuals r = measured − expected are published once per bin (1 s): averaged over the
bin they have a third of the noise of single samples. Then, per operating regime (a band
of the rated speed), a median/MAD baseline of each feature tells when a residual or the
vibration leaves what is normal for this pump at this speed, and a rule table turns the
symptoms into probable causes (module docstring of hmi.twin.rules).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar

import numpy as np

from hmi.config.twin import CentrifugalPumpConfig, PumpCurve
from hmi.core.quality import Quality
from hmi.core.tags import TagRegistry
from hmi.twin.baseline import RegimeBaselines
from hmi.twin.bins import Bin, Binner
from hmi.twin.model import NS, Derived, Finding, InputFrame, RecommendedCommand, TwinModel
from hmi.twin.rules import Diagnoser, Rule, rule

G = 9.80665

# Features judged against the baseline, in this order.
FEATURES = (
    "vibration",  # mm/s
    "residual_dp",  # bar
    "residual_flow",  # fraction of expected
    "residual_current",  # fraction of expected
    "residual_suction",  # bar
    "pressure_noise",  # bar, standard deviation of the discharge pressure within a bin
    "residual_bearing",  # K
    "supply_voltage",  # V
)
VIB, DP, FLOW, CUR, SUC, NOISE, BEAR, VOLT = range(len(FEATURES))
ABS_FLOOR = np.array([0.01, 0.01, 0.005, 0.004, 0.01, 0.002, 0.1, 2.0])
REL_FLOOR = np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.005])
SMOOTH_S = np.array([10.0, 5.0, 5.0, 5.0, 5.0, 10.0, 5.0, 5.0])  # EWMA time constants
TREND_WINDOW_S = 60.0  # a vibration step straddles it for at most this long

RULES: tuple[Rule, ...] = (
    rule(
        "cavitation",
        "Probable cavitation",
        all_of=("suction_low",),
        any_of=("pressure_noisy", "vibration_high", "head_low"),
        checks=(
            "Suction strainer: clogged? Clean it.",
            "Suction valve fully open; nothing throttles the suction line.",
            "Expansion vessel / tank pressure at its set value (NPSH available).",
            "Fluid temperature: warmer water has a higher vapour pressure.",
            "Listen at the pump casing: cavitation crackles like gravel.",
        ),
        on_delay_s=5.0,
        priority="high",
    ),
    rule(
        "blocked_suction",
        "Probable blocked suction",
        all_of=("suction_low", "flow_low"),
        none_of=("pressure_noisy", "vibration_high"),
        checks=(
            "Suction strainer and foot valve: clean them.",
            "Suction valve position.",
            "Air or debris in the suction line.",
        ),
        on_delay_s=20.0,
    ),
    rule(
        "bearing_wear",
        "Probable bearing wear",
        all_of=("vibration_high",),
        any_of=("vibration_rising", "bearing_hot"),
        none_of=("suction_low", "pressure_noisy"),
        checks=(
            "Bearing lubrication: grease quantity and interval, oil level and condition.",
            "Bearing temperature trend at the drive end.",
            "Envelope (demodulated) vibration spectrum for bearing defect frequencies.",
            "Plan the bearing replacement; run at reduced speed until then.",
        ),
        # Longer than a step takes to pass the middle of the trend window: a step
        # (misalignment after maintenance) looks like a rise only then.
        on_delay_s=45.0,
    ),
    rule(
        "misalignment",
        "Probable misalignment",
        all_of=("vibration_high",),
        none_of=("vibration_rising", "bearing_hot", "suction_low", "pressure_noisy"),
        checks=(
            "Shaft alignment pump–motor (laser), after any work on the coupling or the base.",
            "Coupling wear; soft foot; pipe strain on the pump nozzles.",
            "Vibration spectrum: high 1× and 2× running speed, axial direction.",
        ),
        on_delay_s=300.0,
    ),
    rule(
        "undervoltage",
        "Probable undervoltage",
        all_of=("voltage_low", "current_high"),
        checks=(
            "Supply voltage at the drive's terminals, all three phases.",
            "Transformer tap and other large loads switched on the same feeder.",
            "Loose or corroded connections (they also heat up).",
            "Drive's DC-link voltage and undervoltage warnings.",
        ),
        on_delay_s=5.0,
    ),
)


class PumpCurveModel:
    """The expected values of a pump from its curve coefficients (numpy in, numpy out)."""

    def __init__(self, curve: PumpCurve, rated_speed_rpm: float, density_kg_m3: float) -> None:
        self.curve = curve
        self.rated = rated_speed_rpm
        self.bar_per_m = density_kg_m3 * G / 1e5

    def speed_ratio(self, speed_rpm: Any) -> Any:
        return np.asarray(speed_rpm, float) / self.rated

    def head(self, s: Any, flow: Any) -> Any:
        return self.curve.head_shutoff_m * s * s - self.curve.head_k * flow * flow

    def discharge(self, s: Any, flow: Any, suction: Any) -> Any:
        return suction + self.bar_per_m * self.head(s, flow)

    def flow(self, s: Any) -> Any:
        return self.curve.flow_rated_m3h * s

    def current(self, s: Any) -> Any:
        c = self.curve
        return np.hypot(c.current_magnetising_a, c.current_active_a * s * s + c.current_active_b)

    def suction(self, flow: Any) -> Any:
        return self.curve.suction_bar - self.curve.suction_k * flow * flow

    def bearing_target(self, s: Any) -> Any:
        c = self.curve
        return c.bearing_ambient_c + c.bearing_rise_k * np.power(np.maximum(s, 0.0), 1.5)


class PumpModel(TwinModel):
    KIND: ClassVar[str] = "centrifugal_pump"

    def __init__(self, machine: str, config: CentrifugalPumpConfig, registry: TagRegistry) -> None:
        super().__init__(machine, config, registry)
        self.cfg = config
        self.det = config.detection
        self.curve = PumpCurveModel(config.curve, config.rated_speed_rpm, config.density_kg_m3)
        self.binner = Binner(len(self.roles), config.bin_s)
        self.r = {name: self.role(name) for name in config.INPUTS}
        learn_n = max(round(self.det.learn_s / config.bin_s), 10)
        self.baselines = RegimeBaselines(len(FEATURES), learn_n, ABS_FLOOR, REL_FLOOR, self.det.adapt_tau_s)
        self.diagnoser = Diagnoser(RULES)
        self.rules = {r.cause: r for r in RULES}
        self.setpoint_spec = registry.by_name(config.speed_setpoint_tag) if config.speed_setpoint_tag else None
        self.regime: int | None = None
        self.last_speed: float | None = None
        self.steady_since: int | None = None
        self.ewma: np.ndarray | None = None
        self.trend: deque[tuple[float, float]] = deque(maxlen=int(TREND_WINDOW_S / config.bin_s))
        self.bearing_model: float | None = None
        self.last_bin_ns: int | None = None
        self.symptoms: set[str] = set()
        self.z = np.full(len(FEATURES), np.nan)
        self.features = np.full(len(FEATURES), np.nan)
        self.context: dict[str, float] = {}
        self.out_ids = {
            name: self.out(name)
            for name in (
                "expected_discharge_pressure",
                "expected_flow",
                "expected_motor_current",
                "residual_discharge_pressure",
                "residual_flow",
                "residual_motor_current",
                "residual_suction_pressure",
                "residual_bearing_temperature",
            )
        }
        self._values_ids = np.array(list(self.out_ids.values()), np.int32)

    # -- per batch -----------------------------------------------------------------------

    def process(self, frame: InputFrame, derived: Derived) -> None:
        for b in self.binner.add(frame.role, frame.ts_ns, frame.values):
            self._on_bin(b, derived)

    # -- per bin --------------------------------------------------------------------------

    def _on_bin(self, b: Bin, derived: Derived) -> None:
        r = self.r
        mean = b.mean
        if not np.isfinite(mean[[r["speed"], r["flow"], r["suction_pressure"], r["discharge_pressure"]]]).all():
            return  # an input has never had a good value
        ts = b.end_ns
        dt = self.cfg.bin_s if self.last_bin_ns is None else (ts - self.last_bin_ns) / NS
        self.last_bin_ns = ts
        speed = float(mean[r["speed"]])
        s = speed / self.cfg.rated_speed_rpm
        flow = float(mean[r["flow"]])
        suction = float(mean[r["suction_pressure"]])
        exp_flow = float(self.curve.flow(s))
        exp_dp = float(self.curve.discharge(s, flow, suction))
        exp_cur = float(self.curve.current(s))
        exp_suc = float(self.curve.suction(flow))
        bearing = float(mean[r["bearing_temperature"]])
        target = float(self.curve.bearing_target(s))
        if self.bearing_model is None or not math.isfinite(self.bearing_model):
            self.bearing_model = bearing
        else:
            self.bearing_model = target + (self.bearing_model - target) * math.exp(-dt / self.cfg.curve.bearing_tau_s)
        residuals = np.array(
            [
                mean[r["discharge_pressure"]] - exp_dp,
                flow - exp_flow,
                mean[r["motor_current"]] - exp_cur,
                suction - exp_suc,
                bearing - self.bearing_model,
            ]
        )
        expected = np.array([exp_dp, exp_flow, exp_cur])
        derived.add(self._values_ids, ts, np.concatenate([expected, residuals]))

        head_bar = self.curve.bar_per_m * float(self.curve.head(s, flow))
        self.context = {
            "speed": speed,
            "flow": flow,
            "expected_flow": exp_flow,
            "expected_current": exp_cur,
            "current": float(mean[r["motor_current"]]),
            "suction": suction,
            "expected_suction": exp_suc,
            "head_bar": head_bar,
            "voltage": float(mean[r["supply_voltage"]]),
            "vibration": float(mean[r["vibration_rms"]]),
        }
        x = np.array(
            [
                mean[r["vibration_rms"]],
                residuals[0],
                residuals[1] / exp_flow if exp_flow > 0 else np.nan,
                residuals[2] / exp_cur if exp_cur > 0 else np.nan,
                residuals[3],
                b.std[r["discharge_pressure"]],
                residuals[4],
                mean[r["supply_voltage"]],
            ]
        )
        regime = self._regime(ts, speed, s)
        symptoms: set[str] = set()
        score = math.nan
        if regime is not None and regime > 0:
            if self.ewma is None:
                self.ewma = x.copy()
                self.trend.clear()
            else:
                alpha = 1.0 - np.exp(-dt / SMOOTH_S)
                fresh = ~np.isfinite(self.ewma)
                self.ewma = np.where(fresh, x, self.ewma + alpha * np.where(np.isfinite(x), x - self.ewma, 0.0))
            self.features = self.ewma
            self.trend.append((ts / NS, float(self.ewma[VIB])))
            z = self.baselines.observe(regime, self.ewma, dt, hold=bool(self.symptoms or self.diagnoser.active()))
            if z is not None:
                self.z = z
                score = float(np.nanmax(np.abs(z)))
                symptoms = self._symptoms(regime, z)
        else:
            self.ewma = None
            self.z = np.full(len(FEATURES), np.nan)
        self.symptoms = symptoms
        judged = regime is not None and regime > 0 and math.isfinite(score)
        derived.add(self.out("anomaly_score"), ts, score, Quality.GOOD if judged else Quality.UNCERTAIN)
        shown_regime = regime if regime is not None and (regime == 0 or judged) else -1
        derived.add(self.out("regime"), ts, shown_regime)
        if not judged:
            return  # settling, learning or stopped: advisories stay as they are until the pump can be judged
        raised, cleared = self.diagnoser.update(ts, symptoms)
        for rl in raised:
            self.findings[self.advisory_tag(rl.cause)] = self._finding(rl, ts, regime or 0)
            derived.add(self.out_ids_advisory(rl.cause), ts, 1.0)
        for rl in cleared:
            self.findings.pop(self.advisory_tag(rl.cause), None)
            derived.add(self.out_ids_advisory(rl.cause), ts, 0.0)

    def out_ids_advisory(self, cause: str) -> int:
        return self.output_ids[self.advisory_tag(cause)]

    def _regime(self, ts: int, speed: float, s: float) -> int | None:
        """The speed band, or 0 when stopped, or None while the speed settles after a change."""
        rated = self.cfg.rated_speed_rpm
        if self.last_speed is None or abs(speed - self.last_speed) > 0.005 * rated:
            self.steady_since = ts
        self.last_speed = speed
        pct = s * 100.0
        if pct < self.det.min_speed_pct:
            self.regime = 0
            return 0
        band = self.det.speed_band_pct
        if self.regime is None or self.regime <= 0 or abs(pct - self.regime * band) > band / 2 + 1.0:
            new = max(round(pct / band), 1)
            if new != self.regime:
                self.regime = new
                self.ewma = None
        assert self.steady_since is not None
        if ts - self.steady_since < self.det.settle_s * NS:
            return None
        return self.regime

    def _symptoms(self, regime: int, z: np.ndarray) -> set[str]:
        d = self.det
        x = self.ewma
        assert x is not None
        c = self.baselines.get(regime).center
        zl = d.z_limit
        out: set[str] = set()
        if z[VIB] > zl and x[VIB] > c[VIB] * (1 + d.vibration_rise_pct / 100):
            out.add("vibration_high")
        if self._vibration_trend_pct_per_min(c[VIB]) > d.vibration_trend_pct_per_min:
            out.add("vibration_rising")
        head_bar = self.context.get("head_bar", 0.0)
        if z[DP] < -zl and head_bar > 0 and (x[DP] - c[DP]) / head_bar < -0.05:
            out.add("head_low")
        if z[FLOW] < -zl and x[FLOW] - c[FLOW] < -d.flow_drop_pct / 100:
            out.add("flow_low")
        if z[CUR] > zl and x[CUR] - c[CUR] > d.current_rise_pct / 100:
            out.add("current_high")
        if z[SUC] < -zl and x[SUC] - c[SUC] < -d.suction_drop_bar:
            out.add("suction_low")
        if z[NOISE] > zl and x[NOISE] > c[NOISE] * d.noise_ratio:
            out.add("pressure_noisy")
        if z[BEAR] > zl and x[BEAR] - c[BEAR] > d.bearing_rise_k:
            out.add("bearing_hot")
        if z[VOLT] < -zl and x[VOLT] < d.rated_voltage_v * (1 - d.undervoltage_pct / 100):
            out.add("voltage_low")
        return out

    def _vibration_trend_pct_per_min(self, center: float) -> float:
        """How fast the smoothed vibration grows, in % of its baseline per minute: the smaller
        of the slopes over the two halves of the trend window, per minute, in % of the window's
        level (at least the baseline). A growing fault (wear) rises in both halves; a step
        (misalignment after maintenance) only while it passes the middle."""
        if len(self.trend) < (self.trend.maxlen or 0) or not center > 0:
            return 0.0
        data = np.array(self.trend)
        half = data.shape[0] // 2
        slopes = [_slope(part[:, 0], part[:, 1]) for part in (data[:half], data[half:])]
        # Relative to the level now, not only the baseline: after a step (misalignment) the
        # level is 2-3 × the baseline and so is its noise, whose random slopes would read as
        # growth against the old baseline.
        level = max(center, float(np.mean(data[:, 1])))
        return min(slopes) * 60.0 / level * 100.0

    # -- advisories -----------------------------------------------------------------------------

    def _finding(self, rl: Rule, ts: int, regime: int) -> Finding:
        ctx = self.context
        x = self.ewma if self.ewma is not None else np.full(len(FEATURES), np.nan)
        c = self.baselines.get(regime).center
        z = self.z
        evidence: list[str] = []
        symptoms = self.symptoms
        if "suction_low" in symptoms:
            evidence.append(
                f"suction pressure {ctx['suction']:.2f} bar, {c[SUC] - x[SUC]:.2f} bar below its baseline"
                f" (expected {ctx['expected_suction']:.2f} bar at {ctx['flow']:.1f} m³/h)"
            )
        if "pressure_noisy" in symptoms:
            evidence.append(f"discharge pressure fluctuates {x[NOISE]:.3f} bar RMS, {x[NOISE] / c[NOISE]:.1f} × usual")
        if "head_low" in symptoms:
            evidence.append(f"head {100 * (x[DP] - c[DP]) / ctx['head_bar']:+.0f} % against the pump curve")
        if "flow_low" in symptoms:
            evidence.append(
                f"flow {ctx['flow']:.1f} m³/h, {100 * (x[FLOW] - c[FLOW]):+.1f} % against expected"
                f" {ctx['expected_flow']:.1f} m³/h"
            )
        if "vibration_high" in symptoms:
            evidence.append(
                f"vibration {x[VIB]:.2f} mm/s, {100 * (x[VIB] / c[VIB] - 1):+.0f} % over its baseline"
                f" {c[VIB]:.2f} mm/s at {ctx['speed']:.0f} rpm"
            )
        if "vibration_rising" in symptoms:
            evidence.append(f"vibration rising {self._vibration_trend_pct_per_min(c[VIB]):.0f} %/min")
        if "bearing_hot" in symptoms:
            evidence.append(f"bearing {x[BEAR] - c[BEAR]:.1f} K warmer than its thermal model")
        if "voltage_low" in symptoms:
            evidence.append(f"supply {ctx['voltage']:.0f} V (rated {self.det.rated_voltage_v:.0f} V)")
        if "current_high" in symptoms:
            evidence.append(
                f"motor current {ctx['current']:.1f} A, {100 * (x[CUR] - c[CUR]):+.1f} % over expected"
                f" {ctx['expected_current']:.1f} A"
            )
        details: dict[str, Any] = {
            name: (None if not math.isfinite(v) else round(float(v), 6)) for name, v in zip(FEATURES, x)
        }
        details["z"] = {name: (None if not math.isfinite(v) else round(float(v), 2)) for name, v in zip(FEATURES, z)}
        details["symptoms"] = sorted(symptoms)
        details["regime"] = regime
        return Finding(
            advisory=self.advisory_tag(rl.cause),
            machine=self.machine,
            cause=rl.cause,
            title=rl.title,
            evidence=tuple(evidence),
            checks=rl.checks,
            command=self._command(rl.cause),
            since_ns=ts,
            details=details,
        )

    def _command(self, cause: str) -> RecommendedCommand | None:
        spec = self.setpoint_spec
        speed = self.context.get("speed", 0.0)
        if spec is None or speed <= 0:
            return None
        if cause == "cavitation":
            target = 0.85 * speed
            reason = "a lower speed lowers the NPSH the pump needs and the suction line loss (both ∝ n²)"
        elif cause == "bearing_wear":
            target = 0.8 * speed
            reason = "a lower speed lowers bearing load and temperature until the bearing is replaced"
        elif cause == "undervoltage":
            supply = self.context.get("voltage", self.det.rated_voltage_v)
            target = self.cfg.rated_speed_rpm * supply / self.det.rated_voltage_v * 0.97
            reason = f"at this speed the drive gives full flux from {supply:.0f} V and the current returns to normal"
        else:
            return None
        target = math.floor(target / 50.0) * 50.0
        if spec.low is not None:
            target = max(target, spec.low)
        if spec.high is not None:
            target = min(target, spec.high)
        return RecommendedCommand(spec.name, target, reason)


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y over t."""
    t = t - t.mean()
    denom = float((t * t).sum())
    return float((t * (y - y.mean())).sum() / denom) if denom > 0 else 0.0
