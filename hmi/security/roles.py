"""Roles and what each may do. A role may do everything the roles below it may."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ENGINEER = 3
    ADMIN = 4

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
}


def may(role: Role | None, action: Action) -> bool:
    return role is not None and role >= REQUIRED_ROLE[action]
