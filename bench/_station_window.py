"""One operator station in its own process: the window's AlarmFeed and IpcClient over CURVE,
driven by JSON lines on stdin, answering JSON lines on stdout (bench/stations.py and
tests/system/test_cross_station.py start two of them against one runtime).

Commands: {"op": "login", "user", "password"}, {"op": "ack", "alarm", "comment"} (through
AlarmFeed.send, the window's command path; prints the reply and when it was sent), {"op":
"act", "command": {...}} (any command, the same way), {"op": "watch", "alarms": [...],
"until": {field: value}} (prints {"seen": alarm, "t_ns"} the moment this window's alarm list
shows each alarm so, default {"acked": true}), {"op": "states"} (every alarm's acked, state,
mode, comment, epoch and revision), {"op": "quit"}. The first line out is {"ready": true}
once the alarm snapshot arrived.

Usage: python -m bench._station_window STREAM REQUESTS SERVER_KEY STATION_KEY_DIR NAME
(SERVER_KEY: the runtime's public key, Z85 text)
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def out(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    from PySide6.QtCore import QTimer  # noqa: TID251 (this module is the window side)
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from hmi.ipc.client import IpcClient
    from hmi.ipc.curve import CurveClient
    from hmi.ipc.mirror import BusMirror
    from hmi.security.stations import key_pair
    from hmi.ui.alarm_feed import AlarmFeed

    stream, requests, server_key_text, key_dir, name = argv
    keys = key_pair(name, Path(key_dir))
    server_key = server_key_text.encode("ascii")
    app = QApplication([])
    mirror = BusMirror()
    client = IpcClient(stream, requests, mirror, curve=CurveClient(server_key, keys.public, keys.secret))
    feed = AlarmFeed(mirror, client)
    watched: dict[str, dict[str, Any]] = {}  # alarm -> the fields it must show
    watch_lock = threading.Lock()

    def on_events(_events: Any) -> None:
        # IPC thread, after the feed's own subscriber applied the same events (subscribed
        # first): the moment the alarm list shows an acknowledgement.
        with watch_lock:
            if not watched:
                return
            now = time.time_ns()
            for alarm, until in list(watched.items()):
                status = feed.alarms.get(alarm)
                if status is not None and all(str(getattr(status, k)) == str(v) for k, v in until.items()):
                    del watched[alarm]
                    out({"seen": alarm, "t_ns": now})

    mirror.bus.subscribe_events(on_events, name="station-watch")
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read_stdin() -> None:
        for line in sys.stdin:
            lines.put(line)
        lines.put('{"op": "quit"}')

    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    ready = False

    def step() -> None:
        nonlocal ready
        if not ready and feed.alarms.epoch is not None and len(feed.alarms.statuses()) > 0:
            ready = True
            out({"ready": True})
        while True:
            try:
                command = json.loads(lines.get_nowait())
            except queue.Empty:
                return
            op = command["op"]
            if op == "login":
                feed.session.login(command["user"], command["password"], lambda ok, e: out({"login": ok, "error": e}))
            elif op == "ack":
                alarm = command["alarm"]
                t_ns = time.time_ns()
                feed.send({"command": "acknowledge", "alarms": [alarm], "comment": command.get("comment", "")},
                          lambda reply, a=alarm, t=t_ns: out({"acked": a, "sent_ns": t, "reply": reply}))  # fmt: skip
            elif op == "act":
                feed.send(command["command"], lambda reply: out({"reply": reply}))
            elif op == "watch":
                with watch_lock:
                    until = command.get("until", {"acked": True})
                    watched.update({alarm: until for alarm in command["alarms"]})
                on_events(())  # already acknowledged: seen now
            elif op == "states":
                states = {
                    s.name: {"acked": s.acked, "state": str(s.state), "mode": str(s.mode), "comment": s.comment,
                             "epoch": s.epoch, "revision": s.revision}
                    for s in feed.alarms.statuses()
                }  # fmt: skip
                out({"states": states, "epoch": feed.alarms.epoch})
            elif op == "quit":
                app.quit()
                return

    timer = QTimer()
    timer.timeout.connect(step)
    timer.start(10)
    client.start()
    app.exec()
    feed.close()
    client.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
