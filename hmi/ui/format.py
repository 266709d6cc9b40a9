"""How values and times read on screen."""

from __future__ import annotations

import math
from datetime import datetime

from hmi.core.tags import DataType


def format_value(value: float | str | None, datatype: DataType) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "—"
    if datatype == DataType.BOOL:
        return "true" if value else "false"
    if datatype == DataType.INT:
        return f"{value:.0f}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}".replace(",", " ")
    if magnitude >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_time(ts_ns: int) -> str:
    """Local wall-clock time with milliseconds; the date is shown when it is not today."""
    if ts_ns <= 0:
        return ""
    moment = datetime.fromtimestamp(ts_ns / 1e9)
    if moment.date() == datetime.now().date():
        return moment.strftime("%H:%M:%S.%f")[:-3]
    return moment.strftime("%Y-%m-%d %H:%M:%S")
