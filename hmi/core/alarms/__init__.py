"""ISA-18.2 alarm management: definitions and records (model), the engine (pure, numpy on
the hot path) and the window-side alarm list kept from a snapshot plus the event stream."""

from hmi.core.alarms.engine import AlarmCommandError, AlarmEngine, AlarmSettings, records_to_events
from hmi.core.alarms.model import (
    AlarmDefinition,
    AlarmState,
    AlarmStatus,
    AlarmTransition,
    Cause,
    Condition,
    FloodChange,
    Mode,
    Priority,
)

__all__ = [
    "AlarmCommandError",
    "AlarmDefinition",
    "AlarmEngine",
    "AlarmSettings",
    "AlarmState",
    "AlarmStatus",
    "AlarmTransition",
    "Cause",
    "Condition",
    "FloodChange",
    "Mode",
    "Priority",
    "records_to_events",
]
