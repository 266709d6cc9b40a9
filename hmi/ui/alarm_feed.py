"""The window's link to the runtime's alarms and commands, and the logged-in user.

`AlarmFeed` keeps an AlarmList and an EventLog from the mirrored bus's event stream (the
IPC thread applies events; nothing waits on the UI thread), fetches the runtime's alarm
snapshot whenever the link comes up, the runtime restarted or the channel was repaired after
a gap or a stall (events may have been lost), and sends commands with the
session of the logged-in user. Replies cross to the UI thread in one place: the IPC thread
puts them on a queue and emits `_reply_waiting` (no arguments: no Python object is handed
through Qt's cross-thread event queue), and the UI thread drains the queue.

`UserSession` holds who is logged in (the runtime issued the session), logs out after
`idle_logout_s` without keyboard or mouse input (an application-wide event filter sees
every input), and keeps the runtime's session alive while the operator is active.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from hmi.core.alarms.alarm_list import AlarmList, EventLog
from hmi.core.events import Event
from hmi.ipc.client import IpcClient
from hmi.ipc.mirror import BusMirror

log = logging.getLogger(__name__)

Reply = dict[str, Any]
ReplyCallback = Callable[[Reply], None]
EVENT_CHUNK = 200  # events applied per lock hold, so the UI thread never waits long for the list
POLL_MS = 200
TOUCH_EVERY_S = 60.0
INPUT_REST_S = 5.0  # after an input, the next is looked for this much later (at most)


class AlarmFeed(QObject):
    """Alarm list + event log + command channel. `changed` fires (UI thread) when the list changed."""

    changed = Signal()
    _reply_waiting = Signal()

    def __init__(self, mirror: BusMirror, client: IpcClient | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.mirror = mirror
        self.client = client
        self.alarms = AlarmList()
        self.events = EventLog()
        self.session = UserSession(self)
        self._seen_version = -1
        self._snapshot_lock = threading.Lock()
        self._snapshot_pending = False
        self._snapshot_again = False  # asked for while one was in flight, which may predate the reason
        self._replies: queue.SimpleQueue[tuple[ReplyCallback | None, Reply]] = queue.SimpleQueue()
        self._reply_waiting.connect(self._drain_replies)
        self._subscription = mirror.bus.subscribe_events(self._on_events, name="alarm-feed")
        mirror.on_link_change(self._on_link)
        mirror.on_resynced(self.request_snapshot)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._poll)
        self._timer.start(POLL_MS)
        if mirror.link_up:
            self.request_snapshot()

    @functools.cached_property
    def station(self) -> str:
        """Where this window runs, for the audit trail and the journal: host and X display
        ("ws3:0"), computed once. On a plain (loopback) channel the runtime takes it as given
        (hmi.commands.station_of); over CURVE it uses the station's enrolled name instead."""
        return socket.gethostname() + os.environ.get("DISPLAY", "")

    def close(self) -> None:
        """Stop listening (UI thread). Call before dropping the feed, so that nothing of it is
        left for Python's garbage collector to destroy on another thread."""
        self._timer.stop()
        self._subscription.close()
        self.session.close()

    # -- IPC thread ------------------------------------------------------------------------

    def _on_events(self, events: list[Event] | Any) -> None:
        events = list(events)
        self.events.extend(events)
        for start in range(0, len(events), EVENT_CHUNK):
            self.alarms.apply_events(events[start : start + EVENT_CHUNK])
        if self.alarms.needs_snapshot and self.alarms.epoch is not None:
            self.request_snapshot()

    def _on_link(self, up: bool) -> None:
        if up:
            self.request_snapshot()

    def request_snapshot(self) -> None:
        """Fetch the runtime's alarm states (any thread). One request at a time; asked again
        while one is in flight, a second follows it, as the first may predate the loss."""
        if self.client is None:
            return
        with self._snapshot_lock:
            if self._snapshot_pending:
                self._snapshot_again = True
                return
            self._snapshot_pending = True
        future = self.client.send_command({"command": "alarms"})

        def done(f: Future[Reply]) -> None:
            with self._snapshot_lock:
                self._snapshot_pending = False
                again, self._snapshot_again = self._snapshot_again, False
            try:
                reply = f.result()
            except Exception as exc:
                log.warning("alarm snapshot failed: %s", exc)
                reply = {}
            if reply.get("ok"):
                self.alarms.apply_snapshot(reply)
            if again:
                self.request_snapshot()

        future.add_done_callback(done)

    # -- UI thread --------------------------------------------------------------------------------

    def _poll(self) -> None:
        version = self.alarms.version
        if version != self._seen_version:
            self._seen_version = version
            self.changed.emit()

    def send(self, command: dict[str, Any], on_reply: ReplyCallback | None = None, with_session: bool = True) -> None:
        """Send `command` (with the session when logged in, and this window's station);
        `on_reply(reply)` runs on the UI thread."""
        command = {**command, "station": self.station}
        if with_session and self.session.token:
            command["session"] = self.session.token
        if self.client is None or not self.mirror.link_up:
            if on_reply is not None:
                on_reply({"ok": False, "error": "not connected to the runtime"})
            return
        future = self.client.send_command(command)

        def done(f: Future[Reply]) -> None:
            try:
                reply = f.result()
            except Exception as exc:
                reply = {"ok": False, "error": f"no answer from the runtime ({exc})"}
            self._replies.put((on_reply, reply))
            self._reply_waiting.emit()

        future.add_done_callback(done)

    def _drain_replies(self) -> None:
        while True:
            try:
                on_reply, reply = self._replies.get_nowait()
            except queue.Empty:
                break
            if on_reply is not None:
                on_reply(reply)
        self._poll()


