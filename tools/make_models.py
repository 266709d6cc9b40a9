"""Generate the demo machines' 3D models: models_glb/{cnc_mill,robot_arm,conveyor,pump,cmm}.glb.

    python tools/make_models.py [--out models_glb]

Each model is built from simple numpy primitives and written as glTF 2.0 binary with
hmi.scene.builder. Parts that move are named nodes whose origin sits on the part's joint
axis (its pivot), so a binding rotates or slides a node about its own origin and carries
its children along. Machines are modelled Z-up in metres (machine axes: X left-right, Y
front-back, Z up) under one root node that turns them into glTF's Y-up world, so a
binding's axis "z" is the machine's vertical axis.

Colours follow ISA-101: calm greys, with a few muted accents; the 3D view adds colour only
for abnormal states. The output is deterministic (same bytes on every run) and committed.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hmi.scene.builder import GltfBuilder, Mesh  # noqa: E402
from hmi.scene.transforms import quat_from_axis_angle, trs_matrix  # noqa: E402

GENERATOR = "hmi tools/make_models.py 1"
MAX_TRIANGLES = 20_000
Z_UP_TO_Y_UP = tuple(quat_from_axis_angle("x", -math.pi / 2))

# Palette (sRGB): greys for structure, muted accents for the few parts worth telling apart.
DARK = "#4b4d50"
BASE = "#75787c"
MID = "#8f9296"
LIGHT = "#b4b7ba"
PALE = "#cfd1d3"
STEEL = "#a3a8ad"
BLACK = "#2e3033"
GRANITE = "#55585c"
ACCENT_BLUE = "#5d7286"
ACCENT_TEAL = "#5e7c78"
ACCENT_OCHRE = "#9a8656"
RUBY = "#8a4545"


# -- primitives (Z-up, metres) ---------------------------------------------------------------


def box(size: tuple[float, float, float], center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Mesh:
    """An axis-aligned box with flat normals (24 vertices, 12 triangles)."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    c = np.asarray(center, dtype=np.float64)
    positions, normals, indices = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            u, v = [a for a in range(3) if a != axis]
            corners = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis] = sign * half[axis]
                p[u] = du * half[u]
                p[v] = dv * half[v]
                corners.append(p + c)
            base = len(positions)
            positions.extend(corners)
            normals.extend([normal] * 4)
            # Wind counter-clockwise seen from outside.
            flip = np.dot(np.cross(corners[1] - corners[0], corners[2] - corners[0]), normal) < 0
            quad = [(0, 2, 1), (0, 3, 2)] if flip else [(0, 1, 2), (0, 2, 3)]
            indices.extend([[base + a, base + b, base + d] for a, b, d in quad])
    return Mesh(np.array(positions), np.array(normals), np.array(indices))


def frustum(
    r_bottom: float,
    r_top: float,
    height: float,
    segments: int = 32,
    caps: bool = True,
    z0: float = 0.0,
) -> Mesh:
    """A cylinder or cone frustum along +Z from z0, smooth sides, flat caps."""
    angles = np.linspace(0.0, 2.0 * math.pi, segments + 1)
    cos, sin = np.cos(angles), np.sin(angles)
    slope = (r_bottom - r_top) / height if height else 0.0
    side_normal = np.stack([cos, sin, np.full_like(cos, slope)], axis=1)
    side_normal /= np.linalg.norm(side_normal, axis=1, keepdims=True)
    bottom = np.stack([r_bottom * cos, r_bottom * sin, np.full_like(cos, z0)], axis=1)
    top = np.stack([r_top * cos, r_top * sin, np.full_like(cos, z0 + height)], axis=1)
    positions = [bottom, top]
    normals = [side_normal, side_normal]
    n = segments + 1
    idx = []
    for i in range(segments):
        a, b, c, d = i, i + 1, n + i + 1, n + i
        idx += [[a, b, c], [a, c, d]]
    offset = 2 * n
    if caps:
        for z, r, sign in ((z0, r_bottom, -1.0), (z0 + height, r_top, 1.0)):
            if r <= 0:
                continue
            ring = np.stack([r * cos[:-1], r * sin[:-1], np.full(segments, z)], axis=1)
            center = np.array([[0.0, 0.0, z]])
            positions += [center, ring]
            normals += [np.tile([0.0, 0.0, sign], (segments + 1, 1))]
            for i in range(segments):
                a, b = offset + 1 + i, offset + 1 + (i + 1) % segments
                idx.append([offset, a, b] if sign > 0 else [offset, b, a])
            offset += segments + 1
    return Mesh(np.concatenate(positions), np.concatenate(normals), np.array(idx))


