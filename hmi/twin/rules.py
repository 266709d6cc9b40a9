"""Symptoms to probable causes: a rule table, and the diagnoser that applies it over time.

A model turns its features into named symptoms (booleans such as `vibration_high`,
`suction_low`) once per bin. A rule names the symptoms a cause shows (`all_of`, at least
one of `any_of`) and those that speak against it (`none_of`: a cause that would show them
is a better explanation). A rule that matches for `on_delay_s` raises its advisory; one
that has not matched for `off_delay_s` clears it. Causes are independent: two faults at
once raise two advisories.
"""

from __future__ import annotations

from dataclasses import dataclass

from hmi.twin.model import NS


@dataclass(frozen=True, slots=True)
class Rule:
    cause: str  # advisory tag suffix: <machine>.advisory.<cause>
    title: str  # "Probable cavitation"
    all_of: frozenset[str]
    any_of: frozenset[str] = frozenset()
    none_of: frozenset[str] = frozenset()
    checks: tuple[str, ...] = ()
    on_delay_s: float = 10.0
    off_delay_s: float = 60.0
    priority: str = "medium"  # of the advisory (low, medium, high)

    def matches(self, symptoms: set[str]) -> bool:
        return (
            self.all_of <= symptoms
            and (not self.any_of or bool(self.any_of & symptoms))
            and not (self.none_of & symptoms)
        )


def rule(
    cause: str,
    title: str,
    all_of: tuple[str, ...],
    any_of: tuple[str, ...] = (),
    none_of: tuple[str, ...] = (),
    checks: tuple[str, ...] = (),
    on_delay_s: float = 10.0,
    off_delay_s: float = 60.0,
    priority: str = "medium",
) -> Rule:
    return Rule(
        cause,
        title,
        frozenset(all_of),
        frozenset(any_of),
        frozenset(none_of),
        checks,
        on_delay_s,
        off_delay_s,
        priority,
    )


@dataclass(slots=True)
class _State:
    active: bool = False
    match_since: int | None = None
    last_match: int | None = None


class Diagnoser:
    """Applies a rule table to the symptoms seen at each bin; reports raised and cleared causes."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._states = {r.cause: _State() for r in rules}

    def active(self) -> list[str]:
        return [cause for cause, s in self._states.items() if s.active]

    def update(self, ts_ns: int, symptoms: set[str]) -> tuple[list[Rule], list[Rule]]:
        """(raised, cleared) rules at time ts_ns."""
        raised: list[Rule] = []
        cleared: list[Rule] = []
        for r in self.rules:
            s = self._states[r.cause]
            if r.matches(symptoms):
                s.last_match = ts_ns
                if s.match_since is None:
                    s.match_since = ts_ns
                if not s.active and ts_ns - s.match_since >= r.on_delay_s * NS:
                    s.active = True
                    raised.append(r)
            else:
                s.match_since = None
                if s.active and (s.last_match is None or ts_ns - s.last_match >= r.off_delay_s * NS):
                    s.active = False
                    cleared.append(r)
        return raised, cleared

    def reset(self) -> list[Rule]:
        """Forget every match (the machine stopped); returns the rules that were active."""
        was = [r for r in self.rules if self._states[r.cause].active]
        self._states = {r.cause: _State() for r in self.rules}
        return was
