"""Turn bound tag values into what a machine's 3D model should look like this frame.

No Qt, no VTK: MachineAnimator maps (tag readings, time, alarm state) to node world
matrices, colours, visibility and label values; hmi/ui/scene_view.py applies them to VTK
actors. A binding moves a node about its own origin (the joint's pivot) in its own frame:
world(node) = world(parent) @ local(node) @ motion(node), so a rotated Joint2 carries
Joint3..6 along.

Quality rules (a value is never shown as good when its source is gone): positions and
colours hold the last good value; continuous motion (rpm, speed) stops while the tag's
quality is BAD or COMM_LOST; labels report the quality.

Runs on the GUI thread's frame timer; pure computation on a few dozen nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hmi.config.bindings import BindingConfig, ColourAction, TranslateAction, VisibleAction
from hmi.core.alarms.model import Priority
from hmi.core.quality import Quality
from hmi.scene.report import ModelSummary
from hmi.scene.transforms import rotation_about, translation_along, world_matrices

MAX_STEP_S = 0.5  # longer gaps (view hidden, machine switched) do not jump the animation

Colour = tuple[float, float, float]

# ISA-18.2 priorities as the alarm engine names them, most urgent first.
ALARM_PRIORITIES = tuple(p.label for p in sorted(Priority, reverse=True))


@dataclass(frozen=True, slots=True)
class Reading:
    """A tag's latest value as the animator needs it."""

    value: float  # NaN when there is none or it is text
    quality: Quality | None  # None: no value yet
    text: str | None = None

    @property
    def good(self) -> bool:
        return self.quality is not None and self.quality <= Quality.UNCERTAIN and math.isfinite(self.value)


NO_READING = Reading(math.nan, None)


@dataclass(frozen=True, slots=True)
class LabelState:
    binding: int  # index into the animator's bindings
    node: int
    tag: str
    format: str
    reading: Reading
    anchor: tuple[float, float, float]  # world position


@dataclass
class Frame:
    """What to draw: matrices of moving nodes, effective colour (None: the model's own)
    and visibility of affected nodes, labels. `continuous` asks for the next frame even
    if no value changes (turning at rpm, sliding at a speed, shaking)."""

    world: dict[int, np.ndarray] = field(default_factory=dict)
    colours: dict[int, Colour | None] = field(default_factory=dict)
    visible: dict[int, bool] = field(default_factory=dict)
    labels: list[LabelState] = field(default_factory=list)
    continuous: bool = False


def hex_colour(text: str) -> Colour:
    value = text.lstrip("#")
    return (int(value[0:2], 16) / 255.0, int(value[2:4], 16) / 255.0, int(value[4:6], 16) / 255.0)


def ramp_colour(action: ColourAction, value: float) -> Colour:
    low, high = action.range
    t = min(max((value - low) / (high - low), 0.0), 1.0)
    stops = [hex_colour(c) for c in action.colours]
    position = t * (len(stops) - 1)
    i = min(int(position), len(stops) - 2)
    frac = position - i
    a, b = stops[i], stops[i + 1]
    return (a[0] + (b[0] - a[0]) * frac, a[1] + (b[1] - a[1]) * frac, a[2] + (b[2] - a[2]) * frac)


def condition_holds(action: VisibleAction, value: float) -> bool:
    op, ref = action.op, action.value
    if op == "==":
        return math.isclose(value, ref, rel_tol=1e-9, abs_tol=1e-9)
    if op == "!=":
        return not math.isclose(value, ref, rel_tol=1e-9, abs_tol=1e-9)
    if op == ">":
        return value > ref
    if op == ">=":
        return value >= ref
    if op == "<":
        return value < ref
    return value <= ref


def _then(motion: np.ndarray | None, step: np.ndarray) -> np.ndarray:
    """`motion` followed by `step` in the part's frame; None is the identity."""
    return step if motion is None else motion @ step


@dataclass
class _BindingState:
    angle: float = 0.0  # radians, continuous rotation
    distance: float = 0.0  # continuous translation
    last_angle: float = 0.0  # held while the value is bad
    last_distance: float = 0.0
    last_colour: Colour | None = None
    last_visible: bool = True
    phase: float = 0.0


