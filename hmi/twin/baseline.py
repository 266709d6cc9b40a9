"""Robust baselines of features, one per operating regime.

A regime (a speed band, a feed band) first learns: it collects `learn_n` values of every
feature and takes their median as the centre and 1.4826 × the median absolute deviation
as the spread (the MAD is that of a normal distribution at this factor, and unlike a
standard deviation a few outliers barely move it). Afterwards a feature's robust z is
(x − centre) / spread. A healthy regime's centre follows slow change (ambient, wear-in)
with an exponential average of time constant `adapt_tau_s`, but only while every feature
sits well inside its baseline, so a developing fault is never learned as normal.

The spread has floors per feature (absolute, and relative to the centre): a very quiet
signal would otherwise flag changes too small to matter.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

MAD_TO_SIGMA = 1.4826


class Baseline:
    """Centre and spread of F features in one regime."""

    def __init__(self, features: int, learn_n: int) -> None:
        self.learn_n = learn_n
        self._samples = np.full((learn_n, features), np.nan)
        self._filled = 0
        self.center = np.full(features, np.nan)
        self.spread = np.full(features, np.nan)

    @property
    def ready(self) -> bool:
        return self._filled >= self.learn_n

    @property
    def progress(self) -> float:
        return min(self._filled / self.learn_n, 1.0)

    def learn(self, x: np.ndarray, abs_floor: np.ndarray, rel_floor: np.ndarray) -> None:
        if self.ready:
            return
        self._samples[self._filled] = x
        self._filled += 1
        if self.ready:
            with np.errstate(all="ignore"):
                self.center = np.nanmedian(self._samples, axis=0)
                mad = np.nanmedian(np.abs(self._samples - self.center), axis=0)
            self.spread = np.fmax(np.fmax(MAD_TO_SIGMA * mad, abs_floor), rel_floor * np.abs(self.center))

    def z(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return (x - self.center) / self.spread

    def adapt(self, x: np.ndarray, weight: float, rel_floor: np.ndarray) -> None:
        """Move the centre a fraction `weight` towards x (features with a finite value)."""
        ok = np.isfinite(x) & np.isfinite(self.center)
        self.center[ok] += weight * (x[ok] - self.center[ok])
        self.spread[ok] = np.fmax(self.spread[ok], rel_floor[ok] * np.abs(self.center[ok]))


class RegimeBaselines:
    """Baselines by regime key; a new key starts learning."""

    def __init__(
        self,
        features: int,
        learn_n: int,
        abs_floor: np.ndarray,
        rel_floor: np.ndarray,
        adapt_tau_s: float,
        quiet_z: float = 3.0,
    ) -> None:
        self.features = features
        self.learn_n = learn_n
        self.abs_floor = np.asarray(abs_floor, float)
        self.rel_floor = np.asarray(rel_floor, float)
        self.adapt_tau_s = adapt_tau_s
        self.quiet_z = quiet_z
        self.regimes: dict[Hashable, Baseline] = {}

    def get(self, regime: Hashable) -> Baseline:
        baseline = self.regimes.get(regime)
        if baseline is None:
            baseline = self.regimes[regime] = Baseline(self.features, self.learn_n)
        return baseline

    def observe(self, regime: Hashable, x: np.ndarray, dt_s: float, hold: bool) -> np.ndarray | None:
        """Learn or judge x in `regime`: the robust z of each feature, or None while learning.
        `hold` (a symptom or advisory is up) keeps the baseline from adapting, and a regime
        without a baseline from learning one: it would learn the fault as normal."""
        baseline = self.get(regime)
        if not baseline.ready:
            if not hold:
                baseline.learn(x, self.abs_floor, self.rel_floor)
            return None
        z = baseline.z(x)
        if not hold and np.nanmax(np.abs(z), initial=0.0) < self.quiet_z:
            baseline.adapt(x, min(dt_s / self.adapt_tau_s, 1.0), self.rel_floor)
        return z
