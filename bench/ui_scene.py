"""3D view benchmark: SceneView's frame rate with bindings animating, against a bare VTK
render loop of the same model in the same run, and what the probe import costs.

    python -m bench ui_scene            (make bench runs it under xvfb-run)
    python -m bench.ui_scene [--rounds 5] [--slice 1] [--size 1280x800] [--models cnc_mill,...]

Starts a private Xvfb when there is no DISPLAY. Prints one table; the ratio column is the
ratio of SceneView to a bare VTK loop moving the same parts through the same poses (target
>= 90 %), measured two ways: "frame ratio" takes bare and view frames turn about (robust
against a shared machine's drifting load), "slice ratio" compares alternating one-second
slices of each (fps columns). "vs orbit" compares with a bare loop that orbits the camera
over still parts instead.
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script, too
POSES = 120  # precomputed poses the bare loop cycles through
MODELS = ("cnc_mill", "robot_arm", "conveyor", "pump", "cmm")
# The movable parts of each demo model: every one is bound, so the view moves them all.
PARTS = {
    "cnc_mill": ["AxisX", "AxisY", "AxisZ", "SpindleHead", "Spindle"],
    "robot_arm": ["Joint1", "Joint2", "Joint3", "Joint4", "Joint5", "Joint6"],
    "conveyor": ["Items", "BeltCleats"] + [f"Roller{i}" for i in range(1, 10)],
    "pump": ["Impeller", "Coupling", "Motor"],
    "cmm": ["Bridge", "Carriage", "Quill", "Probe"],
}


def ensure_display(until_exit: bool = False) -> None:
    """Use $DISPLAY, or start a private Xvfb (24-bit, room for 1280x800).

    By default it runs with -terminate and ends when this process's last X connection
    closes: stopping it while Qt is still connected would make Xlib exit the process with
    status 1. A benchmark whose own process never connects (it only starts clients, such as
    bench/package.py) passes `until_exit=True`: the server then stays up until this process
    exits (with -terminate the first client's exit would end it for all later runs)."""
    if os.environ.get("DISPLAY"):
        return
    if shutil.which("Xvfb") is None:
        raise SystemExit("no DISPLAY and no Xvfb: install xvfb (tools/install-system-deps.sh --test)")
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1920x1200x24", "-nolisten", "tcp"]
        + ([] if until_exit else ["-terminate"]),
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        os.environ["DISPLAY"] = f":{pipe.readline().strip()}"
    if until_exit:
        atexit.register(server.terminate)


class ModelBench:
    """One demo model shown twice: in a plain vtkRenderWindow (the ceiling) and in a
    SceneView with every movable part bound. Both stay open and are measured in
    alternating slices, so load from other processes hits both alike."""

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
        from PySide6.QtWidgets import QApplication
        from vtkmodules.vtkRenderingCore import vtkLightKit, vtkRenderer, vtkRenderWindow

        from hmi.config.bindings import BindingConfig
        from hmi.core.bus import TagBus
        from hmi.core.samples import SampleBatch
        from hmi.core.tags import TagSpec
        from hmi.scene.probe import VerdictCache
        from hmi.scene.validate import validate_file
        from hmi.ui.scene_loader import import_glb
        from hmi.ui.scene_view import SceneView

        self.app = QApplication.instance() or QApplication([])
        checked = validate_file(path)
        assert checked.data is not None and checked.report.summary is not None
        self.triangles = checked.report.summary.triangles
        # The bare loop: importer, renderer, lights, window; framed like SceneView's "Iso".
        self.renderer = vtkRenderer()
        bare_model = import_glb(checked.data, self.renderer, checked.report.summary)
        vtkLightKit().AddLightsToRenderer(self.renderer)
        self.window = vtkRenderWindow()
        self.window.SetSize(*size)
        self.window.SetMultiSamples(0)
        self.window.AddRenderer(self.renderer)
        self.camera = self.renderer.GetActiveCamera()
        self.camera.SetPosition(1.0, 0.75, 1.3)
        self.camera.SetFocalPoint(0.0, 0.0, 0.0)
        self.camera.SetViewUp(0.0, 1.0, 0.0)
        self.renderer.ResetCamera()
        # The view: every movable part rotated by its own tag, one part labelled and in alarm.
        parts = PARTS[path.stem]
        self.bus = TagBus()
        self.bus.register([TagSpec(f"bench.{p.lower()}", "°") for p in parts])
        bindings = [
            BindingConfig(machine="bench", node=p, rotate={"tag": f"bench.{p.lower()}", "axis": "z"}) for p in parts
        ]
        bindings.append(
            BindingConfig(machine="bench", node=parts[0], alarm_colour=True, label={"tag": f"bench.{parts[0].lower()}"})
        )
        self.bound = len(parts)
        self.folder = tempfile.TemporaryDirectory()
        self.view = SceneView(self.bus, max_fps=1000, cache=VerdictCache(Path(self.folder.name) / "cache.json"))
        self.view.set_motion_fps(1000)  # uncapped: what a frame costs, not the product's 10 fps motion cap
        self.view.resize(*size)
        self.view.show()
        self.view.add_machine("bench", path, bindings)
        deadline = time.monotonic() + 60
        while self.view.status("bench")[0] == "loading" and time.monotonic() < deadline:
            self.app.processEvents()
            time.sleep(0.005)
        scene = self.view._machines["bench"]
        self.actors = scene.imported.actor_count if scene.imported else 0
        self._prepare_bare_poses(scene.animator, bare_model, [f"bench.{p.lower()}" for p in parts])
        self.view.set_alarm_state("bench", "high")
        ids = [self.bus.registry.id_of(f"bench.{p.lower()}") for p in parts]
        started = time.monotonic()

        def publish() -> None:
            t = time.monotonic() - started
            values = [20.0 * math.sin(t * 1.3 + i) for i in range(len(ids))]
            self.bus.publish(SampleBatch.from_arrays(ids, time.time_ns(), values))

        self.publish = publish
        self.publishing = False
        # New values once per drawn frame, right after it: every frame sees every tag changed,
        # and the bench's data source costs the UI thread what the IPC thread's would (one
        # batch per frame), not a publish on every pass of the event loop.
        self.view.render_window.AddObserver("EndEvent", lambda *_: self.publishing and publish())
        for _ in range(5):  # shaders compiled, buffers uploaded
            self.window.Render()
            self.app.processEvents()

    def _prepare_bare_poses(self, animator: Any, bare_model: Any, tags: list[str]) -> None:
        """The same motion as the view shows, computed ahead by the view's own animator, for
        a bare loop that only copies matrices into the actors and renders: what VTK itself
        costs to show the moving parts, without tags, bindings or labels."""
        from vtkmodules.vtkCommonMath import vtkMatrix4x4

        from hmi.core.quality import Quality
        from hmi.scene.animate import Reading

        self.bare_matrices: dict[int, Any] = {}
        for node in animator.moving_nodes:
            node_actors = bare_model.node_actors.get(node, [])
            if node_actors:
                matrix = vtkMatrix4x4()
                for actor in node_actors:
                    actor.SetUserMatrix(matrix)
                self.bare_matrices[node] = matrix
        self.poses: list[list[tuple[Any, list[float]]]] = []
        for k in range(POSES):
            t = k / 60.0
            readings = {tag: Reading(20.0 * math.sin(t * 1.3 + i), Quality.GOOD) for i, tag in enumerate(tags)}
            frame = animator.step(readings, t)
            self.poses.append(
                [(self.bare_matrices[n], w.ravel().tolist()) for n, w in frame.world.items() if n in self.bare_matrices]
            )

    def parts_slice(self, seconds: float) -> float:
        """The ceiling: the bare window, the same parts moving each frame, camera still."""
        self.view._timer.stop()
        frames = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self._bare_parts_frame(frames)
            frames += 1
        return frames / (time.perf_counter() - start)

    def _bare_parts_frame(self, k: int) -> None:
        """Pose k of the precomputed motion into the bare window's matrices, then render."""
        for matrix, values in self.poses[k % POSES]:
            matrix.DeepCopy(values)
            matrix.Modified()
        self.renderer.ResetCameraClippingRange()
        self.window.Render()

    def interleaved_ratio(self, frames: int = 100) -> float:
        """Bare frames and view frames taken turn about, one each, timed separately: the
        ratio of their total times. Immune to the drift of a shared machine's load, which
        moves whole one-second slices by +-10 %. A view frame is timed from the end of the
        bare frame until the view has drawn, so it includes Qt's event loop and the view's
        timer, tag reading, bindings and labels."""
        self.publishing = True
        self.publish()
        self.view._timer.start()
        self.app.processEvents()
        bare_s = view_s = 0.0
        for k in range(frames):
            start = time.perf_counter()
            self._bare_parts_frame(k)
            middle = time.perf_counter()
            bare_s += middle - start
            renders = self.view.renders
            while self.view.renders == renders:
                self.app.processEvents()
            view_s += time.perf_counter() - middle
        self.view._timer.stop()
        self.publishing = False
        return bare_s / view_s

    def orbit_slice(self, seconds: float) -> float:
        """A second reference: the bare window with the camera orbiting, parts still."""
        self.view._timer.stop()
        frames = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.camera.Azimuth(0.5)  # a bare loop that still changes something each frame
            self.renderer.ResetCameraClippingRange()
            self.window.Render()
            frames += 1
        return frames / (time.perf_counter() - start)

    def view_slice(self, seconds: float) -> float:
        self.publishing = True
        self.publish()
        self.view._timer.start()
        self.app.processEvents()
        renders = self.view.renders
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.app.processEvents()
        fps = (self.view.renders - renders) / (time.perf_counter() - start)
        self.publishing = False
        return fps

    def binding_cost_ms(self, frames: int = 300) -> float:
        """The view's own work per frame without the render: read the bound tags, step the
        animation, set matrices, colours and labels (median ms). Immune to other load."""
        scene = self.view._machines["bench"]
        self.view._timer.stop()
        times = []
        for _ in range(frames):
            self.publish()  # new values, as a frame would see them
            start = time.perf_counter()
            self.view._update_scene(scene)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    def close(self) -> None:
        from PySide6.QtCore import QCoreApplication, QEvent

        self.window.Finalize()
        self.view.shutdown()
        self.view.close()
        self.view.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        self.folder.cleanup()


def measure_probe(path: Path, runs: int = 3) -> tuple[float, float, float]:
    """(validate ms, probe import s (median of runs), cached check ms)."""
    from hmi.scene.probe import VerdictCache, check_model, run_probe
    from hmi.scene.validate import validate_file

    start = time.perf_counter()
    checked = validate_file(path)
    validate_ms = (time.perf_counter() - start) * 1000
    assert checked.data is not None
    probe_s = statistics.median(run_probe(checked.data).seconds for _ in range(runs))
    with tempfile.TemporaryDirectory() as folder:
        cache = VerdictCache(Path(folder) / "cache.json")
        check_model(path, cache)
        start = time.perf_counter()
        check = check_model(path, cache)
        cached_ms = (time.perf_counter() - start) * 1000
        assert check.probe is not None and check.probe.cached
    return validate_ms, probe_s, cached_ms


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run under `python -m bench` (no arguments) or `python -m bench.ui_scene [options]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.ui_scene", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare/view slices per model")
    parser.add_argument("--slice", type=float, default=1.0, help="seconds per slice")
    parser.add_argument("--size", default="1280x800", help="render size WxH")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated demo models")
    args = parser.parse_args(argv or [])
    width, height = (int(v) for v in args.size.split("x"))
    ensure_display()
    from PySide6.QtWidgets import QApplication

    from bench.common import print_table

    app = QApplication.instance() or QApplication([])  # holds the X connection for the whole run
    assert app is not None
    rows, figures = [], {}
    for name in args.models.split(","):
        path = REPO / "models_glb" / f"{name}.glb"
        bench = ModelBench(path, (width, height))
        bare, view, orbit, ratios, orbit_ratios = [], [], [], [], []
        interleaved = [bench.interleaved_ratio() for _ in range(args.rounds)]
        for _ in range(args.rounds):
            b = bench.parts_slice(args.slice)
            v = bench.view_slice(args.slice)
            o = bench.orbit_slice(args.slice)
            bare.append(b)
            view.append(v)
            orbit.append(o)
            ratios.append(v / b)
            orbit_ratios.append(v / o)
        binding_ms = bench.binding_cost_ms()
        bench.close()
        validate_ms, probe_s, cached_ms = measure_probe(path)
        ratio = statistics.median(ratios)
        figures.update({f"{name}.bare_fps": statistics.median(bare), f"{name}.view_fps": statistics.median(view)})
        figures.update({f"{name}.ratio": ratio, f"{name}.probe_s": probe_s, f"{name}.binding_ms": binding_ms})
        figures[f"{name}.orbit_ratio"] = statistics.median(orbit_ratios)
        figures[f"{name}.interleaved_ratio"] = statistics.median(interleaved)
        rows.append(
            (
                name,
                str(bench.triangles),
                str(bench.actors),
                str(bench.bound),
                f"{statistics.median(bare):.1f}",
                f"{statistics.median(view):.1f}",
                f"{statistics.median(interleaved):.0%}",
                f"{ratio:.0%}",
                f"{statistics.median(orbit):.1f}",
                f"{statistics.median(orbit_ratios):.0%}",
                f"{binding_ms:.2f}",
                f"{validate_ms:.1f}",
                f"{probe_s:.2f}",
                f"{cached_ms:.1f}",
            )
        )
    print_table(
        f"3D view at {width}x{height}: SceneView uncapped, every movable part bound and changing every frame, "
        f"beside a bare VTK loop moving the same parts (target >= 90 %) and one orbiting the camera; "
        f"'frame ratio': 100 frames each taken turn about, median of {args.rounds}; fps and 'slice ratio': "
        f"medians of {args.rounds} rounds of alternating {args.slice:g} s slices",
        rows,
        ("model", "tris", "actors", "bound", "bare VTK fps", "SceneView fps", "frame ratio", "slice ratio",
         "orbit fps", "vs orbit",
         "bindings ms/frame", "validate ms", "probe s", "cached ms"),
    )  # fmt: skip
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
