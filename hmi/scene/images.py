"""Can VTK decode this embedded texture? A structural check of PNG and JPEG bytes.

vtkGLTFImporter 9.7 hands texture bytes to libpng/libjpeg through VTK's readers, and a PNG
whose chunks are damaged (a CRC error in IHDR, a broken zlib stream) aborts the whole
process ("libpng error: IHDR: CRC error", then "double free or corruption"). So an image
is used only if its bytes read as a complete PNG (every chunk's CRC right, IHDR sane, IDAT
a zlib stream, IEND at the end) or a complete JPEG (markers well formed, a frame header
with a size, a scan, an end marker). Anything else is left out of what VTK receives
(hmi/scene/sanitise.py). Checking takes well under a millisecond per megabyte.

Pure functions of the bytes, stdlib only; runs on any thread.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
MAX_IMAGE_SIDE = 32768  # VTK's texture upload and a software renderer give up well before
# PNG colour type -> (allowed bit depths, samples per pixel)
_PNG_COLOUR = {0: ((1, 2, 4, 8, 16), 1), 2: ((8, 16), 3), 3: ((1, 2, 4, 8), 1), 4: ((8, 16), 2), 6: ((8, 16), 4)}
# JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_problem(data: bytes | memoryview, mime: str) -> str:
    """Why VTK could not decode these bytes as `mime`, in words, or '' when they are fine."""
    if mime == "image/png":
        return _png_problem(memoryview(data))
    if mime == "image/jpeg":
        return _jpeg_problem(bytes(data))
    return f"its type {mime!r:.40} is not PNG or JPEG"


def _png_problem(data: memoryview) -> str:
    if bytes(data[: len(PNG_SIGNATURE)]) != PNG_SIGNATURE:
        return "its bytes are not a PNG (no PNG signature)"
    offset = len(PNG_SIGNATURE)
    header = False
    first_idat = b""
    idat = 0
    ended = False
    while offset + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 12 + length
        if end > len(data):
            return f"the PNG is cut off in its {_name(kind)} chunk"
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            return f"the PNG's {_name(kind)} chunk is damaged (CRC error)"
        if not header and kind != b"IHDR":
            return "the PNG does not start with an IHDR chunk"
        if kind == b"IHDR":
            if length != 13 or header:
                return "the PNG has a malformed IHDR chunk"
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            allowed = _PNG_COLOUR.get(colour)
            if allowed is None or depth not in allowed[0] or interlace > 1:
                return f"the PNG has an invalid bit depth {depth} / colour type {colour}"
            if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
                return f"the PNG is {width}x{height} pixels (at most {MAX_IMAGE_SIDE} a side)"
            header = True
        elif kind == b"IDAT":
            first_idat = first_idat or bytes(body[:2])
            idat += 1
        elif kind == b"IEND":
            ended = True
            break
        offset = end
    if not header or not ended:
        return "the PNG is incomplete (no IEND chunk)"
    if not idat:
        return "the PNG has no image data"
    # Inflating IDAT would prove the pixels decode, but costs 10-40 ms per large texture on
    # every load; the CRCs catch accidental damage, and a stream crafted to pass them is
    # left to the probe import in a child process (hmi/scene/probe.py).
    stream = first_idat
    if len(stream) < 2 or stream[0] & 0x0F != 8 or (stream[0] << 8 | stream[1]) % 31:
        return "the PNG's image data is not a zlib stream"
    return ""


def _name(kind: bytes) -> str:
    return kind.decode("latin-1") if kind.isalpha() else repr(kind)


def _jpeg_problem(data: bytes) -> str:
    if not data.startswith(JPEG_SOI):
        return "its bytes are not a JPEG (no start-of-image marker)"
    offset = 2
    frame = scan = False
    while True:
        if offset + 2 > len(data) or data[offset] != 0xFF:
            return "the JPEG is damaged (a marker is missing or cut off)"
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            offset += 2
            continue
        if offset + 4 > len(data):
            return "the JPEG is cut off"
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if length < 2 or offset + 2 + length > len(data):
            return "the JPEG is cut off in a segment"
        if marker in _SOF:
            if length < 8:
                return "the JPEG has a malformed frame header"
            height, width = struct.unpack_from(">HH", data, offset + 5)
            if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
                return f"the JPEG is {width}x{height} pixels (at most {MAX_IMAGE_SIDE} a side)"
            frame = True
        offset += 2 + length
        if marker == 0xDA:
            if not frame:
                return "the JPEG has a scan before its frame header"
            scan = True
            # Entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart.
            while True:
                offset = data.find(b"\xff", offset)
                if offset < 0 or offset + 1 >= len(data):
                    return "the JPEG is cut off (no end-of-image marker)"
                following = data[offset + 1]
                if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    offset += 1 if following == 0xFF else 2
                    continue
                break
    if not frame or not scan:
        return "the JPEG has no image (no frame or scan)"
    return ""
