"""SceneView: the 3D machine view. VTK in Qt, animated by bound tag values.

    view = SceneView(bus)                       # a TagBus: latest values via bus.latest(tag)
    view.add_machine("cnc01", Path("models_glb/cnc_mill.glb"), bindings, cameras, "CNC mill 1")
    view.show_machine("cnc01")
    view.set_alarms("pump01", {"pump01.bearing_temperature": Priority.HIGH})  # {} when they clear
    view.part_picked.connect(on_part)           # (machine, node name, [tags])

Loading: every model file is validated (hmi.scene.validate) and probe-imported in a child
process (hmi.scene.probe, verdict cached per file hash) on a worker thread; only then does
the GUI thread import the same bytes with vtkGLTFImporter. A missing, invalid, unsupported
or crashing model shows a readable message and a placeholder box; nothing else breaks.

Alarm colour goes to the part that shows the alarming tag: each part bound (any action)
to a tag with an active alarm takes that priority's colour, the worst if several, with its
children; an alarm on a tag no part is bound to colours the machine's main part (the
binding with alarm_colour = true) instead. Nothing else of the model changes colour.

Painting: a frame timer (max_fps, default 30) drives the view; it renders only when a
value, the alarm state or the camera changed, or something moves continuously (rpm, speeds,
shake), and never while hidden or minimised. Motion (values and continuous motion) is read
and drawn at most motion_fps times a second (default 5, the operator's View menu lowers or
raises it); camera moves, expose events and alarm colours draw on the next tick. Mouse
interaction marks the view dirty instead of rendering at once, so the cap holds for the camera too.

Threads: everything here runs on the GUI thread except `_check_worker`, which runs on the
loader's single worker thread and hands its result over through the `_checked` signal.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import vtkmodules.vtkRenderingFreeType  # registers text rendering
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL back end)
from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QHideEvent, QImage, QShowEvent
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkCommand
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkFiltersSources import vtkCubeSource
from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkCellPicker,
    vtkCoordinate,
    vtkLightKit,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkTextActor,
    vtkWindowToImageFilter,
)

from hmi.config.bindings import BindingConfig, CameraPresetConfig
from hmi.core.alarms.model import Priority
from hmi.core.bus import TagBus
from hmi.core.quality import Quality
from hmi.core.tags import DataType
from hmi.scene.animate import ALARM_PRIORITIES, MAX_STEP_S, Frame, LabelState, MachineAnimator, Reading
from hmi.scene.probe import ModelCheck, VerdictCache, check_model
from hmi.ui import theme
from hmi.ui.format import format_tag_value, format_value
from hmi.ui.scene_loader import ImportedModel, import_glb

log = logging.getLogger(__name__)

DEFAULT_MAX_FPS = 30.0  # camera moves, alarm colours, expose
# Motion (bound values, turning spindles) draws at most this often: on software OpenGL each
# frame of the default layout's view costs about 15 ms of CPU, so 30 fps of a spindle took
# about half a core by itself (docs/performance.md, bench ui_cpu). The operator may lower it.
# Five a second: a control room's 3D view is for seeing where things are, and each frame is
# rasterised in software on most control-room PCs (llvmpipe: about 2 % of a core per fps).
DEFAULT_MOTION_FPS = 5.0
MOTION_FPS_CHOICES = (30.0, 20.0, 10.0, 5.0, 2.0)
LABEL_TEXT_HZ = 5.0  # a value label readable by a person changes a few times a second, not 30
LABEL_OFFSET_PX = 10
KEY_LIGHT_INTENSITY = 2.2  # glTF materials are PBR; without image-based light they need more light
PRESET_DIRECTIONS = {  # world is Y up; the demo models face +Z
    "Iso": (1.0, 0.75, 1.3),
    "Front": (0.0, 0.12, 1.0),
    "Side": (1.0, 0.12, 0.0),
    "Top": (0.0, 1.0, 0.001),
}
ALARM_COLOURS = {Priority(value).label: colour for value, colour in theme.ALARM_COLOURS.items()}
CLICK_SLOP_PX = 4
# The depth range comes from the visible parts' bounds, padded so that moving parts stay
# inside between refreshes: walking every actor's bounds each frame was 2 % of a frame.
CLIP_REFRESH_S = 0.5
CLIP_PAD = 0.25  # of the bounds' diagonal, on each side


def _priority_label(priority: Priority | str | None, machine: str) -> str | None:
    if isinstance(priority, Priority):
        return priority.label
    if priority is not None and priority not in ALARM_PRIORITIES:
        log.warning("unknown alarm priority %r for %s; shown as high", priority, machine)
        return "high"
    return priority


def _rank(label: str | None) -> int:
    """0 for none, then low 1 … urgent 4."""
    return 0 if label is None else int(Priority.parse(label))


def _rgb(colour: str) -> tuple[float, float, float]:
    c = colour.lstrip("#")
    return (int(c[0:2], 16) / 255.0, int(c[2:4], 16) / 255.0, int(c[4:6], 16) / 255.0)


@dataclass(frozen=True, slots=True)
class CameraPreset:
    name: str
    position: tuple[float, float, float] | None = None  # None: fit the model along `direction`
    focal_point: tuple[float, float, float] | None = None
    view_up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    view_angle: float = 30.0
    direction: tuple[float, float, float] | None = None


@dataclass
class _Machine:
    """One machine's scene: its own renderer, swapped into the window when shown."""

    machine: str
    label: str
    model_path: Path | None
    bindings: list[BindingConfig]
    renderer: vtkRenderer
    generation: int
    state: str = "loading"  # loading | ready | failed | empty
    message: str = ""
    check: ModelCheck | None = None
    imported: ImportedModel | None = None
    animator: MachineAnimator | None = None
    presets: dict[str, CameraPreset] = field(default_factory=dict)
    alarm: str | None = None  # the main part's priority (set_alarm_state)
    alarm_tags: dict[str, str] = field(default_factory=dict)  # alarming tag -> priority label (set_alarms)
    alarm_parts: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # node -> alarm rgb
    alarm_cleared: list[int] = field(default_factory=list)  # parts whose alarm colour goes at the next step
    main_alarm: str | None = None  # what the main part shows: unbound tags' alarms, or set_alarm_state
    style_dirty: bool = True  # alarm changed, or first frame
    continuous: bool = False
    stepped_at: float = math.nan  # the motion clock at the last animation step
    readings: dict[str, Reading] = field(default_factory=dict)
    raw: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    tag_ids: dict[str, int] = field(default_factory=dict)
    node_matrices: dict[int, vtkMatrix4x4] = field(default_factory=dict)
    original_colours: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # id(actor) -> rgb
    applied_colours: dict[int, tuple[float, float, float] | None] = field(default_factory=dict)
    applied_visible: dict[int, bool] = field(default_factory=dict)
    labels: dict[int, vtkTextActor] = field(default_factory=dict)  # 2D overlay: never hidden by the model
    label_anchors: dict[int, vtkCoordinate] = field(default_factory=dict)
    label_text_due: float = 0.0  # label texts change at most LABEL_TEXT_HZ times a second
    label_pending: bool = False  # a newer value waits for the next text refresh
    actor_node: dict[int, int] = field(default_factory=dict)  # id(actor) -> glTF node
    overlay: vtkTextActor | None = None  # loading text, or the failure's title
    message_actor: vtkTextActor | None = None  # the failure's explanation
    status: vtkTextActor | None = None  # parts left out and binding problems, bottom left
    pick: vtkTextActor | None = None  # picked part and its tags, top left
    picked_node: int | None = None
    problems: list[str] = field(default_factory=list)


