"""Start-up: from `hmi run` to the first live frame (a GOOD value of the plant on screen),
with the demo plant embedded, a fresh data folder each run (no saved layout, no cached
model verdicts, no certificate) and free ports. The window logs the moment; we read it.
Beside the wall time, the CPU seconds each process had used by then (the GLB probes are the
window's children): on a shared 2-core machine the wall time follows the load, the CPU
seconds much less. Needs Xvfb."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.common import print_table, stop_process
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


@dataclass
class Start:
    seconds: float
    cpu: dict[str, float]  # process role -> CPU seconds at the first live frame


def role(proc: psutil.Process) -> str:
    args = proc.cmdline()
    if "sim" in args:
        return "plant"
    if "--headless" in args:
        return "runtime"
    if "window" in args:
        return "window"
    return "probe" if "scene_probe" in " ".join(args) or "--probe-child" in args else "supervisor"


def tree_cpu(proc: psutil.Process) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            name = role(p)
        except psutil.Error:
            continue
        own = t.user + t.system
        out[name] = out.get(name, 0.0) + own
        if name == "window":  # probes it has finished with
            out["probes"] = out.get("probes", 0.0) + t.children_user + t.children_system
    if "probe" in out:
        out["probes"] = out.get("probes", 0.0) + out.pop("probe")
    return out


def one_run() -> Start | None:
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
        found: Start | None = None
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                match = FIRST_FRAME.search(line)
                if match:
                    found = Start(float(match.group(1)), tree_cpu(psutil.Process(proc.pid)))
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            stop_process(proc, 20)
        return found


def main() -> dict[str, float]:
    if not os.environ.get("DISPLAY"):
        print("\nStart-up: skipped, no display (run under xvfb-run, as `make bench` does)")
        return {}
    starts = [t for t in (one_run() for _ in range(RUNS)) if t is not None]
    if not starts:
        print("\nStart-up: the window never reported a live frame")
        return {}
    roles = ("supervisor", "plant", "runtime", "window", "probes")
    print_table(
        "Start-up: `hmi run` on the demo plant (embedded plant, runtime, window) to the first live frame",
        [
            (
                f"run {i + 1}",
                f"{t.seconds:.2f}",
                *(f"{t.cpu.get(r, 0.0):.2f}" for r in roles),
                f"{sum(t.cpu.values()):.1f}",
            )
            for i, t in enumerate(starts)
        ]
        + [("best", f"{min(t.seconds for t in starts):.2f}", *([""] * len(roles)), "")],
        ("run", "seconds", *(f"{r} CPU-s" for r in roles), "total CPU-s"),
    )
    return {"startup_s": min(t.seconds for t in starts)}


if __name__ == "__main__":
    main()
