"""The window during an alarm flood: 10,000 alarms trip within one second in a runtime
running in a child process (as in the product); the window (IpcClient, AlarmFeed,
AlarmPanel, AlarmBanner) runs here, and a 5 ms QTimer probe records the longest gap the
UI thread went without running it. Prints one line: the longest stall and the counts.
Run by bench/alarms.py (`python -m bench alarms`); the leading underscore keeps it out of
the plain `python -m bench` list."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import numpy as np

from hmi.commands import AlarmService
from hmi.core.alarms import AlarmDefinition, AlarmEngine, Condition, Priority
from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagRegistry, TagSpec
from hmi.gcfreeze import freeze_startup_objects
from hmi.ipc.publisher import IpcPublisher
from hmi.supervisor import free_tcp_port

FLOOD = 10_000
SETTLE_S = 2.0


def runtime_side(stream: str, requests: str) -> None:
    tags = [TagSpec(f"m{i // 100:03d}.t{i:05d}", unit="bar") for i in range(FLOOD)]
    defs = [
        AlarmDefinition(f"{t.name}.hi", t.name, Condition.HI, Priority.HIGH if i % 10 else Priority.URGENT, limit=1.0)
        for i, t in enumerate(tags)
    ]
    bus = TagBus(TagRegistry(tags))
    service = AlarmService(AlarmEngine(defs, bus.registry), bus)
    publisher = IpcPublisher(bus, stream, requests, lambda c: service.snapshot())
    publisher.start()
    time.sleep(SETTLE_S)
    start = now_ns()
    for chunk in range(10):  # ten batches of 1,000 alarms within one second
        ids = np.arange(chunk * 1000, (chunk + 1) * 1000)
        bus.publish(SampleBatch.from_arrays(ids, start + ids * 100_000, np.full(1000, 5.0)))
        time.sleep(0.1)
    time.sleep(5.0)
    publisher.stop()


def window_side() -> None:
    from PySide6.QtCore import QTimer  # noqa: TID251 (this module is the window side)
    from PySide6.QtWidgets import QApplication  # noqa: TID251

    from hmi.ipc.client import IpcClient
    from hmi.ipc.mirror import BusMirror
    from hmi.ui.alarm_banner import AlarmBanner
    from hmi.ui.alarm_feed import AlarmFeed
    from hmi.ui.alarm_panel import AlarmPanel
    from hmi.ui.annunciator import Annunciator

    app = QApplication.instance() or QApplication(sys.argv[:1])
    stream, requests = f"tcp://127.0.0.1:{free_tcp_port()}", f"tcp://127.0.0.1:{free_tcp_port()}"
    child = subprocess.Popen(
        [sys.executable, "-m", "bench._ui_alarm_flood", "--runtime", "--stream", stream, "--requests", requests]
    )
    mirror = BusMirror()
    client = IpcClient(stream, requests, mirror)
    feed = AlarmFeed(mirror, client)
    horn = Annunciator(feed, player=lambda: None)
    panel = AlarmPanel(feed)
    banner = AlarmBanner(feed, horn)
    panel.resize(1200, 500)
    panel.show()
    banner.show()
    client.start()
    freeze_startup_objects()  # as the window does FREEZE_AFTER_START_S after start: the flood comes later
    stalls: list[float] = []
    last = [time.perf_counter()]

    def probe() -> None:
        now = time.perf_counter()
        stalls.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(probe)
    timer.start(5)
    deadline = time.monotonic() + 60
    done = threading.Event()

    def check() -> None:
        if panel.model.rowCount() >= FLOOD or time.monotonic() > deadline:
            done.set()
            QTimer.singleShot(1000, app.quit)  # keep measuring for a second after the last row

    poll = QTimer()
    poll.timeout.connect(check)
    poll.start(50)
    app.exec()
    client.stop()
    feed.close()
    child.wait(30)
    gaps = np.asarray(stalls) * 1000
    print(
        f"{gaps.max():.0f} ms (p99 {np.percentile(gaps, 99):.0f} ms; {panel.model.rowCount():,} of {FLOOD:,} "
        f"alarms shown, {banner.unacknowledged:,} unacknowledged)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", action="store_true")
    parser.add_argument("--stream")
    parser.add_argument("--requests")
    args = parser.parse_args()
    if args.runtime:
        runtime_side(args.stream, args.requests)
    else:
        window_side()