class SceneView(QWidget):
    """The 3D view of the plant's machines, one machine shown at a time."""

    part_picked = Signal(str, str, list)  # machine, glTF node name, bound tags
    model_loaded = Signal(str, bool, str)  # machine, ok, message
    _checked = Signal(str, int, object)  # machine, generation, ModelCheck (worker -> GUI)

    def __init__(
        self,
        bus: TagBus,
        parent: QWidget | None = None,
        max_fps: float = DEFAULT_MAX_FPS,
        cache: VerdictCache | None = None,
        probe: bool = True,
    ) -> None:
        super().__init__(parent)
        self.bus = bus
        self.cache = cache if cache is not None else VerdictCache()
        self.probe = probe
        self.renders = 0  # frames actually drawn (tests and benchmarks count them)
        self.ticks = 0  # frame timer ticks considered
        self._machines: dict[str, _Machine] = {}
        self._current: str | None = None
        self._dirty = True
        self._motion_fps = DEFAULT_MOTION_FPS
        self._motion_wait = 0  # frame ticks left before motion may draw again
        self._clip: tuple[vtkRenderer, int, float, tuple[float, ...]] | None = None  # see _reset_clipping_range
        self._closed = False
        self._generation = 0
        self._press_pos: tuple[int, int] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glb-check", initializer=_yield_cpu)
        self._checked.connect(self._on_checked)
        # What motion follows: wall time live; playback sets its own (set_clock).
        self._clock: Callable[[], float] = time.monotonic
        self._max_step_s = MAX_STEP_S

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.vtk_widget = QVTKRenderWindowInteractor(self)
        # It closes itself when its parent is destroyed, when its Python side may already be
        # gone (a RecursionError in its __getattr__); shutdown() finalizes it instead.
        self.destroyed.disconnect(self.vtk_widget.close)
        layout.addWidget(self.vtk_widget)
        self.render_window = self.vtk_widget.GetRenderWindow()
        self.render_window.SetMultiSamples(0)  # MSAA doubles the cost on a software renderer
        self.interactor = self.render_window.GetInteractor()
        self._style = vtkInteractorStyleTrackballCamera()
        # An observer on the style replaces its default key handling ('e'/'q' would quit).
        self._style.AddObserver(vtkCommand.CharEvent, self._on_char)
        self.interactor.SetInteractorStyle(self._style)
        self.interactor.EnableRenderOff()
        self.interactor.AddObserver(vtkCommand.RenderEvent, self._on_interactor_render)
        # On the style, not the interactor: while rotating, the style holds the interactor's
        # event focus and observers there would miss the button release.
        self._style.AddObserver(vtkCommand.LeftButtonPressEvent, self._on_left_press)
        self._style.AddObserver(vtkCommand.LeftButtonReleaseEvent, self._on_left_release)
        self.vtk_widget.Initialize()
        self._empty_renderer = self._new_renderer()
        self._add_text(self._empty_renderer, "No machine selected", (0.5, 0.5), 14, centred=True)
        self.render_window.AddRenderer(self._empty_renderer)
        self._picker = vtkCellPicker()
        self._picker.SetTolerance(0.0005)

        self._timer = QTimer(self)
        self._timer.timeout.connect(self._on_frame_timer)
        self.set_max_fps(max_fps)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # -- public API ---------------------------------------------------------------------------------

    @property
    def max_fps(self) -> float:
        return self._max_fps

    def set_max_fps(self, fps: float) -> None:
        """Cap the render rate; the frame timer ticks at this rate while the view is visible."""
        self._max_fps = max(1.0, float(fps))
        self._timer.setInterval(max(1, round(1000.0 / self._max_fps)))

    @property
    def motion_fps(self) -> float:
        return min(self._motion_fps, self._max_fps)

    def set_motion_fps(self, fps: float) -> None:
        """Cap the frames drawn for motion: bound values that changed and continuous motion
        (spindles, belts, shakes). Camera moves and alarm colours still draw at max_fps."""
        self._motion_fps = max(0.5, float(fps))
        self._motion_wait = 0

    def set_clock(self, clock: Callable[[], float], max_step_s: float = MAX_STEP_S) -> None:
        """Drive motion (spindles, conveyors, shakes) by `clock` (seconds) instead of wall
        time: playback's clock stands still while paused and runs 50x at 50x. A step longer
        than `max_step_s` of the clock is cut short (a hidden view must not jump)."""
        self._clock = clock
        self._max_step_s = max_step_s

    def machines(self) -> list[str]:
        return list(self._machines)

    @property
    def current_machine(self) -> str | None:
        return self._current

    def add_machine(
        self,
        machine: str,
        model_path: str | Path | None,
        bindings: Sequence[BindingConfig] = (),
        cameras: Sequence[CameraPresetConfig] = (),
        label: str = "",
    ) -> None:
        """Add (or replace) a machine; its model loads in the background."""
        old = self._machines.get(machine)
        if old is not None:
            self._drop_machine(old)
        self._generation += 1
        path = Path(model_path) if model_path else None
        scene = _Machine(
            machine,
            label or machine,
            path,
            [b for b in bindings if b.machine == machine],
            self._new_renderer(),
            self._generation,
        )
        for camera in cameras:
            if camera.machine == machine:
                scene.presets[camera.name] = CameraPreset(
                    camera.name, camera.position, camera.focal_point, camera.view_up, camera.view_angle
                )
        for name, direction in PRESET_DIRECTIONS.items():
            scene.presets.setdefault(name, CameraPreset(name, direction=direction))
        self._machines[machine] = scene
        if path is None:
            self._fail(scene, "no 3D model is configured for this machine", state="empty")
        else:
            scene.overlay = self._add_text(scene.renderer, f"Loading 3D model {path.name} …", (0.5, 0.5), 14, True)
            self._executor.submit(self._check_worker, machine, scene.generation, path)
        if self._current is None:
            self.show_machine(machine)

    def show_machine(self, machine: str) -> None:
        scene = self._machines[machine]
        if self._current == machine:
            return
        current = self._machines.get(self._current) if self._current else None
        self.render_window.RemoveRenderer(current.renderer if current else self._empty_renderer)
        self.render_window.AddRenderer(scene.renderer)
        self.interactor.GetInteractorStyle().SetDefaultRenderer(scene.renderer)
        self._current = machine
        scene.style_dirty = True
        scene.raw.clear()  # re-read every value for the machine now shown
        self._dirty = True

    def set_alarm_state(self, machine: str, priority: Priority | str | None) -> None:
        """A priority for the machine's main part (a Priority, or its label: "urgent",
        "high", "medium", "low"), or None: parts bound with alarm_colour take the priority's
        colour. The window uses set_alarms, which puts the colour on the alarming part."""
        scene = self._machines.get(machine)
        if scene is None:
            return
        label = _priority_label(priority, machine)
        if scene.alarm != label:
            scene.alarm = label
            scene.style_dirty = True

    def set_alarms(self, machine: str, alarms: Mapping[str, Priority | str]) -> None:
        """The machine's active, in-service alarms as tag -> priority (the worst per tag).
        Each part bound to one of these tags takes its priority's colour; alarms on tags no
        part is bound to colour the main part (alarm_colour). An empty mapping clears."""
        scene = self._machines.get(machine)
        if scene is None:
            return
        tags = {tag: _priority_label(p, machine) or "high" for tag, p in alarms.items()}
        if scene.alarm_tags != tags:
            scene.alarm_tags = tags
            scene.style_dirty = True

    def status(self, machine: str) -> tuple[str, str]:
        """(state, message): state is loading, ready, failed or empty."""
        scene = self._machines[machine]
        return scene.state, scene.message

    def camera_presets(self, machine: str | None = None) -> list[str]:
        scene = self._machines.get(machine or self._current or "")
        return list(scene.presets) if scene else []

    def set_camera_preset(self, name: str) -> None:
        scene = self._scene()
        if scene is None or name not in scene.presets:
            raise KeyError(name)
        self._apply_preset(scene, scene.presets[name])
        self._dirty = True

    def reset_view(self) -> None:
        """The machine's first configured camera preset, else the isometric view."""
        scene = self._scene()
        if scene is not None:
            self._apply_preset(scene, next(iter(scene.presets.values())))
            self._dirty = True

    def shutdown(self) -> None:
        """Stop the timer and release the OpenGL context (call before the window closes)."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        # Wait for a check in flight (a probe takes under a second): its worker would otherwise
        # hand its result to this widget while Python tears Qt down at exit (a SIGSEGV seen
        # when a window was told to quit while models were still loading).
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.vtk_widget.Finalize()

    # -- inspection (tests, benchmarks, the main window's screenshots) ---------------------------------

    def node_index(self, machine: str, node_name: str) -> int:
        scene = self._machines[machine]
        summary = scene.check.checked.report.summary if scene.check else None
        node = summary.node_named(node_name) if summary else None
        if node is None:
            raise KeyError(node_name)
        return node.index

    def node_actors(self, machine: str, node_name: str) -> list[vtkActor]:
        scene = self._machines[machine]
        index = self.node_index(machine, node_name)
        return list(scene.imported.node_actors.get(index, [])) if scene.imported else []

    def node_matrix(self, machine: str, node_name: str) -> np.ndarray:
        """The full transform VTK draws the node's first actor with (row-major 4x4)."""
        actor = self.node_actors(machine, node_name)[0]
        m = actor.GetMatrix()
        return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])

    def node_colour(self, machine: str, node_name: str) -> tuple[float, float, float]:
        return tuple(self.node_actors(machine, node_name)[0].GetProperty().GetColor())  # type: ignore[return-value]

    def node_visible(self, machine: str, node_name: str) -> bool:
        return bool(self.node_actors(machine, node_name)[0].GetVisibility())

    def label_texts(self, machine: str) -> list[str]:
        scene = self._machines[machine]
        return [actor.GetInput() for actor in scene.labels.values() if actor.GetVisibility()]

    def overlay_text(self, machine: str) -> str:
        """What the view says over the model: loading, or why the model is not shown."""
        scene = self._machines[machine]
        parts = [a.GetInput() for a in (scene.overlay, scene.message_actor) if a is not None]
        return "\n".join(p for p in parts if p)

    def status_text(self, machine: str) -> str:
        scene = self._machines[machine]
        return scene.status.GetInput() if scene.status is not None else ""

    def grab_frame(self) -> QImage:
        """Render now and return the 3D view's pixels (QWidget.grab() cannot read them)."""
        self._render()
        grabber = vtkWindowToImageFilter()
        grabber.SetInput(self.render_window)
        grabber.ReadFrontBufferOff()
        grabber.Update()
        image = grabber.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
        pixels = np.ascontiguousarray(pixels[::-1, :, :3])
        return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()

    def pick_at(self, x: int, y: int) -> tuple[str, list[str]] | None:
        """Pick the part under a display position (VTK coordinates, origin bottom left)."""
        scene = self._scene()
        if scene is None or scene.state != "ready":
            return None
        if not self._picker.Pick(x, y, 0, scene.renderer):
            self._show_pick(scene, None)
            return None
        actor = self._picker.GetActor()
        node = scene.actor_node.get(id(actor)) if actor is not None else None
        if node is None:
            self._show_pick(scene, None)
            return None
        node = self._pick_target(scene, node)
        self._show_pick(scene, node)
        name = scene.check.checked.report.summary.nodes[node].label  # type: ignore[union-attr]
        tags = scene.animator.tags_of_node(node) if scene.animator else []
        self.part_picked.emit(scene.machine, name, tags)
        return name, tags

    # -- Qt events -----------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._dirty = True
        if not self._closed:
            self._timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._timer.stop()

    # -- loading ----------------------------------------------------------------------------------------

    def _check_worker(self, machine: str, generation: int, path: Path) -> None:
        """On the loader's worker thread: validate and probe, then hand over to the GUI."""
        try:
            result: object = check_model(path, self.cache, probe=self.probe)
        except Exception as exc:  # never let a loader bug pass silently
            log.exception("checking %s failed", path)
            result = exc
        if self._closed:
            return
        try:
            self._checked.emit(machine, generation, result)
        except RuntimeError:
            pass  # the widget is gone

    def _on_checked(self, machine: str, generation: int, result: object) -> None:
        scene = self._machines.get(machine)
        if scene is None or scene.generation != generation or self._closed:
            return
        if isinstance(result, Exception):
            self._fail(scene, f"the model could not be checked: {result}")
            return
        assert isinstance(result, ModelCheck)
        scene.check = result
        if not result.ok:
            self._fail(scene, result.message)
            return
        summary = result.checked.report.summary
        assert summary is not None and result.checked.data is not None
        if summary.expected_actors == 0:
            self._fail(scene, "the model contains nothing to draw")
            return
        # The importer gives the renderer a private window for a moment; a renderer the
        # shown window still holds would be left without one and crash the next render.
        shown = scene.machine == self._current
        if shown:
            self.render_window.RemoveRenderer(scene.renderer)
        try:
            imported = import_glb(result.checked.data, scene.renderer, summary)
        except Exception as exc:
            log.exception("importing %s failed", scene.model_path)
            self._fail(scene, f"the model could not be imported: {exc}")
            return
        finally:
            if shown:
                self.render_window.AddRenderer(scene.renderer)
        if summary.expected_actors and imported.actor_count == 0:
            self._fail(scene, "VTK imported nothing from this model")
            return
        scene.imported = imported
        self._prepare(scene, summary)
        log.info(
            "%s: loaded %s (%d triangles, %d parts) in %.0f ms",
            machine,
            scene.model_path.name if scene.model_path else "",
            summary.triangles,
            imported.actor_count,
            imported.seconds * 1000,
        )
        self.model_loaded.emit(machine, True, "OK")

    def _prepare(self, scene: _Machine, summary: Any) -> None:
        assert scene.imported is not None
        if scene.overlay is not None:
            scene.renderer.RemoveViewProp(scene.overlay)
            scene.overlay = None
        for node, actors in scene.imported.node_actors.items():
            for actor in actors:
                scene.actor_node[id(actor)] = node
        animator = MachineAnimator(summary, scene.bindings, ALARM_COLOURS)
        scene.animator = animator
        scene.problems = animator.problems + [f"VTK: {w}" for w in scene.imported.mapping_warnings[:3]]
        for node in animator.moving_nodes:
            actors = scene.imported.node_actors.get(node, [])
            if not actors:
                continue
            matrix = vtkMatrix4x4()
            imported = actors[0].GetUserMatrix()
            if imported is not None:
                matrix.DeepCopy(imported)
            for actor in actors:
                actor.SetUserMatrix(matrix)  # one matrix per node, shared by its primitives
            scene.node_matrices[node] = matrix
        # Every part's own colour, not only the styled ones': any bound part may take an alarm colour.
        for actors in scene.imported.node_actors.values():
            for actor in actors:
                scene.original_colours[id(actor)] = tuple(actor.GetProperty().GetColor())  # type: ignore[assignment]
        for i, binding in enumerate(animator.bindings):
            if binding.label is not None:
                scene.labels[i], scene.label_anchors[i] = self._new_label(scene.renderer)
        scene.pick = self._add_text(scene.renderer, "", (0.01, 0.97), 12, centred=False, top=True)
        lines = []
        # What the validator left out (degenerate parts, unusable textures) is said on the view.
        left_out = scene.check.checked.report.left_out_messages() if scene.check else []
        for title, items in (("Model", left_out), ("Bindings", scene.problems)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                lines.append(f"{title}: " + "; ".join(items[:3]) + more)
                log.warning("%s: %s", scene.machine, lines[-1])
        if lines:
            scene.status = self._add_text(scene.renderer, "\n".join(lines), (0.01, 0.01), 11, centred=False)
            scene.status.GetTextProperty().SetColor(_rgb(theme.TEXT_DIM))
        scene.state = "ready"
        scene.message = "OK"
        scene.raw.clear()
        scene.style_dirty = True
        self._update_scene(scene)  # the current pose first: the camera fits what is shown
        self._apply_preset(scene, next(iter(scene.presets.values())))
        if scene.machine == self._current:
            self._dirty = True

    def _fail(self, scene: _Machine, message: str, state: str = "failed") -> None:
        renderer = scene.renderer
        renderer.RemoveAllViewProps()
        scene.state = state
        scene.message = message
        name = scene.model_path.name if scene.model_path else ""
        cube = vtkCubeSource()
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(cube.GetOutputPort())
        box = vtkActor()
        box.SetMapper(mapper)
        box.GetProperty().SetRepresentationToWireframe()
        box.GetProperty().SetColor(*_rgb(theme.TEXT_DIM))
        box.GetProperty().SetLineWidth(1.5)
        renderer.AddActor(box)
        title = f"{scene.label}: " + ("no 3D model" if state == "empty" else "3D model not shown")
        detail = _wrap(message, 80) + (f"\n{name}" if name and state != "empty" else "")
        scene.overlay = self._add_text(scene.renderer, title, (0.5, 0.16), 16, centred=True)
        scene.overlay.GetTextProperty().BoldOn()
        detail_actor = self._add_text(scene.renderer, detail, (0.5, 0.13), 13, centred=True, top=True)
        detail_actor.GetTextProperty().SetColor(_rgb(theme.TEXT_DIM))
        scene.message_actor = detail_actor
        renderer.ResetCamera()
        renderer.GetActiveCamera().Azimuth(30)
        renderer.GetActiveCamera().Elevation(20)
        renderer.GetActiveCamera().Zoom(0.55)
        renderer.GetActiveCamera().OrthogonalizeViewUp()
        if state == "failed":
            log.warning("%s: model %s not shown: %s", scene.machine, scene.model_path, message)
        if scene.machine == self._current:
            self._dirty = True
        self.model_loaded.emit(scene.machine, False, message)

    def _drop_machine(self, scene: _Machine) -> None:
        if self._current == scene.machine:
            self.render_window.RemoveRenderer(scene.renderer)
            self.render_window.AddRenderer(self._empty_renderer)
            self._current = None
        del self._machines[scene.machine]

    # -- frames ------------------------------------------------------------------------------------------

    def _on_frame_timer(self) -> None:
        self.ticks += 1
        if self._closed or not self.isVisible() or self.window().isMinimized():
            return
        scene = self._scene()
        changed = False
        if scene is not None and scene.state == "ready":
            # Counted in ticks, not seconds: a late timer draws less often, never in bursts.
            if self._motion_wait > 0 and not scene.style_dirty:
                self._motion_wait -= 1
            elif self._update_scene(scene):
                changed = True
                self._motion_wait = max(round(self._max_fps / self.motion_fps) - 1, 0)
        if changed or self._dirty:
            self._render()

    def _update_scene(self, scene: _Machine) -> bool:
        """Read the bound tags; step and apply the animation if anything changed."""
        animator = scene.animator
        assert animator is not None
        values_changed = self._read_tags(scene, animator.tags)
        label_due = scene.label_pending and time.monotonic() >= scene.label_text_due
        clock = self._clock()
        moving = scene.continuous and clock != scene.stepped_at  # a paused playback clock moves nothing
        if not (values_changed or moving or scene.style_dirty or label_due):
            return False
        scene.stepped_at = clock
        if scene.style_dirty:
            self._place_alarms(scene, animator)
        frame = animator.step(scene.readings, clock, scene.main_alarm, self._max_step_s)
        # An alarm outranks a value colour; parts outside the animator's styled set need
        # their own colour back (None) when their alarm clears.
        for node in scene.alarm_cleared:
            frame.colours.setdefault(node, None)
        scene.alarm_cleared = []
        frame.colours.update(scene.alarm_parts)
        scene.continuous = frame.continuous
        scene.style_dirty = False
        self._apply(scene, frame)
        return True

    def _place_alarms(self, scene: _Machine, animator: MachineAnimator) -> None:
        """Work out which parts show which alarm colour, and the main part's priority."""
        worst: dict[int, str] = {}  # node -> priority label
        bound: set[str] = set()
        for binding, node in zip(animator.bindings, animator.nodes, strict=True):
            for tag in binding.tags():
                bound.add(tag)
                label = scene.alarm_tags.get(tag)
                if label is not None and _rank(label) > _rank(worst.get(node)):
                    worst[node] = label
        parts: dict[int, tuple[float, float, float]] = {}
        ranks: dict[int, int] = {}
        for node, label in worst.items():
            for index in [node, *animator.summary.descendants(node)]:  # children go with their part
                if _rank(label) > ranks.get(index, 0):
                    ranks[index] = _rank(label)
                    parts[index] = _rgb(ALARM_COLOURS[label])
        scene.alarm_cleared = [n for n in scene.alarm_parts if n not in parts]
        scene.alarm_parts = parts
        unbound = [label for tag, label in scene.alarm_tags.items() if tag not in bound]
        if scene.alarm is not None:
            unbound.append(scene.alarm)
        scene.main_alarm = max(unbound, key=_rank) if unbound else None

    def _read_tags(self, scene: _Machine, tags: list[str]) -> bool:
        changed = False
        registry = self.bus.registry
        for tag in tags:
            tag_id = scene.tag_ids.get(tag)
            if tag_id is None:
                tag_id = registry.get_id(tag)  # tags may appear on the bus after the view starts
                if tag_id is None:
                    if tag not in scene.readings:
                        scene.readings[tag] = Reading(math.nan, None)
                    continue
                scene.tag_ids[tag] = tag_id
            latest = self.bus.latest(tag_id)
            raw = (latest.ts_ns, latest.value, latest.quality) if latest is not None else None
            if scene.raw.get(tag) == raw and tag in scene.readings:
                continue
            scene.raw[tag] = raw  # type: ignore[assignment]
            changed = True
            if latest is None:
                scene.readings[tag] = Reading(math.nan, None)
            elif isinstance(latest.value, str):
                scene.readings[tag] = Reading(math.nan, latest.quality, latest.value)
            else:
                scene.readings[tag] = Reading(float(latest.value), latest.quality)
        return changed

    def _apply(self, scene: _Machine, frame: Frame) -> None:
        assert scene.imported is not None
        for node, world in frame.world.items():
            matrix = scene.node_matrices.get(node)
            if matrix is not None:
                matrix.DeepCopy(world.ravel().tolist())
                matrix.Modified()
        for node, colour in frame.colours.items():
            if scene.applied_colours.get(node, "unset") == colour:
                continue
            scene.applied_colours[node] = colour
            for actor in scene.imported.node_actors.get(node, []):
                rgb = colour if colour is not None else scene.original_colours.get(id(actor))
                if rgb is not None:
                    actor.GetProperty().SetColor(*rgb)
        for node, visible in frame.visible.items():
            if scene.applied_visible.get(node) == visible:
                continue
            scene.applied_visible[node] = visible
            for actor in scene.imported.node_actors.get(node, []):
                actor.SetVisibility(visible)
        now = time.monotonic()
        refresh = now >= scene.label_text_due
        if refresh:
            scene.label_text_due = now + 1.0 / LABEL_TEXT_HZ
        scene.label_pending = False
        for label in frame.labels:
            if label.binding in scene.labels:
                self._update_label(scene, label, frame.visible.get(label.node, True), refresh)
        if scene.picked_node is not None:
            self._show_pick(scene, scene.picked_node)

    def _update_label(self, scene: _Machine, label: LabelState, visible: bool, refresh: bool) -> None:
        """Move the label with its part every frame; change its text (a re-rasterised
        texture) only at LABEL_TEXT_HZ, or at once when the quality turns."""
        actor = scene.labels[label.binding]
        scene.label_anchors[label.binding].SetValue(*label.anchor)
        actor.SetVisibility(visible)
        prop = actor.GetTextProperty()
        stale = label.reading.quality is None or label.reading.quality >= Quality.BAD
        text = self._format_label(scene, label)  # cheap; setting it is what costs
        if text != actor.GetInput():
            if refresh or not actor.GetInput() or bool(prop.GetItalic()) != stale:
                actor.SetInput(text)
            else:
                scene.label_pending = True
        if bool(prop.GetItalic()) != stale:
            prop.SetItalic(stale)
            prop.SetColor(_rgb(theme.STALE_TEXT if stale else theme.TEXT))

    def _format_label(self, scene: _Machine, label: LabelState) -> str:
        registry = self.bus.registry
        tag_id = registry.get_id(label.tag)
        spec = registry.spec(tag_id) if tag_id is not None else None
        reading = label.reading
        if reading.quality is None:
            value = "—"
        elif reading.text is not None:
            value = reading.text
        else:
            value = format_tag_value(reading.value, spec) if spec else format_value(reading.value, DataType.FLOAT)
        summary = scene.check.checked.report.summary if scene.check else None
        fields = {
            "value": value,
            "raw": reading.value,
            "unit": spec.unit if spec and reading.quality is not None else "",
            "tag": label.tag,
            "signal": label.tag.split(".", 1)[-1],
            "node": summary.nodes[label.node].label if summary else "",
        }
        try:
            text = label.format.format(**fields).strip()
        except (ValueError, KeyError, IndexError):
            text = f"{fields['signal']}: {value} {fields['unit']}".strip()
        if reading.quality is None:
            return f"{text}  (no value)"
        if reading.quality >= Quality.BAD:
            return f"{text}  ({theme.QUALITY_LABEL[reading.quality]})"
        return text

    def _render(self) -> None:
        scene = self._scene()
        renderer = scene.renderer if scene is not None else self._empty_renderer
        self._reset_clipping_range(renderer)
        self.renders += 1
        self._dirty = False
        self.render_window.Render()

    def _reset_clipping_range(self, renderer: vtkRenderer) -> None:
        """Near and far planes around the padded bounds of the visible parts, refreshed when
        the camera moved, the renderer changed or CLIP_REFRESH_S passed. `_clip` holds the
        renderer, the camera's time stamp after the last reset, when to refresh, and the bounds."""
        camera = renderer.GetActiveCamera()
        now = time.monotonic()
        clip = self._clip
        if clip is None or clip[0] is not renderer or clip[1] != camera.GetMTime() or now >= clip[2]:
            bounds = renderer.ComputeVisiblePropBounds()
            if not all(math.isfinite(b) for b in bounds) or bounds[0] > bounds[1]:
                renderer.ResetCameraClippingRange()
                self._clip = None
                return
            pad = CLIP_PAD * math.dist(bounds[0::2], bounds[1::2])
            padded = tuple(b + (pad if i % 2 else -pad) for i, b in enumerate(bounds))
            renderer.ResetCameraClippingRange(*padded)
            self._clip = (renderer, camera.GetMTime(), now + CLIP_REFRESH_S, padded)
        else:
            renderer.ResetCameraClippingRange(*clip[3])
            # Setting the range may touch the camera's time stamp itself: only a move after this counts.
            self._clip = (renderer, camera.GetMTime(), clip[2], clip[3])

    # -- camera and interaction ----------------------------------------------------------------------------

    def _apply_preset(self, scene: _Machine, preset: CameraPreset) -> None:
        camera = scene.renderer.GetActiveCamera()
        camera.SetViewAngle(preset.view_angle)
        if preset.direction is not None:
            bounds = scene.renderer.ComputeVisiblePropBounds()
            if not math.isfinite(bounds[0]) or bounds[0] > bounds[1]:
                return
            centre = ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)
            d = np.asarray(preset.direction, dtype=float)
            d /= np.linalg.norm(d)
            camera.SetFocalPoint(*centre)
            camera.SetPosition(*(np.asarray(centre) + d))
            camera.SetViewUp(*preset.view_up)
            scene.renderer.ResetCamera()
        else:
            camera.SetPosition(*preset.position)  # type: ignore[misc]
            camera.SetFocalPoint(*preset.focal_point)  # type: ignore[misc]
            camera.SetViewUp(*preset.view_up)
        camera.OrthogonalizeViewUp()
        scene.renderer.ResetCameraClippingRange()

    def _on_interactor_render(self, obj: Any, event: str) -> None:
        self._dirty = True  # camera moved or the window was exposed: draw on the next tick

    def _on_char(self, obj: Any, event: str) -> None:
        key = self.interactor.GetKeyCode()
        if key in ("r", "R"):
            self.reset_view()

    def _on_left_press(self, obj: Any, event: str) -> None:
        self._press_pos = self.interactor.GetEventPosition()
        self._style.OnLeftButtonDown()  # an observer replaces the style's own handler

    def _on_left_release(self, obj: Any, event: str) -> None:
        self._style.OnLeftButtonUp()
        if self._press_pos is None:
            return
        x, y = self.interactor.GetEventPosition()
        px, py = self._press_pos
        self._press_pos = None
        if abs(x - px) <= CLICK_SLOP_PX and abs(y - py) <= CLICK_SLOP_PX:
            self.pick_at(x, y)
            self._dirty = True

    def _pick_target(self, scene: _Machine, node: int) -> int:
        """The picked actor's node, or its nearest ancestor that has bindings or a name."""
        assert scene.check is not None and scene.animator is not None
        nodes = scene.check.checked.report.summary.nodes  # type: ignore[union-attr]
        current = node
        while current >= 0:
            if current in scene.animator.by_node:
                return current
            current = nodes[current].parent
        current = node
        while current >= 0 and not nodes[current].name:
            current = nodes[current].parent
        return current if current >= 0 else node

    def _show_pick(self, scene: _Machine, node: int | None) -> None:
        scene.picked_node = node
        if scene.pick is None:
            return
        if node is None or scene.animator is None or scene.check is None:
            scene.pick.SetInput("")
            return
        summary = scene.check.checked.report.summary
        assert summary is not None
        lines = [summary.nodes[node].label]
        registry = self.bus.registry
        for tag in scene.animator.tags_of_node(node):
            reading = scene.readings.get(tag)
            tag_id = registry.get_id(tag)
            spec = registry.spec(tag_id) if tag_id is not None else None
            if reading is None or reading.quality is None:
                value = "no value"
            elif reading.text is not None:
                value = reading.text
            else:
                value = format_tag_value(reading.value, spec) if spec else format_value(reading.value, DataType.FLOAT)
                value += f" {spec.unit}" if spec and spec.unit else ""
                if reading.quality >= Quality.BAD:
                    value += f" ({theme.QUALITY_LABEL[reading.quality]})"
            lines.append(f"  {tag}: {value}")
        text = "\n".join(lines)
        if scene.pick.GetInput() != text:
            scene.pick.SetInput(text)

    # -- helpers -----------------------------------------------------------------------------------------

    def _scene(self) -> _Machine | None:
        return self._machines.get(self._current) if self._current else None

    @staticmethod
    def _new_renderer() -> vtkRenderer:
        renderer = vtkRenderer()
        renderer.SetBackground(*_rgb(theme.PLOT_BACKGROUND))  # flat: a gradient costs a full-window pass
        kit = vtkLightKit()
        kit.SetKeyLightIntensity(KEY_LIGHT_INTENSITY)
        kit.AddLightsToRenderer(renderer)
        return renderer

    @staticmethod
    def _add_text(
        renderer: vtkRenderer, text: str, where: tuple[float, float], size: int, centred: bool, top: bool = False
    ) -> vtkTextActor:
        actor = vtkTextActor()
        actor.SetInput(text)
        actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        actor.SetPosition(*where)
        prop = actor.GetTextProperty()
        prop.SetFontSize(size)
        prop.SetColor(_rgb(theme.TEXT))
        prop.SetFontFamilyToArial()
        if centred:
            prop.SetJustificationToCentered()
        if top:
            prop.SetVerticalJustificationToTop()
        renderer.AddViewProp(actor)
        return actor

    @staticmethod
    def _new_label(renderer: vtkRenderer) -> tuple[vtkTextActor, vtkCoordinate]:
        """A text drawn in the overlay pass (always on top, no extra renderer), placed a
        few pixels above a world point that follows its part."""
        anchor = vtkCoordinate()
        anchor.SetCoordinateSystemToWorld()
        actor = vtkTextActor()
        position = actor.GetPositionCoordinate()
        position.SetCoordinateSystemToDisplay()
        position.SetReferenceCoordinate(anchor)
        position.SetValue(0, LABEL_OFFSET_PX)
        prop = actor.GetTextProperty()
        prop.SetFontSize(13)
        prop.SetFontFamilyToArial()
        prop.SetColor(_rgb(theme.TEXT))
        prop.SetBackgroundColor(_rgb(theme.PANEL))
        prop.SetBackgroundOpacity(0.85)
        prop.SetFrame(True)
        prop.SetFrameColor(_rgb(theme.GRID))
        prop.SetJustificationToCentered()
        prop.SetVerticalJustificationToBottom()
        actor.SetVisibility(False)
        renderer.AddViewProp(actor)
        return actor, anchor


LOADER_NICENESS = 10


def _yield_cpu() -> None:
    """On the loader's thread: run (and start the probe processes) at a lower priority. At
    start-up the probes (about 0.4 CPU-s per model) competed on two cores with the plant, the
    runtime and this window on their way to the first live frame; they may wait for them."""
    if hasattr(os, "setpriority"):  # Linux: per thread, inherited by the processes it starts
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICENESS)
        except OSError:
            pass


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return "\n".join(lines)
