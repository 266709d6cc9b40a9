"""Sample to pixels: how long from a value's arrival to the frame that paints it.

A real chain: paho publishes JSON at 100 messages/s to a Mosquitto on a free port; the
runtime (`hmi run --headless`, its own process) reads it through its MQTT source and
streams it to this process's window (IpcClient -> BusMirror -> TrendView). We record when
each value arrives on the window's bus and when a paint of the trend shows it, and report
two latencies: window bus -> paint (the window's own share, frame rate included) and MQTT
publish -> paint (end to end). Needs a display (Xvfb) and mosquitto.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import percentiles_ms, print_table
from hmi.supervisor import free_tcp_port

RATE_HZ = 100
SECONDS = 15.0

PROJECT = """
[project]
name = "Latency bench"
[historian]
url = "sqlite:///{{data}}/latency.sqlite"
[runtime]
stream_port = {stream}
request_port = {requests}
[connections.broker]
kind = "mqtt"
host = "127.0.0.1"
port = {mqtt}
[[connections.broker.subscriptions]]
topic = "bench/+/telemetry"
format = "json"
tag = "{{topic[1]}}.{{key}}"
timestamp_key = "ts"
[machines.bench]
label = "Bench"
[tags."bench.seq"]
connection = "broker"
range = [0, 1000000]
[[trends]]
name = "Latency"
pens = ["bench.seq"]
span_s = 60
"""


def wait_port(port: int, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> dict[str, float]:
    if not os.environ.get("DISPLAY"):
        print("\nSample to pixels: skipped, no display (run under xvfb-run, as `make bench` does)")
        return {}
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        print("\nSample to pixels: skipped, mosquitto is not installed (`make test` installs it)")
        return {}
    import paho.mqtt.client as mqtt
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from hmi.config import load_project
    from hmi.ipc.client import IpcClient
    from hmi.ipc.mirror import BusMirror
    from hmi.ui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="hmi-latency-"))
    os.environ["HMI_DATA_DIR"] = str(tmp / "data")
    mqtt_port, stream, requests = free_tcp_port(), free_tcp_port(), free_tcp_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    project_path = tmp / "project.toml"
    project_path.write_text(PROJECT.format(stream=stream, requests=requests, mqtt=mqtt_port))
    broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runtime = subprocess.Popen(
        [sys.executable, "-m", "hmi", "run", "--project", str(project_path), "--headless"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(mqtt_port)
        wait_port(requests)
        app = QApplication.instance() or QApplication([])
        project = load_project(project_path)
        mirror = BusMirror()
        client = IpcClient(f"tcp://127.0.0.1:{stream}", f"tcp://127.0.0.1:{requests}", mirror)
        window = MainWindow(project, mirror, client, scene=False, sound_player=lambda: None)
        window.resize(1280, 800)
        window.show()
        client.start()
        tag_id = window.bus.registry.id_of("bench.seq")
        published: dict[int, float] = {}
        arrived: dict[int, float] = {}
        painted: dict[int, float] = {}
        drawn_up_to = [-1]

        def on_batch(batch) -> None:  # IPC thread
            now = time.perf_counter()
            for v in batch.values[batch.tag_ids == tag_id]:
                if math.isfinite(v):  # the link going down at the end sends NaN (COMM_LOST)
                    arrived.setdefault(int(v), now)

        window.bus.subscribe(on_batch)
        trend = window.trend
        original_refresh = trend.refresh

        def refresh(*args, **kwargs):  # what the next paint will show
            drew = original_refresh(*args, **kwargs)
            _ts, values, _ = trend.buffers.get(tag_id)
            finite = values[np.isfinite(values)]
            if finite.shape[0]:
                drawn_up_to[0] = int(finite[-1])
            return drew

        trend.refresh = refresh

        class PaintProbe(QObject):
            shown = -1

            def eventFilter(self, watched, event) -> bool:
                if event.type() == QEvent.Type.Paint and drawn_up_to[0] > self.shown:
                    now = time.perf_counter()
                    for seq in range(self.shown + 1, drawn_up_to[0] + 1):
                        painted[seq] = now
                    self.shown = drawn_up_to[0]
                return False

        probe = PaintProbe()
        trend.plot_widget.viewport().installEventFilter(probe)

        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        publisher.connect("127.0.0.1", mqtt_port)
        publisher.loop_start()
        stop = threading.Event()

        def publish() -> None:
            time.sleep(3.0)  # let the runtime subscribe and the window take its snapshot
            seq = 0
            next_t = time.perf_counter()
            end = next_t + SECONDS
            while time.perf_counter() < end and not stop.is_set():
                published[seq] = time.perf_counter()
                payload = json.dumps({"ts": int(time.time() * 1000), "seq": seq})
                publisher.publish("bench/bench/telemetry", payload)
                seq += 1
                next_t += 1.0 / RATE_HZ
                time.sleep(max(next_t - time.perf_counter(), 0))

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        QTimer.singleShot(int((SECONDS + 5.0) * 1000), app.quit)
        app.exec()
        stop.set()
        thread.join()
        client.stop()
        window.close()
        publisher.loop_stop()
        publisher.disconnect()
    finally:
        runtime.terminate()
        runtime.wait(10)
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    common = sorted(set(painted) & set(arrived) & set(published))
    if not common:
        print("\nSample to pixels: no sample was painted (is the runtime starting?)")
        return {}
    bus_to_paint = [(painted[s] - arrived[s]) * 1e9 for s in common]
    publish_to_paint = [(painted[s] - published[s]) * 1e9 for s in common]
    rows = []
    results = {}
    for label, data in (("window bus -> paint", bus_to_paint), ("MQTT publish -> paint", publish_to_paint)):
        p50, p99, worst = percentiles_ms(data)
        results[label] = p99
        rows.append((label, f"{p50:.1f}", f"{p99:.1f}", f"{worst:.1f}"))
    print_table(
        f"Sample to pixels: {RATE_HZ} values/s over MQTT -> runtime -> window trend "
        f"({len(common)} of {len(published)} values painted; trend at 30 fps)",
        rows,
        ("path", "p50 ms", "p99 ms", "max ms"),
    )
    return results


if __name__ == "__main__":
    main()
