"""Installer benchmark: the bundle's size, and `hmi run` from the bundle to the first live frame.

    make package && make bench BENCH=package       (make bench runs under xvfb-run)
    python -m bench.package [--runs 3] [--bundle dist/hmi]

Startup is timed from starting the process to the window's log line "first live frame"
(the main window logs it once, when a configured tag is shown live): `hmi run` on a copy
of the demo project with free ports (bench/ui_startup.py's, which times the source tree's
cold start alone), with its plant, runtime and window, in a fresh data folder (cold: no
GLB verdict cache, no saved layout) and then again in the same folder (warm). The same
from the source tree (`python -m hmi run`) shows what bundling costs; the ceiling is a bare
PySide6 window (QApplication + a shown QLabel) from the venv's Python: the least any Qt
program takes here to show something. Also prints the CPU seconds the whole process tree
used by then, which load from other work on the machine does not inflate the way it does
the wall time. Starts a private Xvfb when there is no DISPLAY.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script, too

from bench.common import print_table, stop_process  # noqa: E402
from bench.ui_scene import ensure_display  # noqa: E402
from bench.ui_startup import FIRST_FRAME, demo_project  # noqa: E402

BARE_QT = (
    "import sys\n"
    "from PySide6.QtWidgets import QApplication, QLabel\n"
    "app = QApplication(sys.argv)\n"
    "label = QLabel('ready')\n"
    "label.show()\n"
    "app.processEvents()\n"
    "print('first live frame 0 s after hmi run', file=sys.stderr, flush=True)\n"
)


@dataclass
class Startup:
    wall_s: float  # from starting the process to the log line
    logged_s: float  # what the window logged (from the supervisor's start)
    cpu_s: float  # CPU time of the whole process tree by then (plant, runtime, window, probes)


def tree_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of `proc` and its descendants, including children they already reaped."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def time_to_first_frame(argv: list[str], data: Path, timeout_s: float = 90.0) -> Startup:
    """One start of `argv` in the data folder `data`, until its first live frame."""
    env = dict(os.environ, HMI_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
    lines: queue.Queue[str] = queue.Queue()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tree = psutil.Process(proc.pid)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:  # read to the end, so no child blocks on a full pipe
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = started + timeout_s
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.perf_counter(), 0.01))
            except queue.Empty:
                tail = "".join(seen[-15:])
                raise SystemExit(f"no first live frame within {timeout_s:g} s from {' '.join(argv)}:\n{tail}") from None
            seen.append(line)
            match = FIRST_FRAME.search(line)
            if match:
                wall = time.perf_counter() - started
                return Startup(wall, float(match.group(1)), tree_cpu_s(tree))
    finally:
        stop_process(proc, 20)
        reader.join(5)


def startup_runs(variants: dict[str, list[str]], runs: int) -> dict[str, tuple[Startup, Startup]]:
    """Per variant (cold start, median warm start). The variants take turns, run by run, so
    load from other processes on the machine falls on all of them alike."""
    folders = {name: Path(tempfile.mkdtemp(prefix="hmi-bench-data-")) for name in variants}
    results: dict[str, list[Startup]] = {name: [] for name in variants}
    try:
        for _ in range(max(runs, 2)):
            for name, argv in variants.items():
                results[name].append(time_to_first_frame(argv, folders[name]))
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
    out = {}
    for name, starts in results.items():
        warm = sorted(starts[1:], key=lambda s: s.wall_s)
        out[name] = (starts[0], warm[len(warm) // 2])
    return out


def folder_mb(folder: Path) -> float:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink()) / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bundle size and startup to the first live frame")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant: one cold, the rest warm (default 3)")
    parser.add_argument("--bundle", default=str(REPO / "dist" / "hmi"), help="the one-folder bundle (default dist/hmi)")
    args = parser.parse_args(argv if argv is not None else [])
    bundle = Path(args.bundle)
    exe = bundle / ("hmi.exe" if sys.platform == "win32" else "hmi")
    if not exe.is_file():
        print(f"\nInstaller: no bundle at {bundle}: run `make package` first")
        return
    ensure_display(until_exit=True)  # this process only starts the clients

    internal = bundle / "_internal"
    parts = {name: folder_mb(internal / name) for name in ("vtkmodules", "PySide6", "numpy.libs")}
    total = folder_mb(bundle)
    archives = sorted((bundle.parent).glob("hmi-*-linux-*.tar.gz"))
    size_rows = [(name, f"{mb:.0f}") for name, mb in parts.items()]
    size_rows.append(("everything else", f"{total - sum(parts.values()):.0f}"))
    size_rows.append(("bundle (dist/hmi), limit 450", f"{total:.0f}"))
    if archives:
        size_rows.append((f"{archives[-1].name}, limit 200", f"{archives[-1].stat().st_size / 1e6:.0f}"))
    print_table("Installer: bundle size (MB)", size_rows, ("part", "MB"))

    with tempfile.TemporaryDirectory(prefix="hmi-bench-project-") as folder:
        project = str(demo_project(Path(folder)))
        variants = {
            "bundle: hmi run": [str(exe), "run", "--project", project],
            "source: python -m hmi run": [sys.executable, "-m", "hmi", "run", "--project", project],
            "ceiling: bare PySide6 window": [sys.executable, "-c", BARE_QT],
        }
        results = startup_runs(variants, args.runs)
    ceiling = results["ceiling: bare PySide6 window"][1].wall_s
    rows = []
    for name, (cold, warm) in results.items():
        ceiling_row = name.startswith("ceiling")
        rows.append(
            (
                name,
                f"{cold.wall_s:.2f}",
                f"{warm.wall_s:.2f}",
                "-" if ceiling_row else f"{warm.logged_s:.2f}",
                f"{warm.cpu_s:.1f}",
                f"{warm.wall_s / ceiling:.0f}x",
            )
        )
    print_table(
        f"Installer: start to first live frame (s; warm: median of {max(args.runs, 2) - 1} runs; target < 5 s)",
        rows,
        ("variant", "cold", "warm", "window's log", "CPU s (warm)", "vs ceiling"),
    )
    bundle, source = results["bundle: hmi run"][1], results["source: python -m hmi run"][1]
    print(f"  bundle / source (warm): {bundle.wall_s / source.wall_s:.2f} wall, {bundle.cpu_s / source.cpu_s:.2f} CPU")
    print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main(sys.argv[1:])