class MachineAnimator:
    """Bindings of one machine against its model's node tree (from the validator)."""

    def __init__(
        self,
        summary: ModelSummary,
        bindings: Sequence[BindingConfig],
        alarm_colours: Mapping[str, str] | None = None,
        seed: int = 7,
    ) -> None:
        self.summary = summary
        self.alarm_colours = {k: hex_colour(v) for k, v in (alarm_colours or {}).items()}
        self.bindings: list[BindingConfig] = []
        self.nodes: list[int] = []
        self.problems: list[str] = []
        for binding in bindings:
            node = summary.node_named(binding.node)
            if node is None or not node.in_scene:
                where = "not in the model" if node is None else "not in the model's scene"
                self.problems.append(f"node {binding.node!r} is {where}")
                continue
            if node.left_out:  # the validator's warning says why; the view has no actor to move
                self.problems.append(f"node {binding.node!r} is left out of the model: {node.left_out}")
                continue
            self.bindings.append(binding)
            self.nodes.append(node.index)
        self.tags = sorted({tag for b in self.bindings for tag in b.tags()})
        self._state = [_BindingState() for _ in self.bindings]
        self._rng = np.random.default_rng(seed)
        self._last_time: float | None = None
        self.local = [np.array(n.matrix).reshape(4, 4) for n in summary.nodes]
        self.parents = [n.parent for n in summary.nodes]
        self.static_world = world_matrices(self.local, self.parents)
        moving = {n for b, n in zip(self.bindings, self.nodes, strict=True) if b.rotate or b.translate or b.shake}
        styled = {n for b, n in zip(self.bindings, self.nodes, strict=True) if b.colour or b.alarm_colour or b.visible}
        self.moving_nodes = self._subtrees(moving)  # parents before children
        self.styled_nodes = self._subtrees(styled)
        self.by_node: dict[int, list[int]] = {}
        for i, node_index in enumerate(self.nodes):
            self.by_node.setdefault(node_index, []).append(i)

    def _subtrees(self, roots: set[int]) -> list[int]:
        out: list[int] = []
        seen: set[int] = set()
        for node in self.summary.walk():
            if node.index in roots and node.index not in seen:
                for index in [node.index, *self.summary.descendants(node.index)]:
                    if index not in seen:
                        seen.add(index)
                        out.append(index)
        # Preorder of the whole tree keeps parents ahead of their children.
        order = {n.index: i for i, n in enumerate(self.summary.walk())}
        return sorted(out, key=order.__getitem__)

    def tags_of_node(self, node: int) -> list[str]:
        out: list[str] = []
        for i in self.by_node.get(node, []):
            out += [t for t in self.bindings[i].tags() if t not in out]
        return out

    # -- one frame ----------------------------------------------------------------------------------

    def step(
        self, readings: Mapping[str, Reading], now_s: float, alarm: str | None = None, max_step_s: float = MAX_STEP_S
    ) -> Frame:
        dt = 0.0 if self._last_time is None else min(max(now_s - self._last_time, 0.0), max_step_s)
        self._last_time = now_s
        frame = Frame()
        motion: dict[int, np.ndarray] = {}
        own_colour: dict[int, Colour] = {}
        own_visible: dict[int, bool] = {}
        alarm_colour = self._alarm_colour(alarm)
        for i, (binding, node) in enumerate(zip(self.bindings, self.nodes, strict=True)):
            state = self._state[i]
            m = motion.get(node)  # None: no motion yet (identity), saves a product per part
            if binding.rotate is not None:
                r = binding.rotate
                reading = readings.get(r.tag, NO_READING)
                if r.unit in ("rpm", "deg/s"):
                    if reading.good:
                        per_s = reading.value * r.scale * (2 * math.pi / 60 if r.unit == "rpm" else math.pi / 180)
                        state.angle = (state.angle + per_s * dt) % (2 * math.pi)
                        frame.continuous |= per_s != 0.0
                    angle = state.angle + math.radians(r.offset)  # a fixed start angle, in degrees
                else:
                    if reading.good:
                        raw = reading.value * r.scale + r.offset
                        state.last_angle = math.radians(raw) if r.unit == "deg" else raw
                    angle = state.last_angle
                m = _then(m, rotation_about(r.axis, angle))
            if binding.translate is not None:
                m = _then(
                    m,
                    translation_along(
                        binding.translate.axis, self._distance(binding.translate, state, readings, dt, frame)
                    ),
                )
            if binding.shake is not None:
                s = binding.shake
                reading = readings.get(s.tag, NO_READING)
                if reading.good and reading.value > s.above:
                    m = _then(m, self._shake(s.style, s.amplitude, s.frequency_hz, state, dt))
                    frame.continuous = True
            if m is not None:
                motion[node] = m
            if binding.colour is not None:
                reading = readings.get(binding.colour.tag, NO_READING)
                if reading.good:
                    state.last_colour = ramp_colour(binding.colour, reading.value)
                if state.last_colour is not None:
                    own_colour[node] = state.last_colour
            if binding.alarm_colour and alarm_colour is not None:
                own_colour[node] = alarm_colour  # the alarm outranks a value colour
            if binding.visible is not None:
                reading = readings.get(binding.visible.tag, NO_READING)
                if reading.good:
                    state.last_visible = condition_holds(binding.visible, reading.value)
                own_visible[node] = own_visible.get(node, True) and state.last_visible
        self._world(frame, motion)
        self._styles(frame, own_colour, own_visible)
        for i, (binding, node) in enumerate(zip(self.bindings, self.nodes, strict=True)):
            if binding.label is not None:
                world = frame.world.get(node, self.static_world[node])
                anchor = world[:3, 3] + np.asarray(binding.label.offset)
                reading = readings.get(binding.label.tag, NO_READING)
                x, y, z = (float(v) for v in anchor)
                frame.labels.append(LabelState(i, node, binding.label.tag, binding.label.format, reading, (x, y, z)))
        return frame

    def _distance(
        self, t: TranslateAction, state: _BindingState, readings: Mapping[str, Reading], dt: float, frame: Frame
    ) -> float:
        reading = readings.get(t.tag, NO_READING)
        if t.mode == "speed":
            if reading.good:
                speed = reading.value * t.scale
                state.distance += speed * dt
                if t.wrap:
                    state.distance %= t.wrap
                frame.continuous |= speed != 0.0
            distance = state.distance + t.offset
        else:
            if reading.good:
                state.last_distance = reading.value * t.scale + t.offset
            distance = state.last_distance
        if t.limits is not None:
            distance = min(max(distance, t.limits[0]), t.limits[1])
        return distance

    def _shake(self, style: str, amplitude: float, frequency: float, state: _BindingState, dt: float) -> np.ndarray:
        state.phase += 2 * math.pi * frequency * dt
        m = np.eye(4)
        if style == "glitch":
            m[:3, 3] = self._rng.uniform(-amplitude, amplitude, 3) * (self._rng.random() < 0.6)
        else:
            p = state.phase
            m[:3, 3] = amplitude * np.array([math.sin(p), math.sin(1.37 * p + 1.1), 0.5 * math.sin(0.71 * p + 2.3)])
        return m

    def _world(self, frame: Frame, motion: dict[int, np.ndarray]) -> None:
        for node in self.moving_nodes:
            parent = self.parents[node]
            base = frame.world.get(parent) if parent in frame.world else None
            if base is None:
                base = self.static_world[parent] if parent >= 0 else np.eye(4)
            world = base @ self.local[node]
            if node in motion:
                world = world @ motion[node]
            frame.world[node] = world

    def _styles(self, frame: Frame, own_colour: dict[int, Colour], own_visible: dict[int, bool]) -> None:
        for node in self.styled_nodes:
            parent = self.parents[node]
            inherited_colour = frame.colours.get(parent) if parent in frame.colours else None
            frame.colours[node] = own_colour.get(node, inherited_colour)
            inherited_visible = frame.visible.get(parent, True)
            frame.visible[node] = inherited_visible and own_visible.get(node, True)

    def _alarm_colour(self, alarm: str | None) -> Colour | None:
        if alarm is None:
            return None
        return self.alarm_colours.get(alarm) or self.alarm_colours.get("high") or (0.84, 0.1, 0.11)
