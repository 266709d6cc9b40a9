"""Advisories as alarms of their own kind: acknowledged, shelved and audited like alarms.

Each cause a model can diagnose has a boolean tag `<machine>.advisory.<cause>` that the model
sets to 1 while it holds that finding. A second AlarmEngine watches these tags with one
discrete definition each, so acknowledgement, shelving, out-of-service, restoring after a
restart and the audit of every action are the alarm machinery's (hmi/core/alarms,
hmi/commands.py), not a copy of it. Its transitions go on the bus as ADVISORY events (not
ALARM: an advisory is not an alarm under ISA-18.2, it does not count towards alarm floods
and does not sound the horn), each carrying the finding: cause, evidence, checks and the
recommended command.
"""

from __future__ import annotations

from collections.abc import Iterable

from hmi.core.alarms.engine import AlarmSettings
from hmi.core.alarms.model import AlarmDefinition, Condition, Priority
from hmi.twin.model import TwinModel
from hmi.twin.rules import Rule

# Advisories come rarely and are not alarms: no flood logic of their own worth the name.
ADVISORY_SETTINGS = AlarmSettings(flood_threshold=1_000_000, flood_window_s=60.0)


def model_rules(model: TwinModel) -> Iterable[Rule]:
    rules: dict[str, Rule] = getattr(model, "rules", {})
    return rules.values()


def advisory_definitions(models: Iterable[TwinModel]) -> list[AlarmDefinition]:
    """One discrete definition per advisory tag of every model."""
    out = []
    for model in models:
        for r in model_rules(model):
            tag = model.advisory_tag(r.cause)
            out.append(
                AlarmDefinition(
                    name=tag,
                    tag=tag,
                    condition=Condition.DISCRETE,
                    priority=Priority.parse(r.priority),
                    message=f"{model.machine}: {r.title}",
                    guidance="\n".join(r.checks),
                    states=(1.0,),
                    description=f"Twin advisory of {model.machine}",
                )
            )
    return out
