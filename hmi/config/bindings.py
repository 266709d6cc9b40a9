"""3D bindings and camera presets in the project file: `[[bindings]]` and `[[cameras]]`.

A binding ties one glTF node (by its name in the GLB, as the modelling tool wrote it) of
one machine's model to tags: rotate or slide it, colour it by a value or by the machine's
alarm state, show or hide it, shake it while a vibration is high, label it with a live
value. docs/project-file.md documents every key.

    [[bindings]]
    machine = "cnc01"
    node = "Spindle"
    rotate = { tag = "cnc01.spindle_speed", axis = "z", unit = "rpm" }
"""

from __future__ import annotations

import string
from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from hmi.config.base import NumberOrBool, Pair, Strict, Vector3

HexColour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]
# An axis in the node's own frame: a name, or a direction vector.
Axis = Literal["x", "y", "z", "-x", "-y", "-z"] | Vector3

LABEL_FIELDS = frozenset({"value", "raw", "unit", "tag", "signal", "node"})
DEFAULT_RAMP = ("#8f9296", "#d7191c")


def _check_axis(value: Axis) -> Axis:
    if isinstance(value, tuple) and not any(value):
        raise ValueError("an axis vector must not be zero")
    return value


class RotateAction(Strict):
    """Turn the node about `axis` through its origin (the joint's pivot).

    unit "deg"/"rad": the tag is an angle, angle = value * scale + offset.
    unit "rpm"/"deg/s": the tag is a speed (times `scale`); the node turns continuously,
    advanced each frame by the elapsed time, from a start angle of `offset` degrees, and
    stops while the tag's quality is bad."""

    tag: str
    axis: Axis = "z"
    unit: Literal["deg", "rad", "rpm", "deg/s"] = "deg"
    scale: float = 1.0
    offset: float = 0.0

    validate_axis = field_validator("axis")(_check_axis)


class TranslateAction(Strict):
    """Slide the node along `axis` (model units, metres in the demo models).

    mode "position": distance = value * scale + offset, clamped to `limits` if given.
    mode "speed": the tag is a speed (units/s) times `scale`; the node moves continuously
    and jumps back every `wrap` units (belt cleats, parcels on a conveyor)."""

    tag: str
    axis: Axis = "x"
    scale: float = 1.0
    offset: float = 0.0
    mode: Literal["position", "speed"] = "position"
    wrap: float | None = Field(default=None, gt=0)
    limits: Pair | None = None

    validate_axis = field_validator("axis")(_check_axis)

    @model_validator(mode="after")
    def _consistent(self) -> TranslateAction:
        if self.limits is not None and not self.limits[0] < self.limits[1]:
            raise ValueError("limits must be [low, high] with low < high")
        if self.wrap is not None and self.mode != "speed":
            raise ValueError('wrap applies to mode = "speed" only')
        return self


class ColourAction(Strict):
    """Colour the node (and its children) by where the tag's value sits in `range`:
    `colours` are evenly spaced stops from range[0] to range[1]."""

    tag: str
    range: Pair
    colours: list[HexColour] = Field(default_factory=lambda: list(DEFAULT_RAMP), min_length=2)

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError("range must be [low, high] with low < high")
        return value


class VisibleAction(Strict):
    """Show the node (and its children) only while `tag op value` holds."""

    tag: str
    op: Literal["==", "!=", ">", ">=", "<", "<="] = "!="
    value: NumberOrBool = 0.0  # true/false for a bool tag


class ShakeAction(Strict):
    """Shake the node while the tag is above `above`: "shake" is a smooth tremor,
    "glitch" jumps irregularly. Amplitude in model units."""

    tag: str
    above: float
    amplitude: float = Field(default=0.004, gt=0)
    frequency_hz: float = Field(default=12.0, gt=0, le=60)
    style: Literal["shake", "glitch"] = "shake"


class LabelAction(Strict):
    """A live value label anchored to the node's origin plus `offset` (world units).

    `format` fields: {value} (formatted), {raw} (the number), {unit}, {tag}, {signal}, {node}."""

    tag: str
    format: str = "{signal}: {value} {unit}"
    offset: Vector3 = (0.0, 0.0, 0.0)

    @field_validator("format")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"bad format string: {exc}") from None
        for _, name, _, _ in parsed:
            if name is None:
                continue
            if name not in LABEL_FIELDS:
                known = ", ".join(sorted(LABEL_FIELDS))
                raise ValueError(f"unknown field {{{name}}} in format (known: {known})")
        return value


class BindingConfig(Strict):
    """One glTF node of one machine's model, bound to tags. At least one action."""

    machine: str
    node: str = Field(min_length=1)
    rotate: RotateAction | None = None
    translate: TranslateAction | None = None
    colour: ColourAction | None = None
    alarm_colour: bool = False
    visible: VisibleAction | None = None
    shake: ShakeAction | None = None
    label: LabelAction | None = None

    @model_validator(mode="after")
    def _has_action(self) -> BindingConfig:
        if not (self.alarm_colour or any(getattr(self, k) is not None for k in ACTIONS)):
            raise ValueError(f"a binding needs at least one of {', '.join(ACTIONS)} or alarm_colour = true")
        return self

    def tags(self) -> list[str]:
        """The tags this binding reads, in action order, without repeats."""
        out: list[str] = []
        for key in ACTIONS:
            action = getattr(self, key)
            if action is not None and action.tag not in out:
                out.append(action.tag)
        return out


ACTIONS = ("rotate", "translate", "colour", "visible", "shake", "label")


class CameraPresetConfig(Strict):
    """A named camera position for one machine's 3D view (world coordinates: Y up)."""

    machine: str
    name: str = Field(min_length=1)
    position: Vector3
    focal_point: Vector3
    view_up: Vector3 = (0.0, 1.0, 0.0)
    view_angle: float = Field(default=30.0, gt=1, lt=170)

    @model_validator(mode="after")
    def _distinct(self) -> CameraPresetConfig:
        if self.position == self.focal_point:
            raise ValueError("position and focal_point must differ")
        if not any(self.view_up):
            raise ValueError("view_up must not be zero")
        return self


def check_bindings(
    bindings: list[BindingConfig],
    cameras: list[CameraPresetConfig],
    machines: Collection[str],
    tags: Collection[str],
) -> list[tuple[list[str | int], str]]:
    """Cross-references for the loader: machines and tags must exist. Returns
    (key path, message) pairs like hmi.config.loader.cross_check. Node names are checked
    against the GLB by hmi.scene.bindings_check.check_binding_nodes (it reads the model files)."""
    problems: list[tuple[list[str | int], str]] = []
    for i, binding in enumerate(bindings):
        if binding.machine not in machines:
            problems.append((["bindings", i, "machine"], f"unknown machine {binding.machine!r}"))
        for key in ACTIONS:
            action = getattr(binding, key)
            if action is not None and action.tag not in tags:
                problems.append((["bindings", i, key, "tag"], f"unknown tag {action.tag!r}"))
    seen: set[tuple[str, str]] = set()
    for i, camera in enumerate(cameras):
        if camera.machine not in machines:
            problems.append((["cameras", i, "machine"], f"unknown machine {camera.machine!r}"))
        if (camera.machine, camera.name) in seen:
            problems.append((["cameras", i, "name"], f"a second camera {camera.name!r} for {camera.machine}"))
        seen.add((camera.machine, camera.name))
    return problems
