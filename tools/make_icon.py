"""Draw the application icon: resources/hmi.png (256 px) and resources/hmi.ico (16-256 px).

    python tools/make_icon.py [OUTPUT_DIR]

A dark rounded tile with a trend line and an amber alarm lamp, drawn from signed
distance functions with numpy (4x supersampled, then box-filtered) and written with the
standard library's zlib: no imaging library needed, and the output is the same on every
machine. The outputs are committed; run this again only to change the drawing.
"""

from __future__ import annotations

import struct
import sys
import zlib
from itertools import pairwise
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
SUPERSAMPLE = 4

BACKGROUND_TOP = (0x24, 0x3B, 0x55)
BACKGROUND_BOTTOM = (0x10, 0x1B, 0x2A)
GRID = (0x5B, 0x75, 0x90)
TREND = (0x4C, 0xC9, 0xF0)
LAMP = (0xFF, 0xB7, 0x03)
LAMP_RING = (0x10, 0x1B, 0x2A)
# The trend: x, y in tile units (0..1, y down).
TREND_POINTS = [(0.14, 0.70), (0.30, 0.58), (0.42, 0.64), (0.56, 0.40), (0.68, 0.50), (0.86, 0.28)]


def _coverage(distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (negative inside)."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def _rounded_box(x: np.ndarray, y: np.ndarray, half: float, radius: float) -> np.ndarray:
    qx = np.abs(x - 0.5) - (half - radius)
    qy = np.abs(y - 0.5) - (half - radius)
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - radius


def _polyline(x: np.ndarray, y: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    best = np.full(x.shape, np.inf)
    for (ax, ay), (bx, by) in pairwise(points):
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        best = np.minimum(best, np.hypot(x - ax - t * dx, y - ay - t * dy))
    return best


def _over(canvas: np.ndarray, colour: tuple[int, int, int], alpha: np.ndarray) -> None:
    """Paint `colour` with per-pixel `alpha` over the premultiplied RGBA `canvas`."""
    rgb = np.array(colour, np.float64) / 255.0
    canvas[..., :3] = canvas[..., :3] * (1 - alpha[..., None]) + rgb * alpha[..., None]
    canvas[..., 3] = canvas[..., 3] * (1 - alpha) + alpha


def draw(size: int) -> np.ndarray:
    """The icon at `size` x `size` as straight-alpha RGBA uint8."""
    n = size * SUPERSAMPLE
    pixel = 1.0 / n
    coords = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(coords, coords)
    canvas = np.zeros((n, n, 4))

    tile = _coverage(_rounded_box(x, y, 0.47, 0.17), pixel)
    shade = y[..., None]
    gradient = np.array(BACKGROUND_TOP) * (1 - shade) + np.array(BACKGROUND_BOTTOM) * shade
    canvas[..., :3] = gradient / 255.0 * tile[..., None]
    canvas[..., 3] = tile
    # Grid lines, thick enough to survive the 16 px icon as a texture.
    line = max(0.012, 1.0 / size)
    for level in (0.36, 0.55, 0.74):
        _over(canvas, GRID, 0.45 * tile * _coverage(np.abs(y - level) - line / 2, pixel) * (np.abs(x - 0.5) < 0.36))
    width = max(0.05, 1.6 / size)
    _over(canvas, TREND, tile * _coverage(_polyline(x, y, TREND_POINTS) - width / 2, pixel))
    lamp = np.hypot(x - 0.74, y - 0.74)
    _over(canvas, LAMP_RING, _coverage(lamp - 0.15, pixel))
    _over(canvas, LAMP, _coverage(lamp - 0.11, pixel))

    # Box filter down to the target size (premultiplied, so edges do not darken).
    small = canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 4).mean(axis=(1, 3))
    alpha = small[..., 3:4]
    rgb = np.divide(small[..., :3], alpha, out=np.zeros_like(small[..., :3]), where=alpha > 0)
    out = np.concatenate([rgb, alpha], axis=-1)
    return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def png_bytes(rgba: np.ndarray) -> bytes:
    height, width, _ = rgba.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + rgba[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def ico_bytes(images: dict[int, bytes]) -> bytes:
    """A Windows .ico holding PNG images (Windows Vista and later read these)."""
    entries, offset, blobs = [], 6 + 16 * len(images), []
    for size, data in sorted(images.items()):
        dim = 0 if size >= 256 else size  # 0 means 256 in the directory entry
        entries.append(struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset))
        blobs.append(data)
        offset += len(data)
    return struct.pack("<HHH", 0, 1, len(images)) + b"".join(entries) + b"".join(blobs)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "resources"
    out.mkdir(parents=True, exist_ok=True)
    images = {size: png_bytes(draw(size)) for size in ICO_SIZES}
    (out / "hmi.png").write_bytes(images[256])
    (out / "hmi.ico").write_bytes(ico_bytes(images))
    print(f"wrote {out / 'hmi.png'} and {out / 'hmi.ico'} ({', '.join(map(str, ICO_SIZES))} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
