"""Operator positions and the stations attached to the runtime.

A position ([[positions]] in the project file) is a share of the plant an operator answers
for: its machines' alarms are what the position's window shows by default and what its flood
count counts. The runtime keeps which station holds which position (one holder per position,
one position per station) and when it last heard from each station, so a supervisor sees who
is attached, logged in, and where.

Pure apart from the lock: time is passed in. Who may take or hand over a position is the
command's to check (hmi.commands); this keeps the facts. Threads: the IPC request thread.
Held positions live in memory only: a runtime restart ends every login too, so each station
takes its position again when its operator logs in again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hmi.security.sessions import Session

NS = 1_000_000_000
# A window asks for the station list about once a second (hmi.ui.stations_panel): three
# missed polls in a row and its station shows as lost.
STATION_LOST_S = 3.0
MAX_STATIONS = 200  # stations remembered; the longest unseen is forgotten first


@dataclass(frozen=True, slots=True)
class Position:
    name: str
    area: str = ""
    machines: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "area": self.area, "machines": list(self.machines)}


class PositionRefused(Exception):
    """Why a position cannot be taken or handed over (for the operator)."""


class StationBoard:
    """Positions, who holds each, and when each station was last heard from."""

    def __init__(self, positions: Iterable[Position] = (), lost_after_s: float = STATION_LOST_S) -> None:
        self.lost_after_s = lost_after_s
        self._lock = threading.Lock()
        self._positions = {p.name: p for p in positions}
        self._holder: dict[str, str] = {}  # position -> station
        self._last_seen: dict[str, int] = {}  # station -> ns

    @property
    def positions(self) -> list[Position]:
        with self._lock:
            return list(self._positions.values())

    def replace_positions(self, positions: Iterable[Position]) -> None:
        """A reloaded project: positions that keep their name keep their holder."""
        with self._lock:
            self._positions = {p.name: p for p in positions}
            self._holder = {p: s for p, s in self._holder.items() if p in self._positions}

    def seen(self, station: str, now_ns: int) -> None:
        if not station:
            return
        with self._lock:
            self._last_seen.pop(station, None)  # re-inserted last: the dict stays in seen order
            self._last_seen[station] = now_ns
            while len(self._last_seen) > MAX_STATIONS:
                oldest = next(iter(self._last_seen))
                if oldest in self._holder.values():
                    break  # a holder is never forgotten while it holds a position
                del self._last_seen[oldest]

    def attached(self, station: str, now_ns: int) -> bool:
        with self._lock:
            return self._attached(station, now_ns)

    def _attached(self, station: str, now_ns: int) -> bool:
        seen = self._last_seen.get(station)
        return seen is not None and now_ns - seen <= self.lost_after_s * NS

    def position_of(self, station: str) -> str:
        with self._lock:
            return next((p for p, s in self._holder.items() if s == station), "")

    def holder_of(self, position: str) -> str:
        with self._lock:
            return self._holder.get(position, "")

    def take(self, station: str, position: str) -> str:
        """`station` takes the free `position`; returns the position it left ("" if none)."""
        with self._lock:
            self._known(position)
            holder = self._holder.get(position, "")
            if holder and holder != station:
                raise PositionRefused(f"{position} is held by {holder}: its holder or a supervisor hands it over")
            return self._move(position, station)

    def hand_over(self, position: str, to_station: str, now_ns: int) -> tuple[str, str]:
        """Give `position` to the attached station `to_station`: (the station that held it, the
        position `to_station` left). Who may do it is the caller's check."""
        with self._lock:
            self._known(position)
            if not to_station:
                raise PositionRefused("a hand-over names the station that takes the position")
            if not self._attached(to_station, now_ns):
                raise PositionRefused(f"station {to_station!r} is not attached: a position goes to a station in use")
            holder = self._holder.get(position, "")
            if holder == to_station:
                raise PositionRefused(f"{to_station} already holds {position}")
            return holder, self._move(position, to_station)

    def _known(self, position: str) -> None:
        if position not in self._positions:
            known = ", ".join(self._positions) or "none in this project"
            raise PositionRefused(f"no position {position!r} (positions: {known})")

    def _move(self, position: str, station: str) -> str:
        left = next((p for p, s in self._holder.items() if s == station), "")
        if left:
            del self._holder[left]
        self._holder[position] = station
        return "" if left == position else left

    def stations(self, sessions: Iterable[Session], now_ns: int) -> list[dict[str, Any]]:
        """Every station heard from (newest first): {"station", "position", "users": [{"user",
        "role"}], "last_seen_ns", "attached"}; users are the sessions logged in there."""
        users: dict[str, list[dict[str, str]]] = {}
        for session in sessions:
            users.setdefault(session.station, []).append({"user": session.user, "role": session.role.label})
        with self._lock:
            held = {s: p for p, s in self._holder.items()}
            return [
                {
                    "station": station,
                    "position": held.get(station, ""),
                    "users": sorted(users.get(station, []), key=lambda u: u["user"]),
                    "last_seen_ns": seen,
                    "attached": self._attached(station, now_ns),
                }
                for station, seen in reversed(self._last_seen.items())
            ]
