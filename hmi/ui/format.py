"""How values and times read on screen."""

from __future__ import annotations

import math
from datetime import datetime, tzinfo

from hmi.core.tags import DataType, TagSpec

# The plant's time zone (the project's), so every clock, table and axis in the window
# reads the same time whatever the workstation is set to. None: the computer's.
_display_timezone: tzinfo | None = None


def set_display_timezone(tz: tzinfo | None) -> None:
    global _display_timezone
    _display_timezone = tz


def display_timezone() -> tzinfo | None:
    return _display_timezone


def decimals_for(spec: TagSpec) -> int | None:
    """Decimals to show: as configured, else enough to resolve a thousandth of the tag's
    range (a 100 mm part measured to the micrometre needs four), else None (by magnitude)."""
    if spec.decimals is not None:
        return spec.decimals
    if spec.low is not None and spec.high is not None and spec.high > spec.low:
        return max(0, math.ceil(-math.log10((spec.high - spec.low) / 1000.0)))
    return None


def format_value(value: float | str | None, datatype: DataType, decimals: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "—"
    if datatype == DataType.BOOL:
        return "true" if value else "false"
    if datatype == DataType.INT:
        decimals = 0
    elif decimals is None:
        magnitude = abs(value)
        decimals = 0 if magnitude >= 1000 else 1 if magnitude >= 100 else 2
    # Rounded first, so a small negative value shows as 0.0, not -0.0.
    return f"{round(value, decimals) + 0.0:,.{decimals}f}".replace(",", " ")


def format_tag_value(value: float | str | None, spec: TagSpec) -> str:
    return format_value(value, spec.datatype, decimals_for(spec))


def format_time(ts_ns: int) -> str:
    """Plant wall-clock time with milliseconds; the date is shown when it is not today."""
    if ts_ns <= 0:
        return ""
    moment = datetime.fromtimestamp(ts_ns / 1e9, _display_timezone)
    if moment.date() == datetime.now(_display_timezone).date():
        return moment.strftime("%H:%M:%S.%f")[:-3]
    return moment.strftime("%Y-%m-%d %H:%M:%S")