class UserSession(QObject):
    """Who is logged in. `changed` fires on login and logout (UI thread)."""

    changed = Signal()
    message = Signal(str)

    def __init__(self, feed: AlarmFeed) -> None:
        super().__init__(feed)
        self.feed = feed
        self.user = ""
        self.role = ""
        self.token = ""
        self.idle_logout_s = 0.0
        self.last_input = time.monotonic()
        self._last_touch = 0.0
        self._idle_timer = QTimer(self)
        self._idle_timer.timeout.connect(self._check_idle)
        self._idle_timer.start(1000)
        # Input is watched by an application-wide event filter, which Qt calls for every
        # event of every object (paints, timers...): a few % of a core in Python. So it is
        # installed only while someone is logged in, and after each input it rests for a
        # fraction of the idle time before it looks again.
        self.listening = False
        self._relisten = QTimer(self)
        self._relisten.setSingleShot(True)
        self._relisten.timeout.connect(lambda: self._listen(self.logged_in))

    @property
    def logged_in(self) -> bool:
        return bool(self.token)

    def close(self) -> None:
        self._idle_timer.stop()
        self._relisten.stop()
        self._listen(False)

    def _listen(self, on: bool) -> None:
        app = QApplication.instance()
        if app is None or on == self.listening:
            return
        if on:
            app.installEventFilter(self)
        else:
            app.removeEventFilter(self)
        self.listening = on

    def login(self, user: str, password: str, on_result: Callable[[bool, str], None] | None = None) -> None:
        def done(reply: Reply) -> None:
            if reply.get("ok"):
                self.user, self.role, self.token = reply["user"], reply["role"], reply["session"]
                self.idle_logout_s = float(reply.get("idle_logout_s", 0) or 0)
                self.last_input = self._last_touch = time.monotonic()
                self._listen(True)
                self.changed.emit()
                self.message.emit(f"{self.user} logged in ({self.role})")
            if on_result is not None:
                on_result(bool(reply.get("ok")), str(reply.get("error", "")))

        self.feed.send({"command": "login", "user": user, "password": password}, done, with_session=False)

    def logout(self, reason: str = "user") -> None:
        if not self.token:
            return
        self.feed.send({"command": "logout", "session": self.token, "reason": reason}, None, with_session=False)
        user = self.user
        self.user = self.role = self.token = ""
        self._listen(False)
        self.changed.emit()
        self.message.emit(f"{user} logged out" + (" after being idle" if reason == "idle" else ""))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress, QEvent.Type.Wheel):
            self.note_input()
            self._listen(False)
            self._relisten.start(int(1000 * min(INPUT_REST_S, self.idle_logout_s / 4 or INPUT_REST_S)))
        return False

    def note_input(self) -> None:
        now = time.monotonic()
        self.last_input = now
        if self.token and now - self._last_touch > TOUCH_EVERY_S:
            # The runtime ends sessions unused for idle_logout_s; an active operator keeps theirs.
            self._last_touch = now
            self.feed.send({"command": "touch"}, self._on_touch)

    def _on_touch(self, reply: Reply) -> None:
        if not reply.get("ok") and self.token and "not logged in" in str(reply.get("error", "")):
            self.user = self.role = self.token = ""
            self._listen(False)
            self.changed.emit()
            self.message.emit("the runtime ended the session: log in again")

    def _check_idle(self, now: float | None = None) -> None:
        if self.token and self.idle_logout_s > 0:
            now = time.monotonic() if now is None else now
            if now - self.last_input > self.idle_logout_s:
                self.logout("idle")
