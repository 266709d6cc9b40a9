"""Fit a pump's curve coefficients from a recorded healthy period (`hmi twin fit`).

The recorded inputs are averaged over 1 s bins (the same Binner the model uses), bins at
a steady speed above the stopped threshold are kept, and each relation of hmi.twin.pump
is fitted by linear least squares:

- flow Q = Q_rated·s                      (through the origin)
- head H = H0·s² − k·Q²                   (H from discharge − suction pressure)
- suction p_s = p0 − k_s·Q²
- active current √(I² − I_mag²) = a·s² + b (I_mag, the no-load current, from the data sheet)
- bearing T = T_amb + ΔT·s^1.5            (bins at least three time constants after a speed change)

A coefficient the period cannot tell apart from another is not fitted but kept from the
project file (or a stated default), and the report says so: in a closed loop without a
throttling valve Q/n is the same at every speed, so H0 and k (and p0 and k_s) cannot be
separated, only their combination at the loop's operating point; a period at one speed
cannot separate a and b, nor T_amb and ΔT. Record a period with a few speed steps to fit
more of the curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hmi.config.twin import CentrifugalPumpConfig, PumpCurve
from hmi.historian.reader import HistorianReader
from hmi.twin.bins import Binner
from hmi.twin.model import NS
from hmi.twin.pump import G, PumpCurveModel

ROLES = ("speed", "flow", "suction_pressure", "discharge_pressure", "motor_current", "bearing_temperature")
SPREAD_NEEDED = 0.05  # relative spread a regressor needs before its coefficient is fitted


class FitError(ValueError):
    pass


@dataclass
class FitResult:
    machine: str
    curve: PumpCurve
    bins: int
    seconds: float
    speed_range: tuple[float, float]
    rms: dict[str, float]  # residual RMS per quantity with the fitted curve
    kept: dict[str, str] = field(default_factory=dict)  # coefficient -> why it was not fitted

    def toml(self) -> str:
        c = self.curve
        lines = [
            f"# Fitted by `hmi twin fit` from {self.bins} s of {self.machine} at "
            f"{self.speed_range[0]:.0f}–{self.speed_range[1]:.0f} rpm.",
        ]
        lines += [f"# {name}: kept, {why}" for name, why in self.kept.items()]
        lines.append(f"[twin.{self.machine}.curve]")
        for name in PumpCurve.model_fields:
            lines.append(f"{name} = {_fmt(getattr(c, name))}")
        return "\n".join(lines)

    def report(self) -> str:
        rows = [f"{self.machine}: {self.bins} steady 1 s bins over {self.seconds / 60:.0f} min"]
        rows += [f"  residual RMS {name}: {value:.4g}" for name, value in self.rms.items()]
        return "\n".join(rows)


def _fmt(value: float) -> str:
    if value == 0:
        return "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        return f"{value:.6g}" if "." in f"{value:.6g}" or "e" in f"{value:.6g}" else f"{value:.6g}.0"
    return f"{value:.4e}"


def _spread(x: np.ndarray) -> float:
    mean = float(np.mean(np.abs(x)))
    return float(np.std(x)) / mean if mean > 0 else 0.0


def read_bins(
    reader: HistorianReader, tags: dict[str, str], start_ns: int, end_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """(bin end times, means per bin and role) of the recorded inputs, 1 s bins."""
    roles, ts, values = [], [], []
    for i, name in enumerate(ROLES):
        try:
            series = reader.read(tags[name], start_ns, end_ns)
        except KeyError:
            raise FitError(f"the historian has no tag {tags[name]!r} (input {name})") from None
        good = series.quality <= 1
        roles.append(np.full(int(good.sum()), i, np.int32))
        ts.append(series.ts[good])
        values.append(series.values[good])
    role = np.concatenate(roles)
    t = np.concatenate(ts)
    v = np.concatenate(values)
    if t.shape[0] == 0:
        raise FitError("no samples in that time range")
    order = np.argsort(t, kind="stable")
    binner = Binner(len(ROLES), 1.0)
    bins = binner.add(role[order], t[order], v[order])
    ends = np.array([b.end_ns for b in bins], np.int64)
    means = np.array([b.mean for b in bins]) if bins else np.zeros((0, len(ROLES)))
    return ends, means


def fit_pump(
    reader: HistorianReader,
    machine: str,
    start_ns: int,
    end_ns: int,
    config: CentrifugalPumpConfig | None = None,
    rated_speed_rpm: float | None = None,
    magnetising_a: float | None = None,
) -> FitResult:
    if config is not None:
        rated = config.rated_speed_rpm
        prior, density, min_pct = config.curve, config.density_kg_m3, config.detection.min_speed_pct
        tags = config.input_tags(machine)
        tau = config.curve.bearing_tau_s
    else:
        if rated_speed_rpm is None:
            raise FitError(f"give --rated-speed, or --project with a [twin.{machine}] section")
        rated, prior, density, min_pct, tau = rated_speed_rpm, None, 998.0, 20.0, 600.0
        tags = {role: f"{machine}.{role}" for role in ROLES}
    ends, m = read_bins(reader, tags, start_ns, end_ns)
    finite = np.isfinite(m).all(axis=1)
    s_all = m[:, 0] / rated
    steady = finite & (s_all * 100 >= min_pct)
    steady[1:] &= np.abs(np.diff(m[:, 0])) < 0.005 * rated
    steady[0] = False
    if steady.sum() < 30:
        raise FitError(f"only {int(steady.sum())} s of steady running in that range: fit needs at least 30 s")
    speed, q, ps, pd, cur, bear = (m[steady, i] for i in range(len(ROLES)))
    s = speed / rated
    s_vals = m[:, 0] / rated
    kept: dict[str, str] = {}
    bar_per_m = density * G / 1e5

    def prior_or(name: str, default: float, why: str) -> float:
        kept[name] = why + ("" if prior is not None else f" (no project value: default {default:g})")
        return float(getattr(prior, name)) if prior is not None else default

    # Flow through the system curve: Q = Q_rated·s.
    q_rated = float((q * s).sum() / (s * s).sum())
    # Head: H = H0·s² − k·Q².
    head = (pd - ps) / bar_per_m
    ratio = q / s
    if _spread(ratio) >= SPREAD_NEEDED:
        (h0, k), *_ = np.linalg.lstsq(np.column_stack([s * s, -q * q]), head, rcond=None)
    else:
        why = "Q/n does not vary in this period (a closed loop): H0 and k cannot be told apart"
        # Default: shut-off head 25 % above the operating point's (typical of radial pumps).
        h_point = float((head / (s * s)).mean())
        k = prior_or("head_k", 0.2 * h_point / (q_rated * q_rated), why)
        h0 = float(((head + k * q * q) * s * s).sum() / (s**4).sum())
    # Suction: p_s = p0 − k_s·Q².
    if _spread(q * q) >= SPREAD_NEEDED:
        (p0, ks), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(q), -q * q]), ps, rcond=None)
    else:
        ks = prior_or("suction_k", 0.0, "the flow does not vary in this period: the line loss cannot be fitted")
        p0 = float((ps + ks * q * q).mean())
    # Motor current: √(I² − I_mag²) = a·s² + b.
    if magnetising_a is not None:
        i_mag = magnetising_a
    elif prior is not None:
        i_mag = prior.current_magnetising_a
    else:
        # A third of the running current is typical of small induction motors; the data sheet knows better.
        i_mag = float(np.median(cur)) / 3.0
        kept["current_magnetising_a"] = f"motor data, not fitted: default {i_mag:.3g} A (give --magnetising-current)"
    active = np.sqrt(np.maximum(cur * cur - i_mag * i_mag, 0.0))
    if _spread(s * s) >= SPREAD_NEEDED:
        (a, b), *_ = np.linalg.lstsq(np.column_stack([s * s, np.ones_like(s)]), active, rcond=None)
    else:
        b = prior_or("current_active_b", 0.0, "one speed only: a and b cannot be told apart")
        a = float(((active - b) * s * s).sum() / (s**4).sum())
    # Bearing at thermal steady state: T = T_amb + ΔT·s^1.5, bins 3τ after the last speed change.
    changed_at = np.maximum.accumulate(np.where(np.r_[True, np.abs(np.diff(s_vals)) >= 0.005], ends, np.int64(ends[0])))
    settled = (ends - changed_at >= 3 * tau * NS)[steady]
    amb = prior.bearing_ambient_c if prior is not None else 25.0
    if prior is None:
        kept["bearing_ambient_c"] = "not fitted: default 25 °C"
    if settled.sum() >= 30:
        x = np.power(s[settled], 1.5)
        rise = float(((bear[settled] - amb) * x).sum() / (x * x).sum())
    else:
        rise = prior_or("bearing_rise_k", 20.0, f"the period has no steady bearing temperature ({3 * tau:.0f} s)")
    curve = PumpCurve(
        head_shutoff_m=float(h0),
        head_k=max(float(k), 0.0),
        flow_rated_m3h=q_rated,
        suction_bar=float(p0),
        suction_k=max(float(ks), 0.0),
        current_magnetising_a=float(i_mag),
        current_active_a=float(a),
        current_active_b=float(b),
        bearing_ambient_c=float(amb),
        bearing_rise_k=max(float(rise), 0.0),
        bearing_tau_s=tau,
    )
    model = PumpCurveModel(curve, rated, density)
    rms = {
        "discharge_pressure (bar)": _rms(pd - model.discharge(s, q, ps)),
        "flow (m³/h)": _rms(q - model.flow(s)),
        "motor_current (A)": _rms(cur - model.current(s)),
        "suction_pressure (bar)": _rms(ps - model.suction(q)),
    }
    return FitResult(
        machine=machine,
        curve=curve,
        bins=int(steady.sum()),
        seconds=(end_ns - start_ns) / NS,
        speed_range=(float(m[steady, 0].min()), float(m[steady, 0].max())),
        rms=rms,
        kept=kept,
    )


def _rms(x: np.ndarray) -> float:
    return float(math.sqrt(float(np.mean(x * x)))) if x.shape[0] else math.nan
