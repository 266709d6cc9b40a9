"""What a twin model is: named input tags in, derived tags and advisories out.

A model is built from its machine's `[twin.<machine>]` section and a tag registry. The
TwinService hands it, per bus batch, only the rows of its own inputs (`InputFrame`: role
index, time, value, quality as numpy arrays); the model answers with derived samples
(`Derived`) and keeps the findings behind its advisories. Models are plain Python with
numpy, no threads and no clock: time comes with the samples, so a replayed shift gives
the same results as the live one.

Threads: `process` runs on the thread that published the batch, under the bus lock (see
TwinService); it must be quick, so models aggregate with numpy and do their per-second
work once per time bin, not once per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hmi.core.quality import QUALITY_DTYPE, Quality
from hmi.core.samples import TAG_ID_DTYPE, TS_DTYPE, VALUE_DTYPE, SampleBatch
from hmi.core.tags import TagRegistry, TagSpec

NS = 1_000_000_000


@dataclass(frozen=True, slots=True, eq=False)
class InputFrame:
    """The rows of one batch that are inputs of one model, in batch order."""

    role: np.ndarray  # index into the model's INPUTS (+ optional inputs), int
    ts_ns: np.ndarray
    values: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return int(self.role.shape[0])


class Derived:
    """Derived samples a model emits for one batch, collected as arrays, published as one batch."""

    __slots__ = ("_ids", "_quality", "_ts", "_values")

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._ts: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._quality: list[np.ndarray] = []

    def add(self, tag_id: int | np.ndarray, ts_ns: Any, values: Any, quality: Any = Quality.GOOD) -> None:
        """One tag's samples (`tag_id` scalar), or several tags at one time (`tag_id` array)."""
        values = np.atleast_1d(np.asarray(values, dtype=VALUE_DTYPE))
        n = values.shape[0]
        self._ids.append(np.broadcast_to(np.asarray(tag_id, TAG_ID_DTYPE), (n,)))
        self._ts.append(np.broadcast_to(np.asarray(ts_ns, TS_DTYPE), (n,)))
        self._values.append(values)
        self._quality.append(np.broadcast_to(np.asarray(quality, QUALITY_DTYPE), (n,)))

    def __bool__(self) -> bool:
        return bool(self._ids)

    def batch(self) -> SampleBatch:
        return SampleBatch(
            np.concatenate(self._ids),
            np.concatenate(self._ts),
            np.concatenate(self._values),
            np.concatenate(self._quality),
        )


@dataclass(frozen=True, slots=True)
class RecommendedCommand:
    """A write the advisory suggests. Never sent by the twin: an operator confirms it."""

    tag: str
    value: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "value": self.value, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Finding:
    """What a model concludes about one probable cause while its advisory is raised."""

    advisory: str  # the advisory's tag, <machine>.advisory.<cause>
    machine: str
    cause: str  # e.g. "cavitation"
    title: str  # e.g. "Probable cavitation"
    evidence: tuple[str, ...]  # what was seen, with numbers
    checks: tuple[str, ...]  # what to check, in order
    command: RecommendedCommand | None = None
    since_ns: int = 0
    details: dict[str, Any] = field(default_factory=dict)  # the feature values behind the evidence

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ADVISORY_VERSION,
            "advisory": self.advisory,
            "machine": self.machine,
            "cause": self.cause,
            "title": self.title,
            "evidence": list(self.evidence),
            "checks": list(self.checks),
            "command": self.command.to_json() if self.command is not None else None,
            "since_ns": self.since_ns,
            "features": self.details,
        }


ADVISORY_VERSION = 1  # of Finding.to_json, stored in advisory events in the historian


class TwinModel:
    """Base of the models. Subclasses set KIND and implement `process`."""

    KIND: ClassVar[str] = ""

    def __init__(self, machine: str, config: Any, registry: TagRegistry) -> None:
        self.machine = machine
        self.config = config
        self.input_tags: dict[str, str] = config.input_tags(machine)
        self.roles: list[str] = list(self.input_tags)
        self.specs: list[TagSpec] = config.derived_specs(machine)
        self.output_ids: dict[str, int] = dict(
            zip((s.name for s in self.specs), registry.register_many(self.specs), strict=True)
        )
        self.findings: dict[str, Finding] = {}  # advisory tag -> the finding while it is raised
        self.errors = 0

    def role(self, name: str) -> int:
        """The index of an input in an InputFrame's `role` column (-1 if not configured)."""
        return self.roles.index(name) if name in self.roles else -1

    def out(self, signal: str) -> int:
        return self.output_ids[f"{self.machine}.{signal}"]

    def advisory_tag(self, cause: str) -> str:
        return f"{self.machine}.advisory.{cause}"

    def process(self, frame: InputFrame, derived: Derived) -> None:
        raise NotImplementedError

    def inputs_lost(self, ts_ns: int, quality: Quality, derived: Derived) -> None:
        """A required input went bad: every derived tag takes that quality (never shown as good)."""
        ids = np.fromiter(self.output_ids.values(), TAG_ID_DTYPE, len(self.output_ids))
        derived.add(ids, ts_ns, np.full(ids.shape[0], np.nan), quality)


def hold(query_ts: np.ndarray, ts: np.ndarray, values: np.ndarray, before: float) -> np.ndarray:
    """The value in effect at each query time: the last of (`ts`, `values`) at or before it,
    else `before` (sample-and-hold, as a value that is not re-sent stays valid). `ts` sorted."""
    if ts.shape[0] == 0:
        return np.full(query_ts.shape[0], before, VALUE_DTYPE)
    pos = np.searchsorted(ts, query_ts, side="right") - 1
    out = values[np.maximum(pos, 0)].astype(VALUE_DTYPE, copy=True)
    out[pos < 0] = before
    return out


def role_rows(frame: InputFrame, role: int) -> tuple[np.ndarray, np.ndarray]:
    """(ts, values) of one input's rows in time order (the service hands over good rows only)."""
    mask = frame.role == role
    ts, values = frame.ts_ns[mask], frame.values[mask]
    if ts.shape[0] > 1 and not (np.diff(ts) >= 0).all():
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
    return ts, values


def nan_to_none(values: Sequence[float]) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]
