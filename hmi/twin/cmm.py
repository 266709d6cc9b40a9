"""CMM thermal compensation: the measured length brought to 20 °C, its uncertainty, pass/fail.

ISO 1 states lengths at 20 °C. A part measured warm is longer by α·(T − 20 °C) per unit of
length, so

    L20 = L / (1 + α·(T − 20 °C))

With the GUM's law of propagation of uncertainty (first order, inputs uncorrelated) the
standard uncertainty of L20 from the part temperature's u(T), the expansion coefficient's
u(α) and the raw measurement's u(L) is

    u(L20)² = (∂L20/∂T · u(T))² + (∂L20/∂α · u(α))² + (∂L20/∂L · u(L))²
    ∂L20/∂T = −L·α / (1 + αΔT)²,  ∂L20/∂α = −L·ΔT / (1 + αΔT)²,  ∂L20/∂L = 1 / (1 + αΔT)

and the published expanded uncertainty is U = k·u (k = 2 by default, about 95 %).

Each measurement is judged against nominal ± tolerance raw and compensated. With a part
id input, each part is judged once, by its last measurement (when the next part arrives):
a part that fails raw but passes at 20 °C is a false failure the compensation avoided.
With `decision_rule = "guarded"` (ISO 14253-1 conformance) a part passes only if
|deviation| + U stays within the tolerance.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from hmi.config.twin import ThermalCompensationConfig
from hmi.core.materials import REFERENCE_C
from hmi.core.tags import TagRegistry
from hmi.twin.model import Derived, InputFrame, TwinModel, hold, role_rows


def compensate(
    length: np.ndarray,
    temperature: np.ndarray,
    alpha: float,
    u_alpha: float = 0.0,
    u_temperature: float = 0.0,
    u_length: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(L20, standard uncertainty of L20), in the unit of `length`."""
    dt = temperature - REFERENCE_C
    factor = 1.0 + alpha * dt
    l20 = length / factor
    sq = factor * factor
    u = np.sqrt(
        (length * alpha / sq * u_temperature) ** 2 + (length * dt / sq * u_alpha) ** 2 + (u_length / factor) ** 2
    )
    return l20, u