def cylinder(radius: float, height: float, segments: int = 32, z0: float = 0.0) -> Mesh:
    return frustum(radius, radius, height, segments, True, z0)


def tube(r_outer: float, r_inner: float, height: float, segments: int = 40, z0: float = 0.0) -> Mesh:
    """A ring: outer and inner walls with flat annular ends."""
    outer = frustum(r_outer, r_outer, height, segments, caps=False, z0=z0)
    inner = frustum(r_inner, r_inner, height, segments, caps=False, z0=z0)
    inner = Mesh(inner.positions, -inner.normals, inner.indices[:, ::-1])
    angles = np.linspace(0.0, 2.0 * math.pi, segments + 1)
    ends = []
    for z, sign in ((z0, -1.0), (z0 + height, 1.0)):
        ro = np.stack([r_outer * np.cos(angles), r_outer * np.sin(angles), np.full_like(angles, z)], axis=1)
        ri = np.stack([r_inner * np.cos(angles), r_inner * np.sin(angles), np.full_like(angles, z)], axis=1)
        n = segments + 1
        idx = []
        for i in range(segments):
            a, b, c, d = i, i + 1, n + i + 1, n + i
            idx += [[a, c, b], [a, d, c]] if sign > 0 else [[a, b, c], [a, c, d]]
        ends.append(Mesh(np.concatenate([ro, ri]), np.tile([0.0, 0.0, sign], (2 * n, 1)), np.array(idx)))
    return Mesh.merge([outer, inner, *ends])


