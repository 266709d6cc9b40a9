"""Take a screenshot of the app on the demo plant: `python tools/screenshot.py OUT.png [SECONDS]`.

Starts the demo plant (10x speed, so the trends show a few machine cycles) and a headless
runtime on free ports, then a window that saves a screenshot after SECONDS and exits.
Needs a display: run it under Xvfb (`xvfb-run -s "-screen 0 1600x1000x24" ...`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/screenshot.png").resolve()
    seconds = sys.argv[2] if len(sys.argv) > 2 else "40"
    opcua, stream, requests = free_port(), free_port(), free_port()
    text = (REPO / "config" / "demo.toml").read_text(encoding="utf-8").replace("48400", str(opcua))
    text += f"\n[runtime]\nstream_port = {stream}\nrequest_port = {requests}\n"
    with tempfile.TemporaryDirectory() as tmp:
        # A fresh data folder: no saved layout, alarm state or history from earlier runs.
        os.environ["HMI_DATA_DIR"] = str(Path(tmp) / "data")
        project = Path(tmp) / "demo.toml"
        project.write_text(text, encoding="utf-8")
        hmi = [sys.executable, "-m", "hmi"]
        # Ten times real time, with a pump fault so the picture shows an alarm and an advisory.
        sim = subprocess.Popen(
            [*hmi, "sim", "--opcua-port", str(opcua), "--speed", "10", "--fault", "pump01.cavitation@150s"], cwd=REPO
        )
        runtime = subprocess.Popen([*hmi, "run", "--project", str(project), "--headless"], cwd=REPO)
        try:
            time.sleep(1.0)
            window = subprocess.run(
                [
                    *hmi,
                    "window",
                    "--project",
                    str(project),
                    "--machine",
                    "pump01",
                    "--screenshot",
                    str(out),
                    "--exit-after",
                    seconds,
                ],
                cwd=REPO,
            )
            return window.returncode
        finally:
            for proc in (runtime, sim):
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
