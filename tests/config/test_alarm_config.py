"""[[alarms]] in the project file: the demo's alarms load; each mistake an engineer can make
gets `FILE: dotted.key.path: message` from `hmi check-config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.config.alarms import alarm_definitions, alarm_settings
from hmi.core.alarms import Condition, Priority
from tests.config.test_project_file import MINIMAL, errors
from tests.helpers import DEMO_PROJECT, REPO

BASE = (
    MINIMAL.replace("range = [0, 100]", "range = [0, 200]")
    + """
[tags."cnc01.sp"]
connection = "plc"
address = "ns=2;s=Sp"

[tags."cnc01.text"]
connection = "plc"
address = "ns=2;s=T"
datatype = "string"
"""
)

HI = """
[[alarms]]
tag = "cnc01.speed"
condition = "hi"
limit = 80
deadband = 2
priority = "high"
message = "Speed high: {value:.1f} {unit}"
"""


def test_demo_alarms_become_engine_definitions() -> None:
    """The demo project's alarms convert to definitions named <tag>.<condition>, with units from the tags."""
    project = load_project(DEMO_PROJECT)
    defs = {d.name: d for d in alarm_definitions(project)}
    hi = defs["cnc01.tool_temperature.hi"]
    assert (hi.condition, hi.priority, hi.limit, hi.unit) == (Condition.HI, Priority.HIGH, 60.0, "°C")
    assert hi.suppress_when == "cnc01.spindle_speed < 100"
    assert defs["cnc01.tool_temperature.hihi"].comment_required
    assert alarm_settings(project).positions == {
        "cell1": ("cnc01", "robot01"),
        "line1": ("conveyor01", "cmm01"),
        "utilities": ("pump01",),
    }
    belt = defs["conveyor01.belt_speed.deviation"]
    assert (belt.setpoint_tag, belt.limit, belt.unit) == ("conveyor01.speed_setpoint", 0.05, "m/s")


