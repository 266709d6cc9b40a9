"""Roles and what each may do. A role may do everything the roles below it may."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    # The shift supervisor: an operator who also hands positions over and watches the stations.
    # Roles are stored by label (users.json, audit), never by number, so one fits in between.
    SUPERVISOR = 3
    ENGINEER = 4
    ADMIN = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            known = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {text!r} (known: {known})") from None


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESET = "reset"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    OUT_OF_SERVICE = "out_of_service"
    WRITE = "write"
    RELOAD_CONFIG = "reload_config"
    MANAGE_USERS = "manage_users"
    STOP_SYSTEM = "stop_system"  # plant connections, runtime and historian: recording ends
    DEMO_FAULT = "demo_fault"  # inject or clear a fault in the embedded demo plant
    # Confirm (or reject) another user's write to a `verify = true` tag: the second person of
    # a two-person write (hmi/security/verified_writes.py). Never one's own write.
    VERIFY_WRITE = "verify_write"
    TAKE_POSITION = "take_position"  # an operator position (its machines' alarms) for this station
    HAND_OVER_POSITION = "hand_over_position"  # another station's position (its holder may too)
    VIEW_STATIONS = "view_stations"  # the attached stations, their users and positions


REQUIRED_ROLE: dict[Action, Role] = {
    Action.ACKNOWLEDGE: Role.OPERATOR,
    Action.RESET: Role.OPERATOR,
    Action.SHELVE: Role.OPERATOR,
    Action.UNSHELVE: Role.OPERATOR,
    Action.OUT_OF_SERVICE: Role.ENGINEER,
    Action.WRITE: Role.OPERATOR,
    Action.RELOAD_CONFIG: Role.ENGINEER,
    Action.MANAGE_USERS: Role.ADMIN,
    Action.STOP_SYSTEM: Role.ENGINEER,
    Action.DEMO_FAULT: Role.ENGINEER,
    # The verifier answers for another's change as the shift's supervisor: supervisors and above.
    Action.VERIFY_WRITE: Role.SUPERVISOR,
    Action.TAKE_POSITION: Role.OPERATOR,
    Action.HAND_OVER_POSITION: Role.SUPERVISOR,
    Action.VIEW_STATIONS: Role.SUPERVISOR,
}


def may(role: Role | None, action: Action) -> bool:
    return role is not None and role >= REQUIRED_ROLE[action]
