"""One rule for every source: which received values and timestamps cannot be trusted as sent.

Every source (OPC UA, MQTT JSON and plain values, Sparkplug B) applies the same rule, so a
value means the same thing in the record whichever wire it came over:

- A non-finite number (NaN, ±Inf, or a JSON number too big for a float) is BAD, whatever
  status the device gave it, and counted under `NON_FINITE`.
- An integer a float64 cannot hold exactly (|n| > 2^53, e.g. an Int64 counter near its
  maximum) is recorded as the nearest float with quality UNCERTAIN and counted under
  `INEXACT_INTEGER`: the record says it is approximate instead of silently rounding.
- A bool on a numeric tag is recorded as 1 or 0 (devices commonly send flags as bools); it
  is documented in docs/project-file.md, not refused.
- A source timestamp outside the connection's window around the clock
  (`timestamp_max_age_s` before now, `timestamp_max_ahead_s` after) is refused: the sample
  is stamped with its arrival time, UNCERTAIN, and counted under `TIMESTAMP_OUT_OF_WINDOW`.

Each source counts a reason in its `<connection>.rejected_total` (SourceHealth.reject) and
logs it once per tag and reason (RateLimitedLog).
"""

from __future__ import annotations

from datetime import UTC, datetime

MAX_EXACT_INT = 2**53  # the largest integer a float64 holds exactly

NON_FINITE = "non-finite number"
INEXACT_INTEGER = "integer beyond 2^53"
TIMESTAMP_OUT_OF_WINDOW = "timestamp out of window"

DEFAULT_MAX_AGE_S = 10 * 366 * 86400.0  # a static OPC UA value may carry a years-old source time
DEFAULT_MAX_AHEAD_S = 300.0  # device clocks drift; minutes ahead is skew, days ahead is wrong


class TimestampWindow:
    """Accept source timestamps within [now - max_age, now + max_ahead]."""

    __slots__ = ("max_age_ns", "max_ahead_ns")

    def __init__(self, max_age_s: float = DEFAULT_MAX_AGE_S, max_ahead_s: float = DEFAULT_MAX_AHEAD_S) -> None:
        self.max_age_ns = int(max_age_s * 1e9)
        self.max_ahead_ns = int(max_ahead_s * 1e9)

    def accepts(self, ts_ns: int, now_ns: int) -> bool:
        return now_ns - self.max_age_ns <= ts_ns <= now_ns + self.max_ahead_ns

    @staticmethod
    def describe(ts_ns: int) -> str:
        """The refused time for a log line (years beyond datetime's range print as seconds)."""
        try:
            return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):
            return f"{ts_ns / 1e9:.0f} s since 1970"


def exact_in_float(value: int) -> bool:
    return -MAX_EXACT_INT <= value <= MAX_EXACT_INT
