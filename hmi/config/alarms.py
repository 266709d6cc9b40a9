"""[[alarms]] and [alarm_system]: the cross-checks `hmi check-config` runs, and the
conversion into the engine's definitions and settings."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from hmi.core.alarms.engine import AlarmSettings
from hmi.core.alarms.model import AlarmDefinition, Condition, Priority, template_fields, unavailable_fields
from hmi.core.expressions import parse_expression
from hmi.core.tags import DataType

if TYPE_CHECKING:
    from hmi.config.models import Project

Problem = tuple[list[str | int], str]

# Limits of one tag must read lolo < lo < hi < hihi, whichever of them exist.
_LIMIT_ORDER = (Condition.LOLO, Condition.LO, Condition.HI, Condition.HIHI)


def alarm_problems(project: Project) -> list[Problem]:
    """Every problem of the alarm configuration, each with its key path."""
    problems: list[Problem] = []
    names: dict[str, int] = {}
    limits: dict[str, dict[Condition, tuple[int, float, float]]] = {}  # tag -> condition -> (index, limit, deadband)
    for i, alarm in enumerate(project.alarms):
        where: list[str | int] = ["alarms", i]
        tag = project.tags.get(alarm.tag)
        if tag is None:
            problems.append(([*where, "tag"], f"unknown tag {alarm.tag!r}"))
            continue
        name = alarm.alarm_name
        if name in names:
            problems.append(
                ([*where], f"alarm {name!r} is defined twice (also alarms[{names[name]}]); give one a `name`")
            )
        names[name] = i
        numeric = alarm.condition.is_limit or alarm.condition in (Condition.DEVIATION, Condition.RATE)
        if numeric and tag.datatype in (DataType.STRING, DataType.BOOL):
            message = f"a {alarm.condition} alarm needs a numeric tag ({alarm.tag} is {tag.datatype})"
            problems.append(([*where, "condition"], message))
            continue
        if alarm.condition == Condition.DEVIATION and alarm.setpoint_tag not in project.tags:
            problems.append(([*where, "setpoint_tag"], f"unknown tag {alarm.setpoint_tag!r}"))
        if alarm.suppress_when:
            for ref in parse_expression(alarm.suppress_when).tags:
                if ref not in project.tags:
                    problems.append(([*where, "suppress_when"], f"unknown tag {ref!r}"))
        if alarm.chatter_count == 1:
            problems.append(([*where, "chatter_count"], "chatter_count is 0 (off) or at least 2"))
        if alarm.message:
            available = ", ".join(sorted(template_fields(alarm.condition)))
            for field in unavailable_fields(alarm.message, alarm.condition):
                message = f"{{{field}}} is not available for a {alarm.condition} alarm ({name}); available: {available}"
                problems.append(([*where, "message"], message))
        if alarm.limit is not None and alarm.condition.is_limit:
            if alarm.condition in limits.get(alarm.tag, {}):
                other = limits[alarm.tag][alarm.condition][0]
                problems.append(
                    ([*where, "condition"], f"{alarm.tag} has a {alarm.condition} alarm already (alarms[{other}])")
                )
                continue
            limits.setdefault(alarm.tag, {})[alarm.condition] = (i, alarm.limit, alarm.deadband)
            if tag.range is not None:
                low, high = tag.range
                if not low <= alarm.limit <= high:
                    problems.append(
                        ([*where, "limit"], f"limit {alarm.limit:g} is outside the tag's range [{low:g}, {high:g}]")
                    )
                if alarm.deadband >= high - low:
                    problems.append(
                        ([*where, "deadband"], f"deadband {alarm.deadband:g} is not smaller than the tag's range")
                    )
        magnitude = alarm.condition in (Condition.DEVIATION, Condition.RATE)
        if magnitude and alarm.limit is not None and alarm.deadband >= alarm.limit:
            message = f"deadband {alarm.deadband:g} must be smaller than the limit {alarm.limit:g}"
            problems.append(([*where, "deadband"], message))
    for tag_name, by_condition in limits.items():
        present = [(c, *by_condition[c]) for c in _LIMIT_ORDER if c in by_condition]
        for (c1, i1, l1, d1), (c2, i2, l2, d2) in itertools.pairwise(present):
            if not l1 < l2:
                problems.append(
                    (
                        ["alarms", i2, "limit"],
                        f"{tag_name}: {c2} limit {l2:g} must be above the {c1} limit {l1:g} (alarms[{i1}])",
                    )
                )
                continue
            # A deadband reaching past the neighbouring limit would hold one alarm while the other clears.
            gap = l2 - l1
            for cond, index, deadband in ((c1, i1, d1), (c2, i2, d2)):
                if deadband >= gap:
                    message = (
                        f"{tag_name}: deadband {deadband:g} of {cond} spans the gap of {gap:g} between {c1} and {c2}"
                    )
                    problems.append((["alarms", index, "deadband"], message))
    if project.alarm_system.chatter_count == 1:
        problems.append((["alarm_system", "chatter_count"], "chatter_count is 0 (off) or at least 2"))
    for position, machines in project.alarm_system.positions.items():
        for j, machine in enumerate(machines):
            if machine not in project.machines:
                problems.append((["alarm_system", "positions", position, j], f"unknown machine {machine!r}"))
    for i, p in enumerate(project.positions):
        for j, machine in enumerate(p.machines):
            if machine not in project.machines:
                problems.append((["positions", i, "machines", j], f"position {p.name}: unknown machine {machine!r}"))
    return problems


def alarm_definitions(project: Project) -> list[AlarmDefinition]:
    out = []
    for alarm in project.alarms:
        tag = project.tags.get(alarm.tag)
        out.append(
            AlarmDefinition(
                name=alarm.alarm_name,
                tag=alarm.tag,
                condition=alarm.condition,
                priority=Priority.parse(alarm.priority),
                limit=alarm.limit,
                deadband=alarm.deadband,
                on_delay_s=alarm.on_delay_s,
                off_delay_s=alarm.off_delay_s,
                message=alarm.message,
                guidance=alarm.guidance,
                latching=alarm.latching,
                comment_required=alarm.comment_required,
                setpoint_tag=alarm.setpoint_tag,
                rate_period_s=alarm.rate_period_s,
                direction=alarm.direction,
                states=tuple(alarm.states),
                suppress_when=alarm.suppress_when,
                chatter_count=alarm.chatter_count,
                chatter_window_s=alarm.chatter_window_s,
                fleeting_s=alarm.fleeting_s,
                unit=tag.unit if tag is not None else "",
                description=tag.description if tag is not None else "",
            )
        )
    return out


def alarm_settings(project: Project) -> AlarmSettings:
    system = project.alarm_system
    return AlarmSettings(
        flood_threshold=system.flood_threshold,
        flood_window_s=system.flood_window_s,
        max_shelve_s=system.max_shelve_s,
        positions={name: tuple(machines) for name, machines in project.operator_positions().items()},
        chatter_count=system.chatter_count,
        chatter_window_s=system.chatter_window_s,
        fleeting_s=system.fleeting_s,
    )
