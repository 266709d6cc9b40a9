"""Per-tag storage policy: keep every sample, only changes beyond a deadband, or nothing.

The filter runs on the writer thread, on whole batches. `every` costs nothing; `on_change`
with deadband 0 is vectorised (a sample is kept when it differs from the previous one);
a positive deadband compares each sample with the last *kept* one, which is inherently
sequential, so those tags go through a short loop. A quality change is always kept, and
so is the first sample of a tag after start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from hmi.core.samples import SampleBatch
from hmi.core.tags import TagRegistry


class StorageMode(StrEnum):
    EVERY = "every"
    ON_CHANGE = "on_change"
    OFF = "off"


_MODE_CODE = {StorageMode.EVERY: 0, StorageMode.ON_CHANGE: 1, StorageMode.OFF: 2}


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    mode: StorageMode = StorageMode.EVERY
    deadband: float = 0.0  # absolute, in the tag's unit; only for on_change

    def __post_init__(self) -> None:
        if not self.deadband >= 0.0:
            raise ValueError("a deadband is zero or positive")


class StorageFilter:
    """Decides which rows of a batch are stored. Writer thread only."""

    def __init__(self, registry: TagRegistry, policies: Mapping[str, StoragePolicy] | None = None) -> None:
        self.registry = registry
        self.policies = dict(policies or {})
        self.active = any(p.mode != StorageMode.EVERY for p in self.policies.values())
        self._mode = np.zeros(0, np.uint8)
        self._deadband = np.zeros(0, np.float64)
        self._known = 0
        # Last kept sample per tag id (NaN-aware); quality -1 means "none yet".
        self._last_value = np.zeros(0, np.float64)
        self._last_quality = np.zeros(0, np.int16)
        self._last_text: dict[int, str | None] = {}
        self.skipped = 0

    def _grow(self, top: int) -> None:
        size = len(self.registry)
        if top >= size:
            size = top + 1
        if size <= self._known:
            return
        extra = size - self._known
        self._mode = np.concatenate([self._mode, np.zeros(extra, np.uint8)])
        self._deadband = np.concatenate([self._deadband, np.zeros(extra)])
        self._last_value = np.concatenate([self._last_value, np.full(extra, np.nan)])
        self._last_quality = np.concatenate([self._last_quality, np.full(extra, -1, np.int16)])
        for tag_id in range(self._known, size):
            if tag_id < len(self.registry):
                policy = self.policies.get(self.registry.spec(tag_id).name)
                if policy is not None:
                    self._mode[tag_id] = _MODE_CODE[policy.mode]
                    self._deadband[tag_id] = policy.deadband
        self._known = size

    def apply(self, batch: SampleBatch) -> SampleBatch:
        """The rows of `batch` to store, in their original order."""
        if not self.active or len(batch) == 0:
            return batch
        ids = batch.tag_ids
        top = int(ids.max())
        if top >= self._known:
            self._grow(top)
        modes = self._mode[ids]
        if not modes.any():
            return batch
        keep = modes == 0
        change_rows = np.flatnonzero(modes == 1)
        if change_rows.shape[0]:
            change_ids = ids[change_rows]
            order = np.argsort(change_ids, kind="stable")
            sorted_ids = change_ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            ends = np.r_[starts[1:], sorted_ids.shape[0]]
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                tag_id = int(sorted_ids[start])
                rows = change_rows[order[start:end]]
                keep[rows] = self._changed(tag_id, rows, batch)
        kept = int(keep.sum())
        self.skipped += len(batch) - kept
        return batch if kept == len(batch) else batch.take(keep)

    def _changed(self, tag_id: int, rows: np.ndarray, batch: SampleBatch) -> np.ndarray:
        values = batch.values[rows]
        quality = batch.quality[rows].astype(np.int16)
        deadband = float(self._deadband[tag_id])
        texts = batch.texts or {}
        has_text = bool(texts) and any(int(r) in texts for r in rows)
        if deadband == 0.0 and not has_text and tag_id not in self._last_text:
            prev_v = np.r_[self._last_value[tag_id], values[:-1]]
            prev_q = np.r_[self._last_quality[tag_id], quality[:-1]]
            both_nan = np.isnan(values) & np.isnan(prev_v)
            changed = ((values != prev_v) & ~both_nan) | (quality != prev_q)
            self._last_value[tag_id] = values[-1]
            self._last_quality[tag_id] = quality[-1]
            return changed
        changed = np.zeros(rows.shape[0], bool)
        last_v = float(self._last_value[tag_id])
        last_q = int(self._last_quality[tag_id])
        last_t = self._last_text.get(tag_id)
        for i, (row, v, q) in enumerate(zip(rows.tolist(), values.tolist(), quality.tolist(), strict=True)):
            text = texts.get(row)
            if q != last_q or text != last_t:
                hit = True
            elif math.isnan(v) or math.isnan(last_v):
                hit = math.isnan(v) != math.isnan(last_v)
            else:
                hit = abs(v - last_v) > deadband
            if hit:
                changed[i] = True
                last_v, last_q, last_t = v, q, text
        self._last_value[tag_id] = last_v
        self._last_quality[tag_id] = last_q
        if last_t is not None or tag_id in self._last_text:
            self._last_text[tag_id] = last_t
        return changed