def sphere(radius: float, rings: int = 12, segments: int = 24) -> Mesh:
    theta = np.linspace(0.0, math.pi, rings + 1)
    phi = np.linspace(0.0, 2.0 * math.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    normal = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    idx = []
    n = segments + 1
    for r in range(rings):
        for s in range(segments):
            a, b = r * n + s, r * n + s + 1
            c, d = (r + 1) * n + s + 1, (r + 1) * n + s
            idx += [[a, d, c], [a, c, b]]
    return Mesh(normal * radius, normal, np.array(idx))


def rotation_about(axis: str, angle_rad: float) -> np.ndarray:
    """Through a quaternion, as the committed models were built (the view's Rodrigues form
    differs in the last bits, which would change every file)."""
    return trs_matrix(rotation=quat_from_axis_angle(axis, angle_rad))


def along(mesh: Mesh, axis: str) -> Mesh:
    """Turn a +Z-aligned primitive so it runs along +X or +Y."""
    if axis == "x":
        return mesh.transformed(rotation_about("y", math.pi / 2))
    if axis == "y":
        return mesh.transformed(rotation_about("x", -math.pi / 2))
    return mesh


def moved(mesh: Mesh, offset: tuple[float, float, float]) -> Mesh:
    m = np.eye(4)
    m[:3, 3] = offset
    return mesh.transformed(m)


def turned(mesh: Mesh, axis: str, degrees: float) -> Mesh:
    return mesh.transformed(rotation_about(axis, math.radians(degrees)))


# -- the model being written ------------------------------------------------------------------


class Model:
    """A builder with a material palette and a part helper."""

    def __init__(self, root_name: str) -> None:
        self.b = GltfBuilder(generator=GENERATOR)
        self._materials: dict[str, int] = {}
        self.root = self.b.node(root_name, rotation=Z_UP_TO_Y_UP)

    def material(self, colour: str, metallic: float = 0.15, roughness: float = 0.6) -> int:
        key = f"{colour}/{metallic}/{roughness}"
        if key not in self._materials:
            name = f"mat_{colour.lstrip('#')}" + ("_metal" if metallic > 0.5 else "")
            self._materials[key] = self.b.material(name, colour, metallic, roughness)
        return self._materials[key]

    def part(
        self,
        name: str,
        parent: int | None,
        pieces: list[tuple[Mesh, str]] | None = None,
        translation: tuple[float, float, float] | None = None,
        rotation: tuple[float, float, float, float] | None = None,
        metal: tuple[str, ...] = (),
    ) -> int:
        """A node; pieces with the same colour share one primitive (one VTK actor)."""
        mesh_index = None
        if pieces:
            by_colour: dict[str, list[Mesh]] = {}
            for mesh, colour in pieces:
                by_colour.setdefault(colour, []).append(mesh)
            parts = [
                (Mesh.merge(meshes), self.material(c, 0.75 if c in metal else 0.15, 0.35 if c in metal else 0.6))
                for c, meshes in by_colour.items()
            ]
            mesh_index = self.b.mesh(name, parts)
        return self.b.node(
            name,
            parent=self.root if parent is None else parent,
            mesh=mesh_index,
            translation=translation,
            rotation=rotation,
        )

    def write(self, path: Path) -> int:
        triangles = self.b.triangle_count()
        if triangles > MAX_TRIANGLES:
            raise SystemExit(f"{path.name}: {triangles} triangles, more than {MAX_TRIANGLES}")
        path.write_bytes(self.b.to_glb())
        return triangles


# -- CNC mill: bed-type vertical machining centre ----------------------------------------------


def cnc_mill() -> Model:
    m = Model("CncMill")
    bed = [
        (box((1.70, 1.05, 0.62), (0, 0, 0.31)), BASE),  # machine bed
        (box((1.76, 1.11, 0.06), (0, 0, 0.03)), DARK),  # plinth
        (box((0.70, 0.48, 1.75), (0, 0.30, 0.62 + 0.875)), BASE),  # column (at the back)
        (box((0.74, 0.52, 0.05), (0, 0.30, 2.395)), DARK),  # column cap
        (box((0.30, 0.60, 0.10), (0.72, -0.10, 0.05)), DARK),  # coolant tank
    ]
    for x in (-0.26, 0.26):
        bed.append((box((0.06, 0.62, 0.04), (x, -0.20, 0.64)), STEEL))  # Y linear guides
    for x in (-0.18, 0.18):
        bed.append((box((0.06, 0.03, 1.40), (x, 0.045, 1.60)), STEEL))  # Z guides on the column front
    # Operator pendant on its own post, front right.
    bed += [
        (box((0.06, 0.06, 1.16), (1.08, -0.62, 0.58)), MID),
        (box((0.40, 0.07, 0.30), (1.08, -0.62, 1.28)), DARK),
        (box((0.26, 0.01, 0.17), (1.08, -0.66, 1.31)), ACCENT_BLUE),  # screen
    ]
    base = m.part("Base", None, bed, metal=(STEEL,))
    # Y carriage (saddle): slides front-back on the bed.
    saddle = m.part(
        "AxisY",
        base,
        [(box((0.80, 0.50, 0.12), (0, 0, 0.06)), MID)]
        + [(box((0.90, 0.05, 0.03), (0, y, 0.135)), STEEL) for y in (-0.15, 0.15)],
        translation=(0.0, -0.22, 0.66),
        metal=(STEEL,),
    )
    # X carriage: slides left-right on the saddle, carries the table.
    xcar = m.part("AxisX", saddle, [(box((0.70, 0.42, 0.06), (0, 0, 0.03)), DARK)], translation=(0.0, 0.0, 0.15))
    table = [(box((1.20, 0.46, 0.08), (0, 0, 0.10)), LIGHT)]
    for y in (-0.14, 0.0, 0.14):
        table.append((box((1.20, 0.018, 0.012), (0, y, 0.1445)), DARK))  # T-slots
    # Workpiece in a vice.
    table += [
        (box((0.26, 0.18, 0.07), (0.0, 0, 0.175)), DARK),
        (box((0.20, 0.14, 0.09), (0.0, 0, 0.255)), PALE),
    ]
    m.part("Table", xcar, table)
    # Z carriage on the column front, moves up and down.
    zcar = m.part("AxisZ", base, [(box((0.50, 0.10, 0.55), (0, 0, 0)), MID)], translation=(0.0, 0.01, 1.75))
    head = [
        (box((0.36, 0.50, 0.42), (0, -0.20, 0.0)), LIGHT),  # head housing
        (cylinder(0.10, 0.26, 32, z0=0.21).transformed(_translate(0, -0.24, 0)), MID),  # spindle motor
        (box((0.22, 0.22, 0.05), (0, -0.24, 0.495)), DARK),
    ]
    shead = m.part("SpindleHead", zcar, head, translation=(0.0, -0.05, 0.0))
    spindle = [
        (cylinder(0.075, 0.10, 40, z0=-0.10), STEEL),  # spindle nose
        (frustum(0.032, 0.05, 0.06, 32, z0=-0.16), DARK),  # tool holder taper
        (cylinder(0.012, 0.10, 20, z0=-0.26), ACCENT_OCHRE),  # cutter
        (box((0.02, 0.09, 0.03), (0.0, 0.0, -0.13)), MID),  # drive key: shows the rotation
    ]
    # The spindle's origin is on its axis, at the bottom face of the head.
    m.part("Spindle", shead, spindle, translation=(0.0, -0.20, -0.21), metal=(STEEL,))
    # Stack light on the column: three muted lamps.
    lamps = m.part("StackLight", base, [(cylinder(0.02, 0.10, 16), DARK)], translation=(0.26, 0.40, 2.42))
    for i, (name, colour) in enumerate((("LampGreen", "#6b7d6b"), ("LampAmber", "#8f8462"), ("LampRed", "#866565"))):
        m.part(name, lamps, [(cylinder(0.035, 0.055, 20), colour)], translation=(0, 0, 0.10 + 0.058 * i))
    return m


def _translate(x: float, y: float, z: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


# -- Robot arm: six-axis industrial robot ----------------------------------------------------------


def robot_arm() -> Model:
    m = Model("RobotArm")
    base = m.part(
        "Base",
        None,
        [
            (box((0.70, 0.70, 0.04), (0, 0, 0.02)), DARK),  # floor plate
            (cylinder(0.24, 0.26, 48, z0=0.04), BASE),  # pedestal
            (cylinder(0.27, 0.04, 48, z0=0.30), MID),
            (box((0.14, 0.12, 0.12), (-0.22, 0, 0.12)), DARK),  # cable box
        ],
    )
    # Joint 1: turret rotating about the vertical axis.
    j1 = m.part(
        "Joint1",
        base,
        [
            (cylinder(0.25, 0.16, 48), LIGHT),
            (box((0.34, 0.40, 0.24), (0.08, 0, 0.27)), LIGHT),  # shoulder housing
            (
                along(cylinder(0.09, 0.10, 32, z0=-0.05), "y").transformed(_translate(-0.05, 0.25, 0.27)),
                MID,
            ),  # J1 motor
        ],
        translation=(0.0, 0.0, 0.34),
    )
    # Joint 2: shoulder, rotates about Y; lower arm points up.
    j2 = m.part(
        "Joint2",
        j1,
        [
            (along(cylinder(0.15, 0.12, 40, z0=-0.06), "y").transformed(_translate(0, -0.26, 0)), MID),  # hub
            (box((0.17, 0.12, 0.76), (0, -0.26, 0.38)), LIGHT),  # lower arm
            (along(cylinder(0.10, 0.10, 32, z0=0.0), "y").transformed(_translate(0, -0.33, 0)), DARK),  # J2 motor
        ],
        translation=(0.15, 0.0, 0.30),
    )
    # Joint 3: elbow, rotates about Y; upper arm points forward (+X).
    j3 = m.part(
        "Joint3",
        j2,
        [
            (along(cylinder(0.12, 0.27, 40, z0=-0.135), "y"), MID),  # elbow hub
            (box((0.30, 0.24, 0.22), (-0.02, 0, 0.05)), LIGHT),  # elbow housing
            (box((0.18, 0.16, 0.16), (-0.24, 0, 0.06)), DARK),  # counterweight / motors
        ],
        translation=(0.0, -0.26, 0.76),
    )
    # Joint 4: forearm roll about X.
    j4 = m.part(
        "Joint4",
        j3,
        [
            (along(cylinder(0.085, 0.62, 40), "x"), LIGHT),
            (along(cylinder(0.095, 0.05, 40), "x"), MID),
        ],
        translation=(0.13, 0.0, 0.05),
    )
    # Joint 5: wrist pitch about Y, at the forearm's end.
    j5 = m.part(
        "Joint5",
        j4,
        [
            (along(cylinder(0.07, 0.16, 32, z0=-0.08), "y"), MID),
            (box((0.12, 0.10, 0.10), (0.05, 0, 0)), LIGHT),
        ],
        translation=(0.68, 0.0, 0.0),
    )
    # Joint 6: flange roll about X, with a small two-finger gripper.
    m.part(
        "Joint6",
        j5,
        [
            (along(cylinder(0.05, 0.04, 32), "x"), STEEL),
            (box((0.06, 0.12, 0.05), (0.07, 0, 0)), DARK),
            (box((0.07, 0.02, 0.03), (0.135, 0.04, 0)), ACCENT_OCHRE),
            (box((0.07, 0.02, 0.03), (0.135, -0.04, 0)), ACCENT_OCHRE),
        ],
        translation=(0.11, 0.0, 0.0),
        metal=(STEEL,),
    )
    return m


# -- Conveyor: belt conveyor with rollers and parcels ------------------------------------------------

CONVEYOR_LENGTH = 3.0
CONVEYOR_ROLLERS = 9
BELT_TOP = 0.80


def conveyor() -> Model:
    m = Model("Conveyor")
    length, width = CONVEYOR_LENGTH, 0.60
    frame = []
    for y in (-width / 2 - 0.03, width / 2 + 0.03):
        frame.append((box((length + 0.1, 0.04, 0.16), (0, y, BELT_TOP - 0.06)), BASE))  # side rails
        for x in np.linspace(-length / 2 + 0.15, length / 2 - 0.15, 4):
            frame.append((box((0.06, 0.06, BELT_TOP - 0.12), (x, y, (BELT_TOP - 0.12) / 2)), MID))  # legs
            frame.append((box((0.14, 0.12, 0.02), (x, y, 0.01)), DARK))  # feet
    for x in np.linspace(-length / 2 + 0.15, length / 2 - 0.15, 4):
        frame.append((box((0.04, width + 0.06, 0.04), (x, 0, 0.25)), MID))  # cross braces
    frame.append((box((0.30, 0.22, 0.26), (length / 2 - 0.25, -width / 2 - 0.20, BELT_TOP - 0.25)), ACCENT_BLUE))
    m.part("Frame", None, frame)
    # Belt: the carrying side and the return side, with cleats that travel (wrap every 0.25 m).
    belt = [
        (box((length, width, 0.012), (0, 0, BELT_TOP + 0.006)), BLACK),
        (box((length, width, 0.012), (0, 0, BELT_TOP - 0.09)), BLACK),
    ]
    m.part("Belt", None, belt)
    cleats = [
        (box((0.02, width - 0.04, 0.018), (x, 0, BELT_TOP + 0.021)), DARK)
        for x in np.arange(-length / 2 + 0.125, length / 2 - 0.1, 0.25)
    ]
    m.part("BeltCleats", None, cleats)
    rollers = m.part("Rollers", None)
    radius = 0.042
    for i, x in enumerate(np.linspace(-length / 2 + 0.05, length / 2 - 0.05, CONVEYOR_ROLLERS)):
        roller = [
            (along(cylinder(radius, width - 0.02, 24, z0=-(width - 0.02) / 2), "y"), STEEL),
            (box((0.012, width - 0.01, 0.012), (0, 0, radius - 0.004)), DARK),  # a seam so turning shows
        ]
        m.part(
            f"Roller{i + 1}", rollers, roller, translation=(float(x), 0.0, BELT_TOP - radius - 0.002), metal=(STEEL,)
        )
    items = m.part("Items", None, translation=(-length / 2 + 0.2, 0.0, BELT_TOP + 0.012))
    parcels = [((0.30, 0.24, 0.18), 0.0, PALE), ((0.22, 0.30, 0.14), 1.0, LIGHT), ((0.26, 0.22, 0.22), 2.0, PALE)]
    for i, (size, x, colour) in enumerate(parcels):
        m.part(f"Item{i + 1}", items, [(box(size, (0, 0, size[2] / 2)), colour)], translation=(x, 0.0, 0.0))
    return m


# -- Pump: end-suction centrifugal pump with motor on a baseplate ---------------------------------------


def pump() -> Model:
    m = Model("PumpSet")
    shaft_z = 0.42
    base = [(box((1.60, 0.50, 0.08), (0.35, 0, 0.04)), DARK)]
    base += [(box((0.08, 0.40, 0.02), (x, 0, 0.09)), BASE) for x in (-0.25, 0.15, 0.55, 0.95)]
    m.part("Baseplate", None, base)
    # Casing: volute shown cut away at the front so the impeller inside is visible.
    volute = along(tube(0.24, 0.19, 0.16, 48, z0=-0.08), "x")
    back = along(cylinder(0.24, 0.02, 48, z0=0.08), "x")
    casing = [
        (volute, ACCENT_TEAL),
        (back, ACCENT_TEAL),
        (cylinder(0.07, 0.30, 32, z0=0.18), ACCENT_TEAL),  # discharge nozzle (up)
        (cylinder(0.10, 0.03, 32, z0=0.46), ACCENT_TEAL),  # discharge flange
        (along(cylinder(0.08, 0.22, 32, z0=-0.32), "x"), ACCENT_TEAL),  # suction nozzle (axial)
        (along(cylinder(0.11, 0.03, 32, z0=-0.35), "x"), ACCENT_TEAL),  # suction flange
        (box((0.10, 0.30, shaft_z - 0.12), (0.02, 0, -(shaft_z - 0.12) / 2 - 0.12)), BASE),  # foot
        (box((0.34, 0.16, 0.16), (0.30, 0, -0.09)), BASE),  # bearing frame
        (along(cylinder(0.07, 0.34, 32, z0=0.10), "x"), MID),  # bearing housing
    ]
    m.part("Casing", None, casing, translation=(0.0, 0.0, shaft_z))
    # Impeller: hub and six curved-ish vanes, origin on the shaft axis.
    impeller = [
        (along(cylinder(0.05, 0.10, 24, z0=-0.05), "x"), STEEL),
        (along(cylinder(0.17, 0.015, 40, z0=0.035), "x"), STEEL),
    ]
    for k in range(6):
        vane = turned(box((0.07, 0.13, 0.018), (0.0, 0.10, 0.0)), "z", 12)
        impeller.append((turned(along(vane, "x"), "x", k * 60.0), MID))
    m.part("Impeller", None, impeller, translation=(0.0, 0.0, shaft_z), metal=(STEEL,))
    # Coupling between the pump shaft and the motor shaft (jaw segments show the turning).
    coupling = [
        (along(cylinder(0.022, 0.24, 20, z0=-0.12), "x"), STEEL),  # shaft
        (along(cylinder(0.075, 0.05, 32, z0=-0.06), "x"), MID),
        (along(cylinder(0.075, 0.05, 32, z0=0.01), "x"), MID),
    ]
    coupling += [(turned(box((0.02, 0.03, 0.03), (0.0, 0.0, 0.06)), "x", k * 90.0), ACCENT_OCHRE) for k in range(4)]
    m.part("Coupling", None, coupling, translation=(0.62, 0.0, shaft_z), metal=(STEEL,))
    # Motor: finned body, fan cowl, terminal box, feet.
    motor = [
        (along(cylinder(0.17, 0.55, 48, z0=0.0), "x"), MID),
        (along(cylinder(0.175, 0.03, 48, z0=0.0), "x"), BASE),
        (along(cylinder(0.16, 0.14, 48, z0=0.55), "x"), BASE),  # fan cowl
        (box((0.16, 0.14, 0.10), (0.22, 0, 0.20)), BASE),  # terminal box
        (box((0.44, 0.34, shaft_z - 0.22), (0.28, 0, -(shaft_z - 0.22) / 2 - 0.14)), BASE),  # feet
    ]
    for k in range(12):
        motor.append((turned(box((0.50, 0.012, 0.03), (0.28, 0.0, 0.175)), "x", k * 30.0 + 15.0), MID))
    m.part("Motor", None, motor, translation=(0.72, 0.0, shaft_z))
    return m


# -- CMM: bridge-type coordinate measuring machine --------------------------------------------------------


def cmm() -> Model:
    m = Model("Cmm")
    table = [
        (box((1.40, 1.80, 0.22), (0, 0, 0.71)), GRANITE),  # granite plate
        (box((1.20, 1.60, 0.58), (0, 0, 0.31)), MID),  # stand
        (box((1.30, 1.70, 0.02), (0, 0, 0.01)), DARK),
        (box((0.04, 1.72, 0.05), (0.62, 0, 0.845)), STEEL),  # Y guideway (right)
    ]
    t = m.part("Table", None, table, metal=(STEEL,))
    part = [
        (box((0.36, 0.28, 0.10), (0, 0, 0.05)), PALE),
        (box((0.14, 0.28, 0.08), (-0.11, 0, 0.14)), PALE),
        (cylinder(0.035, 0.004, 24, z0=0.1).transformed(_translate(0.09, 0.06, 0)), DARK),  # bores (marks)
        (cylinder(0.035, 0.004, 24, z0=0.1).transformed(_translate(0.09, -0.06, 0)), DARK),
    ]
    m.part("Part", t, part, translation=(0.0, 0.1, 0.82))
    # Bridge: travels along Y on the table; legs left and right, beam across X.
    bridge = [
        (box((0.10, 0.18, 0.75), (-0.62, 0, 0.375)), LIGHT),
        (box((0.12, 0.16, 0.75), (0.62, 0, 0.375)), LIGHT),
        (box((1.40, 0.20, 0.16), (0, 0, 0.83)), LIGHT),  # beam
        (box((1.36, 0.02, 0.03), (0, -0.11, 0.86)), STEEL),  # X scale
    ]
    br = m.part("Bridge", t, bridge, translation=(0.0, -0.40, 0.82), metal=(STEEL,))
    # Carriage: travels along X on the beam.
    carriage = [(box((0.24, 0.30, 0.26), (0, 0, 0)), MID), (box((0.18, 0.02, 0.12), (0, -0.16, 0.04)), DARK)]
    car = m.part("Carriage", br, carriage, translation=(0.0, 0.0, 0.83))
    # Quill (Z ram): slides vertically through the carriage; origin at its lower end.
    quill = [(box((0.09, 0.09, 0.80), (0, 0, 0.40)), PALE), (cylinder(0.05, 0.06, 24, z0=-0.06), DARK)]
    q = m.part("Quill", car, quill, translation=(0.0, 0.0, -0.25))
    probe = [
        (cylinder(0.03, 0.05, 24, z0=-0.05), DARK),  # probe head
        (cylinder(0.004, 0.07, 12, z0=-0.12), STEEL),  # stylus
        (moved(sphere(0.008, 8, 16), (0, 0, -0.125)), RUBY),  # ruby tip
    ]
    m.part("Probe", q, probe, translation=(0.0, 0.0, -0.06), metal=(STEEL,))
    return m


MODELS: dict[str, Callable[[], Model]] = {
    "cnc_mill": cnc_mill,
    "robot_arm": robot_arm,
    "conveyor": conveyor,
    "pump": pump,
    "cmm": cmm,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "models_glb")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in MODELS.items():
        path = args.out / f"{name}.glb"
        triangles = make().write(path)
        print(f"{path}: {triangles:,} triangles, {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