class ThermalCompensationModel(TwinModel):
    KIND: ClassVar[str] = "thermal_compensation"

    def __init__(self, machine: str, config: ThermalCompensationConfig, registry: TagRegistry) -> None:
        super().__init__(machine, config, registry)
        self.cfg = config
        self.alpha, self.u_alpha = config.alpha
        self.r_temp = self.role("part_temperature")
        self.r_len = self.role("measured_length")
        self.r_part = self.role("part_id")
        self.temperature = np.nan  # last good part temperature
        self.part: float | None = None
        self.last_length: float | None = None
        self.last: tuple[float, float, float] | None = None  # last (raw dev, comp dev, U) in µm of this part
        self.counts = {
            "parts_judged": 0,
            "parts_failed_raw": 0,
            "parts_failed_compensated": 0,
            "false_failures_avoided": 0,
            "false_passes_avoided": 0,
        }
        self._length_ids = np.array(
            [
                self.out("length_compensated"),
                self.out("length_compensated_deviation"),
                self.out("length_compensated_uncertainty"),
                self.out("pass_raw"),
                self.out("pass_compensated"),
            ],
            np.int32,
        )
        self._count_ids = np.array([self.out(name) for name in self.counts], np.int32)

    def passes(self, deviation_um: np.ndarray, u_expanded_um: np.ndarray) -> np.ndarray:
        tol = self.cfg.tolerance_um
        if self.cfg.decision_rule == "guarded":
            return np.abs(deviation_um) + u_expanded_um <= tol
        return np.abs(deviation_um) <= tol

    def process(self, frame: InputFrame, derived: Derived) -> None:
        if not self._news(frame):
            # Only the part temperature moved (most batches): remember it, nothing to judge.
            temps = frame.values[frame.role == self.r_temp]
            if temps.shape[0]:
                self.temperature = float(temps[-1]) if temps.shape[0] == 1 else self._latest_temperature(frame)
            return
        t_temp, v_temp = role_rows(frame, self.r_temp)
        t_len, v_len = role_rows(frame, self.r_len)
        t_part, v_part = role_rows(frame, self.r_part) if self.r_part >= 0 else (t_len[:0], v_len[:0])
        # A source that re-sends unchanged values (MQTT telemetry every tick) repeats the last
        # measurement and part id: only a changed length is a new measurement.
        t_len, v_len = _changes(t_len, v_len, self.last_length)
        t_part, v_part = _changes(t_part, v_part, self.part)
        if v_len.shape[0]:
            self.last_length = float(v_len[-1])
        if t_len.shape[0] == 0 and t_part.shape[0] == 0:
            if t_temp.shape[0]:
                self.temperature = float(v_temp[-1])
            return
        temperature = hold(t_len, t_temp, v_temp, self.temperature)
        if t_temp.shape[0]:
            self.temperature = float(v_temp[-1])
        ok = np.isfinite(temperature)  # no part temperature yet: nothing to compensate with
        t_len, v_len, temperature = t_len[ok], v_len[ok], temperature[ok]
        nominal = self.cfg.nominal_mm
        l20, u = compensate(
            v_len,
            temperature,
            self.alpha,
            self.u_alpha,
            self.cfg.temperature_uncertainty_k,
            self.cfg.length_uncertainty_um / 1000.0,
        )
        u_exp = self.cfg.coverage_factor * u * 1000.0
        raw_dev = (v_len - nominal) * 1000.0
        comp_dev = (l20 - nominal) * 1000.0
        if t_len.shape[0]:
            # The raw value is judged as the CMM reports it (it states no uncertainty of its own).
            pass_raw = self.passes(raw_dev, np.zeros_like(raw_dev))
            pass_comp = self.passes(comp_dev, u_exp)
            values = np.stack([l20, comp_dev, u_exp, pass_raw, pass_comp], axis=1)
            ids = np.broadcast_to(self._length_ids, values.shape)
            ts = np.broadcast_to(t_len[:, None], values.shape)
            derived.add(ids.reshape(-1), ts.reshape(-1), values.reshape(-1))
        self._judge_parts(t_part, v_part, t_len, np.stack([raw_dev, comp_dev, u_exp], axis=1), derived)

    def _news(self, frame: InputFrame) -> bool:
        """Whether the frame holds a new measurement or a new part (a changed value)."""
        for role, last in ((self.r_len, self.last_length), (self.r_part, self.part)):
            if role < 0:
                continue
            values = frame.values[frame.role == role]
            if values.shape[0] and (last is None or bool((values != last).any())):
                return True
        return False

    def _latest_temperature(self, frame: InputFrame) -> float:
        _ts, values = role_rows(frame, self.r_temp)
        return float(values[-1])

    def _judge_parts(
        self, t_part: np.ndarray, v_part: np.ndarray, t_len: np.ndarray, results: np.ndarray, derived: Derived
    ) -> None:
        """Judge a part when the next one arrives, by its last measurement.

        `results` holds (raw deviation, compensated deviation, U) in µm per measurement.
        Part changes are rare (one a minute), so this walks them in plain Python."""
        if t_part.shape[0] == 0:
            if t_len.shape[0]:
                self.last = tuple(results[-1].tolist())
            return
        # The last measurement before each part change belongs to the part that leaves.
        before = np.searchsorted(t_len, t_part, side="left") - 1
        used = -1
        for ts, part, row in zip(t_part.tolist(), v_part.tolist(), before.tolist(), strict=True):
            if row > used:
                self.last = tuple(results[row].tolist())
                used = row
            if self.part is not None and part != self.part and self.last is not None:
                self._count_part(int(ts), derived)
            self.part = part
        if t_len.shape[0] - 1 > used:
            self.last = tuple(results[-1].tolist())

    def _count_part(self, ts: int, derived: Derived) -> None:
        assert self.last is not None
        raw, comp, u = self.last
        self.last = None
        failed_raw = not bool(self.passes(np.array([raw]), np.array([0.0]))[0])
        failed_comp = not bool(self.passes(np.array([comp]), np.array([u]))[0])
        c = self.counts
        c["parts_judged"] += 1
        c["parts_failed_raw"] += failed_raw
        c["parts_failed_compensated"] += failed_comp
        c["false_failures_avoided"] += failed_raw and not failed_comp
        c["false_passes_avoided"] += failed_comp and not failed_raw
        derived.add(self._count_ids, ts, np.array(list(c.values()), float))


def _changes(ts: np.ndarray, values: np.ndarray, previous: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose value differs from the one before (the first compared with `previous`)."""
    if values.shape[0] == 0:
        return ts, values
    before = np.empty_like(values)
    before[0] = np.nan if previous is None else previous
    before[1:] = values[:-1]
    changed = values != before
    return ts[changed], values[changed]
