"""The window's own CPU on the demo plant: `hmi run` on a copy of the demo project (embedded
plant, runtime, window) on a private 1920x1080 Xvfb with software OpenGL, then the window
process's CPU time (utime + stime, all its threads) over a measuring interval, per scenario:

- default layout, the 3D view on cnc01 (its spindle turns: continuous motion);
- default layout, the 3D view on robot01 (joints follow the plant's 10 Hz values);
- the 3D view hidden (View > 3D view off).

CPU time, not wall-clock load: other work on the machine slows the window but does not add to
its CPU time. Per thread: the Qt main thread, Mesa's llvmpipe threads (the 3D view's
rasterising) and the rest (IPC client, loaders). With --profile, py-spy samples the main thread
of each scenario and the share of its samples is split by component (3D, trends, tiles, tag
table, IPC/bus, alarms, Qt event loop/other).

    python -m bench ui_cpu                     # 60 s per scenario (BENCH_CPU_S overrides)
    python -m bench.ui_cpu --seconds 15 --profile
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.common import print_table
from bench.ui_startup import demo_project

REPO = Path(__file__).resolve().parent.parent
SCREEN = "1920x1080x24"
WARM_UP_S = 12.0  # models loaded, GLB probes done, start-up objects frozen (10 s)
FIRST_FRAME = re.compile(r"first live frame")
# py-spy frames (file names) -> component; the first match from the innermost frame outwards wins.
COMPONENTS = (
    ("3D view", ("scene_view.py", "scene/animate.py", "vtkmodules")),
    ("trends", ("ui/trend", "pyqtgraph", "core/decimate.py", "core/ringbuffer.py")),
    ("tiles", ("ui/overview.py",)),
    ("tag table", ("ui/tag_table.py", "ui/tag_browser.py")),
    ("alarms", ("ui/alarm_", "ui/annunciator.py", "ui/advisory_panel.py")),
    ("IPC/bus", ("ipc/", "core/bus.py")),
    ("status bar", ("ui/main_window.py",)),
)


@dataclass
class Measure:
    name: str
    seconds: float
    cpu_pct: float  # of one core, the whole window process
    main_pct: float
    llvmpipe_pct: float
    other_pct: float
    profile: dict[str, float]  # component -> % of the main thread's samples


def start_display() -> tuple[subprocess.Popen[bytes], str]:
    """A private Xvfb at 1920x1080 (the display number it picked, through -displayfd)."""
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", SCREEN, "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        raise SystemExit("Xvfb did not start")
    return xvfb, f":{number}"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread group: main, llvmpipe, other (from /proc, threads alive now)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        group = "main" if task.name == str(pid) else "llvmpipe" if comm.startswith("llvmpipe") else "other"
        out[group] += cpu
    return out


def component_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # innermost first
        for name, needles in COMPONENTS:
            if any(n in frame for n in needles):
                return name
    return "Qt/other"


def profile(pid: int, seconds: float) -> dict[str, float]:
    """py-spy samples of the window's main thread, as % of those samples per component."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    out = Path(tempfile.mkdtemp(prefix="hmi-spy-")) / "stacks.txt"
    subprocess.run(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--format", "raw",
         "--threads", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    counts: dict[str, int] = collections.Counter()
    if not out.exists():
        return {}
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "MainThread" not in stack.split(";", 1)[0]:  # --threads puts the thread first
            continue
        counts[component_of(stack)] += int(n)
    total = sum(counts.values())
    shutil.rmtree(out.parent, ignore_errors=True)
    return {k: 100.0 * v / total for k, v in counts.most_common()} if total else {}


def measure(name: str, pid: int, seconds: float, with_profile: bool) -> Measure:
    proc = psutil.Process(pid)
    before, threads_before = proc.cpu_times(), thread_cpu(pid)
    start = time.monotonic()
    shares = profile(pid, seconds) if with_profile else {}
    time.sleep(max(0.0, seconds - (time.monotonic() - start)))
    after, threads_after = proc.cpu_times(), thread_cpu(pid)
    elapsed = time.monotonic() - start
    cpu = (after.user + after.system) - (before.user + before.system)
    per = {k: threads_after.get(k, 0.0) - threads_before.get(k, 0.0) for k in ("main", "llvmpipe", "other")}
    pct = {k: 100.0 * max(v, 0.0) / elapsed for k, v in per.items()}
    return Measure(name, elapsed, 100.0 * cpu / elapsed, pct["main"], pct["llvmpipe"], pct["other"], shares)


class Output:
    """Lines of a child's output, read on a thread so the child never blocks on a full pipe."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._event = threading.Condition()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._event:
                self.lines.append(line)
                self._event.notify_all()

    def wait_for(self, pattern: re.Pattern[str], after: int, timeout_s: float) -> int:
        """Index of the first line from `after` that matches; SystemExit on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._event:
            while True:
                for i in range(after, len(self.lines)):
                    if pattern.search(self.lines[i]):
                        return i + 1
                after = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit("timed out waiting for the window:\n" + "".join(self.lines[-20:]))
                self._event.wait(left)


def window_pid(run: psutil.Process, exclude: set[int]) -> int:
    for child in run.children(recursive=True):
        try:
            if "window" in child.cmdline() and child.pid not in exclude:
                return child.pid
        except psutil.Error:
            continue
    raise SystemExit("no window process found")


def hide_scene_setting(data: Path) -> None:
    """The operator's choice "View > 3D view" off, as the window stores it."""
    ini = data / "window.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text("[project_Demo_plant]\nscene\\visible=false\n", encoding="utf-8")


def run(seconds: float, with_profile: bool) -> list[Measure]:
    results: list[Measure] = []
    xvfb, display = start_display()
    tmp = Path(tempfile.mkdtemp(prefix="hmi-cpu-"))
    data = tmp / "data"
    project = demo_project(tmp)
    env = dict(os.environ, DISPLAY=display, LIBGL_ALWAYS_SOFTWARE="1", HMI_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
    hmi = [sys.executable, "-m", "hmi"]
    supervisor = subprocess.Popen(
        [*hmi, "run", "--project", str(project)], cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out = Output(supervisor)
    windows: list[subprocess.Popen[str]] = []
    try:
        out.wait_for(FIRST_FRAME, 0, 120)
        time.sleep(WARM_UP_S)
        first = window_pid(psutil.Process(supervisor.pid), set())
        results.append(measure("default layout, 3D on cnc01 (spindle turning)", first, seconds, with_profile))
        # Closing the window (SIGTERM) leaves plant and runtime running; our own windows follow.
        os.kill(first, signal.SIGTERM)
        psutil.Process(first).wait(20)
        for name, args, hide in (
            ("default layout, 3D on robot01 (joints follow values)", ["--machine", "robot01"], False),
            ("3D view hidden", [], True),
        ):
            if supervisor.poll() is not None:  # plant and runtime are gone with it
                raise SystemExit(f"hmi run exited ({supervisor.returncode}):\n" + "".join(out.lines[-30:]))
            if hide:
                hide_scene_setting(data)
            window = subprocess.Popen(
                [*hmi, "window", "--project", str(project), *args], cwd=REPO, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            windows.append(window)
            Output(window).wait_for(FIRST_FRAME, 0, 120)
            time.sleep(WARM_UP_S)
            results.append(measure(name, window.pid, seconds, with_profile))
            window.terminate()
            window.wait(20)
    finally:
        for proc in [*windows, supervisor]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        xvfb.terminate()
        xvfb.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="the window's CPU on the demo plant")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_CPU_S", "60")))
    parser.add_argument("--profile", action="store_true", help="py-spy the main thread, per component")
    args = parser.parse_args(argv if argv is not None else [])
    if not shutil.which("Xvfb"):
        print("\nWindow CPU: skipped, Xvfb is not installed")
        return {}
    results = run(args.seconds, args.profile)
    print_table(
        f"Window CPU on the demo plant, 1920x1080, software OpenGL, {args.seconds:g} s each (% of one core)",
        [
            (m.name, f"{m.cpu_pct:.1f}", f"{m.main_pct:.1f}", f"{m.llvmpipe_pct:.1f}", f"{m.other_pct:.1f}")
            for m in results
        ],
        ("scenario", "window", "main thread", "llvmpipe", "other threads"),
    )
    for m in results:
        if m.profile:
            print_table(
                f"Main thread by component (py-spy samples): {m.name}",
                [(k, f"{v:.0f} %") for k, v in m.profile.items()],
                ("component", "share"),
            )
    return {f"cpu_{i}": m.cpu_pct for i, m in enumerate(results)}


if __name__ == "__main__":
    main(sys.argv[1:])
