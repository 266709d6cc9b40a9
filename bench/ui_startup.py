"""Start-up: from `hmi run` to the first live frame (a GOOD value of the plant on screen),
with the demo plant embedded, a fresh data folder each run (no saved layout, no cached
model verdicts) and free ports. The window logs the moment; we read it. Needs Xvfb."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_table
from hmi.supervisor import free_tcp_port

RUNS = 3
REPO = Path(__file__).resolve().parent.parent
FIRST_FRAME = re.compile(r"first live frame ([0-9.]+) s after hmi run")


def demo_project(folder: Path) -> Path:
    """A copy of the demo project in `folder`, its plant and runtime on free ports (its
    models are found through the installation's config/ folder)."""
    opcua, stream, requests = free_tcp_port(), free_tcp_port(), free_tcp_port()
    text = (REPO / "config" / "demo.toml").read_text(encoding="utf-8").replace("48400", str(opcua))
    text += f"\n[runtime]\nstream_port = {stream}\nrequest_port = {requests}\n"
    project = folder / "demo.toml"
    project.write_text(text, encoding="utf-8")
    return project


def one_run() -> float | None:
    with tempfile.TemporaryDirectory(prefix="hmi-startup-") as tmp:
        project = demo_project(Path(tmp))
        env = dict(os.environ, HMI_DATA_DIR=str(Path(tmp) / "data"), PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hmi", "run", "--project", str(project)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        found = None
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                match = FIRST_FRAME.search(line)
                if match:
                    found = float(match.group(1))
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        return found


def main() -> dict[str, float]:
    if not os.environ.get("DISPLAY"):
        print("\nStart-up: skipped, no display (run under xvfb-run, as `make bench` does)")
        return {}
    times = [t for t in (one_run() for _ in range(RUNS)) if t is not None]
    if not times:
        print("\nStart-up: the window never reported a live frame")
        return {}
    print_table(
        "Start-up: `hmi run` on the demo plant (embedded plant, runtime, window) to the first live frame",
        [(f"run {i + 1}", f"{t:.2f}") for i, t in enumerate(times)] + [("best", f"{min(times):.2f}")],
        ("run", "seconds"),
    )
    return {"startup_s": min(times)}


if __name__ == "__main__":
    main()
