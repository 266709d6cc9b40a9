"""Export a time range of the historian to CSV or Parquet, with a progress bar.

One row per sample, tag by tag (each tag in time order): `tag, time_utc, ts_ns, value,
quality`, with the text of string tags as the value. Floats are written exactly (repr),
NaN as `nan`. Parquet (when pyarrow is installed) has typed columns: tag (dictionary),
ts (timestamp[ns, UTC]), value (float64), quality (uint8), text (string, null unless a
string tag). Both stream in chunks, so memory stays small for any range.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from hmi.core.quality import Quality
from hmi.historian.reader import HistorianReader, RecordedTag

CHUNK_NS = 600 * 1_000_000_000  # read 10 minutes of one tag at a time
PARQUET_HINT = "parquet export needs pyarrow, which is not installed: pip install pyarrow (or use --format csv)"
_QUALITY_NAMES = np.array([q.name for q in sorted(Quality)], dtype=object)


class ExportError(Exception):
    pass


class Progress:
    """A one-line progress bar on a terminal; on a pipe, a line every 10 %. Silent for
    exports that finish within `delay_s`."""

    def __init__(
        self, total: int, stream: IO[str] | None = None, delay_s: float = 1.0, label: str = "exporting"
    ) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.delay_s = delay_s
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self.shown = False

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.started < self.delay_s or now - self._last_draw < 0.2:
            return
        self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        rate = self.done / max(now - self.started, 1e-9)
        if self.tty:
            width = 30
            filled = int(fraction * width)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(
                f"\r{self.label} [{bar}] {fraction:4.0%}  {self.done:,}/{self.total:,} samples  {rate:,.0f}/s"
            )
        else:
            decile = int(fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(f"{self.label}: {fraction:.0%} ({self.done:,}/{self.total:,} samples)\n")
        self.stream.flush()
        self._last_draw = now
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self._draw(time.monotonic() + self.delay_s)
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    samples: int
    tags: int
    seconds: float


def select_tags(reader: HistorianReader, names: Sequence[str] | None) -> list[RecordedTag]:
    known = reader.tags()
    if not names:
        return list(known)
    by_name = {t.name: t for t in known}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ExportError(f"unknown tag(s): {', '.join(unknown)} (this historian has {len(known)} tags)")
    return [by_name[n] for n in names]


def _iter_chunks(reader: HistorianReader, tag: RecordedTag, start_ns: int, end_ns: int) -> Any:
    a = start_ns
    while a < end_ns:
        b = min(a + CHUNK_NS, end_ns)
        series = reader.read(tag, a, b)
        if len(series):
            yield series
        a = b


def export(
    reader: HistorianReader,
    start_ns: int,
    end_ns: int,
    out: Path,
    fmt: str = "csv",
    tags: Sequence[str] | None = None,
    progress_stream: IO[str] | None = None,
) -> ExportResult:
    if end_ns <= start_ns:
        raise ExportError("--to must be after --from")
    chosen = select_tags(reader, tags)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ExportError(PARQUET_HINT) from None
    elif fmt != "csv":
        raise ExportError(f"unknown format {fmt!r} (csv or parquet)")
    total = sum(reader.count(t, start_ns, end_ns) for t in chosen)
    progress = Progress(total, progress_stream)
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = _write_parquet(reader, chosen, start_ns, end_ns, out, progress) if fmt == "parquet" else 0
    if fmt == "csv":
        written = _write_csv(reader, chosen, start_ns, end_ns, out, progress)
    progress.finish()
    return ExportResult(out, written, len(chosen), time.monotonic() - started)


def _time_strings(ts: np.ndarray) -> list[str]:
    return [t + "Z" for t in np.datetime_as_string(ts.astype("datetime64[ns]"), unit="ns").tolist()]


def _write_csv(
    reader: HistorianReader, chosen: list[RecordedTag], start_ns: int, end_ns: int, out: Path, progress: Progress
) -> int:
    written = 0
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag", "time_utc", "ts_ns", "value", "quality"])
        for tag in chosen:
            for series in _iter_chunks(reader, tag, start_ns, end_ns):
                values: list[object] = [repr(v) for v in series.values.tolist()]
                for row, text in (series.texts or {}).items():
                    values[row] = text
                quality = _QUALITY_NAMES[np.minimum(series.quality, len(_QUALITY_NAMES) - 1)].tolist()
                n = len(series)
                writer.writerows(
                    zip([tag.name] * n, _time_strings(series.ts), series.ts.tolist(), values, quality, strict=True)
                )
                written += n
                progress.advance(n)
    return written


def _write_parquet(
    reader: HistorianReader, chosen: list[RecordedTag], start_ns: int, end_ns: int, out: Path, progress: Progress
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("tag", pa.dictionary(pa.int32(), pa.string())),
            ("ts", pa.timestamp("ns", tz="UTC")),
            ("value", pa.float64()),
            ("quality", pa.uint8()),
            ("text", pa.string()),
        ],
        metadata={"format": "hmi-historian-export", "version": "1"},
    )
    written = 0
    with pq.ParquetWriter(out, schema) as writer:
        for tag in chosen:
            for series in _iter_chunks(reader, tag, start_ns, end_ns):
                n = len(series)
                texts: list[str | None] = [None] * n
                for row, text in (series.texts or {}).items():
                    texts[row] = text
                table = pa.table(
                    {
                        "tag": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [tag.name]),
                        "ts": pa.array(series.ts, pa.timestamp("ns", tz="UTC")),
                        "value": pa.array(series.values, pa.float64()),
                        "quality": pa.array(series.quality, pa.uint8()),
                        "text": pa.array(texts, pa.string()),
                    },
                    schema=schema,
                )
                writer.write_table(table)
                written += n
                progress.advance(n)
    return written
