"""Installer benchmark: the bundle's size, and `hmi run` from the bundle to the first live frame.

    make package && make bench BENCH=package       (make bench runs under xvfb-run)
    python -m bench.package [--runs 3] [--bundle dist/hmi]

Startup is timed from starting the process to the window's log line "first live frame"
(the main window logs it once, when a configured tag is shown live): `hmi run` on a copy
of the demo project (free ports), with its plant, runtime and window, in a fresh data
folder (cold: no GLB verdict cache, no saved layout) and then again in the same folder
(warm). The same from the source tree (`python -m hmi run`) shows what bundling costs or
saves; the ceiling is a bare PySide6 window (QApplication + a shown QLabel) from the
venv's Python: the least any Qt program takes here to show something. Starts a private
Xvfb when there is no DISPLAY.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script, too

from bench.common import print_table  # noqa: E402
from bench.ui_scene import ensure_display  # noqa: E402

FIRST_FRAME = re.compile(r"first live frame ([\d.]+) s after")
BARE_QT = (
    "import sys\n"
    "from PySide6.QtWidgets import QApplication, QLabel\n"
    "app = QApplication(sys.argv)\n"
    "label = QLabel('ready')\n"
    "label.show()\n"
    "app.processEvents()\n"
    "print('first live frame 0 s after start', file=sys.stderr, flush=True)\n"
)


def free_port() -> int:
    from hmi.supervisor import free_tcp_port

    return free_tcp_port()


def demo_project_copy(folder: Path) -> Path:
    """The demo project with its plant and runtime on free ports (its models are found
    through the installation's config/ folder)."""
    text = (REPO / "config" / "demo.toml").read_text(encoding="utf-8").replace("48400", str(free_port()))
    text += f"\n[runtime]\nstream_port = {free_port()}\nrequest_port = {free_port()}\n"
    path = folder / "project.toml"
    path.write_text(text, encoding="utf-8")
    return path


def time_to_first_frame(argv: list[str], data: Path, timeout_s: float = 90.0) -> tuple[float, float | None]:
    """(seconds from start to the log line, seconds the window itself logged) for one run."""
    env = dict(os.environ, HMI_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
    lines: queue.Queue[str] = queue.Queue()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

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
                return time.perf_counter() - started, float(match.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)


def startup_runs(argv: list[str], runs: int) -> tuple[float, float, float | None]:
    """(cold, median warm, the window's own figure for the median warm run)."""
    data = Path(tempfile.mkdtemp(prefix="hmi-bench-data-"))
    try:
        cold, _ = time_to_first_frame(argv, data)
        warm = [time_to_first_frame(argv, data) for _ in range(max(runs - 1, 1))]
    finally:
        shutil.rmtree(data, ignore_errors=True)
    warm.sort()
    wall, logged = warm[len(warm) // 2]
    return cold, wall, logged


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
    ensure_display()

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
        project = str(demo_project_copy(Path(folder)))
        bare = startup_runs([sys.executable, "-c", BARE_QT], args.runs)
        frozen = startup_runs([str(exe), "run", "--project", project], args.runs)
        source = startup_runs([sys.executable, "-m", "hmi", "run", "--project", project], args.runs)
    rows = []
    for name, (cold, warm, logged) in (
        ("bundle: hmi run", frozen),
        ("source: python -m hmi run", source),
        ("ceiling: bare PySide6 window", bare),
    ):
        shown = f"{logged:.2f}" if logged and name != "ceiling: bare PySide6 window" else "-"
        rows.append((name, f"{cold:.2f}", f"{warm:.2f}", shown, f"{warm / bare[1]:.1f}x"))
    print_table(
        f"Installer: start to first live frame (s; median of {max(args.runs - 1, 1)} warm runs, target < 5 s)",
        rows,
        ("variant", "cold", "warm", "window's log", "vs ceiling"),
    )
    print(f"  bundle / source (warm): {frozen[1] / source[1]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
