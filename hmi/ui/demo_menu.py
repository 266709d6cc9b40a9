"""The Demo menu: inject and clear the embedded demo plant's faults, so that a new user sees
alarms and advisories within a minute.

Shown when the project embeds the demo plant (`[simulator] enabled = true`). The faults come
from the runtime (`demo_faults`: the simulator's catalogue, hmi/sim); each machine of the
project gets a submenu with an Inject and a Clear section. A click sends `demo_fault`, which
the runtime checks (engineer role), records in the audit trail (who, station, reason) and
carries out through the plant's OPC UA InjectFault / ClearFault method. Entries are disabled
with "Needs engineer: ..." for anyone else (hmi/ui/role_gate.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from PySide6.QtWidgets import QMenu, QWidget

from hmi.config.models import Project
from hmi.security.roles import Action
from hmi.ui.alarm_feed import AlarmFeed, Reply
from hmi.ui.role_gate import RoleGate

log = logging.getLogger(__name__)

REASON = "demonstration (Demo menu)"  # the "why" in the audit trail
NOT_LOADED = "Faults appear when the runtime is connected"


def demo_connection(project: Project) -> str | None:
    """The OPC UA connection that reaches the embedded demo plant (its endpoint's port is the
    simulator's), or None when the project embeds none."""
    if not project.simulator.enabled:
        return None
    for name, connection in project.connections.items():
        if getattr(connection, "kind", "") != "opcua":
            continue
        try:
            port = urlsplit(str(getattr(connection, "endpoint", ""))).port
        except ValueError:
            continue
        if port == project.simulator.opcua_port:
            return name
    return None


class DemoMenu(QMenu):
    def __init__(
        self,
        project: Project,
        connection: str,
        feed: AlarmFeed,
        gate: RoleGate,
        say: Callable[[str], None],
        parent: QWidget | None = None,
    ) -> None:
        """`say(text)` shows a command's outcome (the status bar)."""
        super().__init__("&Demo", parent)
        self.setObjectName("demoMenu")
        self.setToolTipsVisible(True)
        self.project = project
        self.connection = connection
        self.feed = feed
        self.gate = gate
        self.say = say
        self.loaded = False
        self.last_result = ""  # what the runtime answered to the last click
        self._pending = False
        self.submenus: dict[str, QMenu] = {}
        self.placeholder = self.addAction(NOT_LOADED)
        self.placeholder.setEnabled(False)
        self.aboutToShow.connect(self.load)

    def load(self) -> None:
        """Ask the runtime for the faults (once it answered, never again)."""
        if self.loaded or self._pending:
            return
        self._pending = True
        self.feed.send({"command": "demo_faults"}, self._on_faults, with_session=False)

    def _on_faults(self, reply: Reply) -> None:
        self._pending = False
        if not reply.get("ok") or self.loaded:
            return
        catalogue: dict[str, Any] = dict(reply.get("machines") or {})
        wanted = self.project.simulator.machines or list(self.project.machines)
        self.removeAction(self.placeholder)
        for machine in wanted:
            faults = catalogue.get(machine)
            if not faults:
                continue
            config = self.project.machines.get(machine)
            submenu = self.addMenu((config.label if config is not None and config.label else None) or machine)
            submenu.setToolTipsVisible(True)
            for inject, section in ((True, "Inject"), (False, "Clear")):
                submenu.addSection(section)
                for item in faults:
                    fault, description = str(item["fault"]), str(item.get("description", ""))
                    action = submenu.addAction(fault.replace("_", " "))
                    action.setObjectName(f"{'inject' if inject else 'clear'}:{machine}.{fault}")
                    action.triggered.connect(functools.partial(self.set_fault, machine, fault, inject))
                    self.gate.gate(action, Action.DEMO_FAULT, tooltip=description)
            self.submenus[machine] = submenu
        self.loaded = True

    def set_fault(self, machine: str, fault: str, inject: bool, _checked: bool = False) -> None:
        """Inject (or clear) a fault: the command the menu sends."""
        command = {"command": "demo_fault", "connection": self.connection, "machine": machine, "fault": fault,
                   "inject": inject, "reason": REASON}  # fmt: skip
        verb = "injected" if inject else "cleared"

        def done(reply: Reply) -> None:
            what = f"Demo: {machine} {fault.replace('_', ' ')}"
            ok = reply.get("ok")
            self.last_result = f"{what} {verb}" if ok else f"{what} not {verb}: {reply.get('error', 'refused')}"
            self.say(self.last_result)

        self.feed.send(command, done)
