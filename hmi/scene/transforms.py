"""4x4 matrices for glTF nodes: TRS <-> matrix, rotations about an axis, and world transforms.

glTF stores matrices column-major; everything here is row-major numpy (`m @ point`), so a
node's `matrix` array is read with `.reshape(4, 4).T`. Rotations are unit quaternions
(x, y, z, w), glTF's order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def axis_vector(axis: str | Sequence[float]) -> np.ndarray:
    """'x'/'y'/'z' (optionally '-x') or a 3-vector, as a unit vector."""
    if isinstance(axis, str):
        sign = -1.0 if axis.startswith("-") else 1.0
        vec = np.array(AXES[axis.lstrip("+-").lower()]) * sign
    else:
        vec = np.asarray(axis, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(vec))
    if not math.isfinite(norm) or norm == 0.0:
        raise ValueError("an axis needs a non-zero length")
    return vec / norm


def quat_from_axis_angle(axis: str | Sequence[float], angle_rad: float) -> np.ndarray:
    vec = axis_vector(axis)
    half = 0.5 * angle_rad
    return np.array([*(vec * math.sin(half)), math.cos(half)])


def quat_multiply(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """The rotation b followed by a (a * b)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def rotation_matrix3(quat: Sequence[float]) -> np.ndarray:
    x, y, z, w = (float(c) for c in quat)
    n = x * x + y * y + z * z + w * w
    if n == 0.0:
        return np.eye(3)
    s = 2.0 / n
    return np.array(
        [
            [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
            [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
            [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
        ]
    )


def trs_matrix(
    translation: Sequence[float] = (0.0, 0.0, 0.0),
    rotation: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
    scale: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """T * R * S, the order glTF composes a node's local transform in."""
    m = np.eye(4)
    m[:3, :3] = rotation_matrix3(rotation) * np.asarray(scale, dtype=np.float64)[None, :]
    m[:3, 3] = translation
    return m


@lru_cache(maxsize=256)
def _unit_axis_cached(axis: str | tuple[float, ...]) -> tuple[float, float, float]:
    x, y, z = axis_vector(axis)
    return float(x), float(y), float(z)


def _unit_axis(axis: str | Sequence[float]) -> tuple[float, float, float]:
    """axis_vector as a tuple, cached: the 3D view asks for the same few axes every frame."""
    return _unit_axis_cached(axis if isinstance(axis, str) else tuple(float(v) for v in axis))


def rotation_about(axis: str | Sequence[float], angle_rad: float) -> np.ndarray:
    """A 4x4 rotation about `axis` through the origin (a node's pivot). Rodrigues' formula
    in plain floats: one array per call (the view builds one per bound part per frame)."""
    x, y, z = _unit_axis(axis)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    t = 1.0 - c
    return np.array(
        [
            [t * x * x + c, t * x * y - s * z, t * x * z + s * y, 0.0],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x, 0.0],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def translation_along(axis: str | Sequence[float], distance: float) -> np.ndarray:
    x, y, z = _unit_axis(axis)
    return np.array(
        [
            [1.0, 0.0, 0.0, x * distance],
            [0.0, 1.0, 0.0, y * distance],
            [0.0, 0.0, 1.0, z * distance],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def gltf_matrix(values: Sequence[float]) -> np.ndarray:
    """A node's column-major `matrix` as a row-major 4x4."""
    return np.asarray(values, dtype=np.float64).reshape(4, 4).T.copy()


def world_matrices(local: Sequence[np.ndarray], parents: Sequence[int]) -> list[np.ndarray]:
    """World transforms from local ones; `parents[i]` is -1 for a root. Parents need not
    come before children in the list (glTF does not order them); cycles must be excluded
    beforehand (the validator does)."""
    n = len(local)
    world: list[np.ndarray | None] = [None] * n
    for start in range(n):
        chain = []
        node = start
        while node >= 0 and world[node] is None:
            chain.append(node)
            node = parents[node]
        base = world[node] if node >= 0 else np.eye(4)
        for item in reversed(chain):
            base = base @ local[item]
            world[item] = base
    return world  # type: ignore[return-value]