BROKEN = {
    "unknown tag": (HI.replace('"cnc01.speed"', '"cnc01.sped"'), ["alarms[0].tag: unknown tag 'cnc01.sped'"]),
    "limit missing": (HI.replace("limit = 80\n", ""), ["alarms[0]: a hi alarm needs a limit"]),
    "unknown condition": (
        HI.replace('"hi"', '"high"'),
        [
            "alarms[0].condition: expected 'hi', 'hihi', 'lo', 'lolo', 'deviation', 'rate', 'discrete', "
            "'bad_quality' or 'comm_loss', got the string \"high\""
        ],
    ),
    "unknown priority": (
        HI.replace('"high"', '"critical"'),
        ["alarms[0].priority: expected 'urgent', 'high', 'medium' or 'low', got the string \"critical\""],
    ),
    "negative deadband": (
        HI.replace("deadband = 2", "deadband = -1"),
        ["alarms[0].deadband: Input should be greater than or equal to 0"],
    ),
    "limits out of order": (
        HI + HI.replace('"hi"', '"hihi"').replace("limit = 80", "limit = 70"),
        ["alarms[1].limit: cnc01.speed: hihi limit 70 must be above the hi limit 80 (alarms[0])"],
    ),
    "lo above hi": (
        HI + HI.replace('"hi"', '"lo"').replace("limit = 80", "limit = 90"),
        ["alarms[0].limit: cnc01.speed: hi limit 80 must be above the lo limit 90 (alarms[1])"],
    ),
    "deadband spans the next limit": (
        HI + HI.replace('"hi"', '"hihi"').replace("limit = 80", "limit = 85").replace("deadband = 2", "deadband = 6"),
        ["alarms[1].deadband: cnc01.speed: deadband 6 of hihi spans the gap of 5 between hi and hihi"],
    ),
    "limit outside the range": (
        HI.replace("limit = 80", "limit = 250"),
        ["alarms[0].limit: limit 250 is outside the tag's range [0, 200]"],
    ),
    "two alarms with one name": (
        HI + HI,
        [
            "alarms[1].condition: cnc01.speed has a hi alarm already (alarms[0])",
            "alarms[1]: alarm 'cnc01.speed.hi' is defined twice (also alarms[0]); give one a `name`",
        ][::-1],
    ),
    "bad message field": (
        HI.replace("{value:.1f}", "{valu}"),
        [
            "alarms[0].message: unknown field {valu} in the message (known: deviation, limit, machine, name, "
            "priority, rate, setpoint, tag, unit, value)"
        ],
    ),
    "message field the condition does not provide": (
        HI.replace("{value:.1f}", "{deviation:.1f} from {setpoint}"),
        [
            "alarms[0].message: {deviation} is not available for a hi alarm (cnc01.speed.hi); available: limit, "
            "machine, name, priority, tag, unit, value",
            "alarms[0].message: {setpoint} is not available for a hi alarm (cnc01.speed.hi); available: limit, "
            "machine, name, priority, tag, unit, value",
        ],
    ),
    "rate field on a deviation alarm": (
        HI.replace('"hi"', '"deviation"')
        .replace("limit = 80", 'limit = 5\nsetpoint_tag = "cnc01.sp"')
        .replace("deadband = 2", "deadband = 1")
        .replace("{value:.1f}", "{rate:.1f}"),
        [
            "alarms[0].message: {rate} is not available for a deviation alarm (cnc01.speed.deviation); available: "
            "deviation, limit, machine, name, priority, setpoint, tag, unit, value"
        ],
    ),
    "chatter count of one for the system": (
        HI + "\n[alarm_system]\nchatter_count = 1\n",
        ["alarm_system.chatter_count: chatter_count is 0 (off) or at least 2"],
    ),
    "suppression expression with a call": (
        HI + "suppress_when = \"__import__('os')\"\n",
        [
            "alarms[0].suppress_when: \"__import__('os')\" is not allowed: use tag names, numbers, comparisons, "
            "and, or, not"
        ],
    ),
    "suppression on an unknown tag": (
        HI + 'suppress_when = "cnc01.spindle < 10"\n',
        ["alarms[0].suppress_when: unknown tag 'cnc01.spindle'"],
    ),
    "deviation without setpoint": (
        HI.replace('"hi"', '"deviation"').replace("limit = 80", "limit = 5").replace("deadband = 2", "deadband = 1"),
        ["alarms[0]: a deviation alarm needs setpoint_tag"],
    ),
    "limit alarm on a string tag": (
        HI.replace('tag = "cnc01.speed"', 'tag = "cnc01.text"'),
        ["alarms[0].condition: a hi alarm needs a numeric tag (cnc01.text is string)"],
    ),
    "discrete without states": (
        '\n[[alarms]]\ntag = "cnc01.speed"\ncondition = "discrete"\n',
        ["alarms[0]: a discrete alarm needs states (the values that are abnormal, e.g. [1] or [true])"],
    ),
    "flood position with unknown machine": (
        HI + '\n[alarm_system.positions]\nline = ["cnc01", "cnc09"]\n',
        ["alarm_system.positions.line[1]: unknown machine 'cnc09'"],
    ),
    "operator position with unknown machine": (
        HI + '\n[[positions]]\nname = "line"\nmachines = ["cnc01", "cnc09"]\n',
        ["positions[0].machines[1]: position line: unknown machine 'cnc09'"],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_alarm_config(tmp_path: Path, case: str) -> None:
    """Each broken alarm configuration is reported with its key path, exactly."""
    text, expected = BROKEN[case]
    assert errors(tmp_path, BASE + text) == expected


def test_nuisance_detection_defaults_and_overrides(tmp_path: Path) -> None:
    """Chattering (3 in 60 s) and fleeting (under 5 s) detection is on for every alarm unless
    [alarm_system] or the alarm itself says otherwise; 0 turns it off."""
    project = load_project(DEMO_PROJECT)
    settings = alarm_settings(project)
    assert (settings.chatter_count, settings.chatter_window_s, settings.fleeting_s) == (3, 60.0, 5.0)
    text = BASE + HI + "chatter_count = 0\nfleeting_s = 2\n" + "\n[alarm_system]\nchatter_count = 4\nfleeting_s = 0\n"
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    project = load_project(path)
    settings = alarm_settings(project)
    assert (settings.chatter_count, settings.chatter_window_s, settings.fleeting_s) == (4, 60.0, 0.0)
    [hi] = alarm_definitions(project)
    assert (hi.chatter_count, hi.chatter_window_s, hi.fleeting_s) == (0, None, 2.0)


def test_demo_deviation_message_says_the_deviation() -> None:
    """The demo's deviation alarm reports the deviation from its setpoint, not the measured value
    (the operator read "off its setpoint by 0.92 m/s" at 0.92 against 1.0)."""
    belt = {d.name: d for d in alarm_definitions(load_project(DEMO_PROJECT))}["conveyor01.belt_speed.deviation"]
    assert belt.text(0.92, setpoint=1.0) == "Belt speed off its setpoint: -0.08 m/s (setpoint 1.00 m/s, allowed ±0.05)"


def test_good_alarm_kinds_load(tmp_path: Path) -> None:
    """Deviation, rate, discrete and quality alarms with their own keys load."""
    text = (
        BASE
        + HI
        + """
[[alarms]]
tag = "cnc01.speed"
condition = "deviation"
setpoint_tag = "cnc01.sp"
limit = 5
deadband = 1

[[alarms]]
tag = "cnc01.speed"
condition = "rate"
limit = 50
rate_period_s = 2
direction = "rise"

[[alarms]]
name = "cnc01.speed.stopped"
tag = "cnc01.speed"
condition = "discrete"
states = [0]
suppress_when = "cnc01.sp == 0"

[[alarms]]
tag = "cnc01.speed"
condition = "comm_loss"
priority = "low"
"""
    )
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    names = [d.name for d in alarm_definitions(load_project(path))]
    assert names == ["cnc01.speed.hi", "cnc01.speed.deviation", "cnc01.speed.rate", "cnc01.speed.stopped",
                     "cnc01.speed.comm_loss"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "hmi", "check-config", str(path)], cwd=REPO, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and "5 alarm(s)" in result.stdout


def test_operator_positions_set_the_flood_positions_and_are_given_one_way_only(tmp_path: Path) -> None:
    """[[positions]] (name, area, machines) is what the engine counts floods by; the older
    [alarm_system] positions beside it is refused, and names are unique."""
    position = '\n[[positions]]\nname = "cell"\narea = "Machining"\nmachines = ["cnc01"]\n'
    path = tmp_path / "p.toml"
    path.write_text(BASE + HI + position, encoding="utf-8")
    assert alarm_settings(load_project(path)).positions == {"cell": ("cnc01",)}
    both = errors(tmp_path, BASE + HI + position + '\n[alarm_system.positions]\nline = ["cnc01"]\n')
    assert len(both) == 1 and "positions are given twice" in both[0]
    twice = errors(tmp_path, BASE + HI + position + position)
    assert len(twice) == 1 and "repeated: cell" in twice[0]
