"""The GLB container (header, chunks) and the JSON inside it, read defensively.

Follows the glTF 2.0 spec, section 4.4 (binary glTF), with the Khronos glTF-Validator's
issue codes: a 12-byte header (magic "glTF", version 2, total length), then 8-byte chunk
headers (length, type) with 4-byte aligned data; the first chunk is JSON, an optional
second one is BIN, unknown chunk types are skipped with a warning. A text file starting
with '{' is read as a plain .gltf document.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from hmi.scene.builder import CHUNK_BIN, CHUNK_JSON, GLB_MAGIC
from hmi.scene.report import Issue, Severity

# Real documents nest a handful of levels (extras can add a few more). Python's json
# raises RecursionError near 1000 levels; VTK's JSON parser gets no further than this.
MAX_JSON_DEPTH = 64

_WHITESPACE = b" \t\r\n"
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_TYPE_NAMES[type(None)] = "null"


@dataclass
class Container:
    """What the container holds: the parsed JSON (None if unusable) and the BIN chunk.
    `end` is the declared length: VTK is handed data[:end] (extra bytes dropped)."""

    document: dict[str, Any] | None
    binary: bytes | None
    is_glb: bool
    end: int


class IssueList(list[Issue]):
    def error(self, code: str, message: str, where: str = "") -> None:
        self.append(Issue(Severity.ERROR, code, message, where))

    def warning(self, code: str, message: str, where: str = "") -> None:
        self.append(Issue(Severity.WARNING, code, message, where))

    def info(self, code: str, message: str, where: str = "") -> None:
        self.append(Issue(Severity.INFO, code, message, where))


def read_container(data: bytes, issues: IssueList) -> Container:
    if data[:1] == b"{" or (data[:1] in (b" ", b"\t", b"\r", b"\n") and data.lstrip(_WHITESPACE)[:1] == b"{"):
        return Container(parse_json(data, issues), None, False, len(data))
    if not data:
        issues.error("GLB_UNEXPECTED_END_OF_HEADER", "the file is empty", "byte 0")
        return Container(None, None, True, 0)
    if len(data) < 12:
        issues.error(
            "GLB_UNEXPECTED_END_OF_HEADER", f"not a GLB file: only {len(data)} byte(s), a header is 12", "byte 0"
        )
        return Container(None, None, True, len(data))
    magic, version, declared = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC:
        issues.error("GLB_INVALID_MAGIC", f"not a GLB file (starts with {data[:4]!r}, expected b'glTF')", "byte 0")
        return Container(None, None, True, len(data))
    if version != 2:
        issues.error("GLB_INVALID_VERSION", f"GLB version {version} is not supported (only version 2)", "byte 4")
        return Container(None, None, True, len(data))
    if declared < 20:
        issues.error(
            "GLB_LENGTH_TOO_SMALL", f"declared GLB length ({declared}) is too small for a JSON chunk", "byte 8"
        )
        return Container(None, None, True, len(data))
    if declared > len(data):
        issues.error(
            "GLB_LENGTH_MISMATCH",
            f"the file is truncated: {len(data)} bytes, the header declares {declared}",
            f"byte {len(data)}",
        )
        return Container(None, None, True, len(data))
    if declared < len(data):
        issues.warning(
            "GLB_EXTRA_DATA",
            f"{len(data) - declared} byte(s) after the end of the GLB stream (ignored)",
            f"byte {declared}",
        )

    document: dict[str, Any] | None = None
    binary: bytes | None = None
    seen_json = seen_bin = False
    offset = 12
    index = 0
    while offset < declared:
        if offset + 8 > declared:
            issues.error("GLB_UNEXPECTED_END_OF_CHUNK_HEADER", "a chunk header is cut off", f"byte {offset}")
            break
        length, kind = struct.unpack_from("<II", data, offset)
        name = _chunk_name(kind)
        start = offset + 8
        if length % 4:
            issues.error(
                "GLB_CHUNK_LENGTH_UNALIGNED", f"{name} chunk length {length} is not a multiple of 4", f"byte {offset}"
            )
        if start + length > declared:
            issues.error(
                "GLB_CHUNK_TOO_BIG",
                f"{name} chunk ({length} bytes) runs past the end of the GLB ({declared} bytes)",
                f"byte {offset}",
            )
            break
        chunk = data[start : start + length]
        if index == 0 and kind != CHUNK_JSON:
            issues.error("GLB_UNEXPECTED_FIRST_CHUNK", f"the first chunk must be JSON, found {name}", f"byte {offset}")
        if kind == CHUNK_JSON:
            if seen_json:
                issues.error("GLB_DUPLICATE_CHUNK", "a second JSON chunk", f"byte {offset}")
            elif length == 0:
                issues.error("GLB_EMPTY_CHUNK", "the JSON chunk is empty", f"byte {offset}")
            elif index == 0:
                document = parse_json(chunk, issues)
            seen_json = True
        elif kind == CHUNK_BIN:
            if seen_bin:
                issues.error("GLB_DUPLICATE_CHUNK", "a second BIN chunk", f"byte {offset}")
            elif index != 1:
                issues.error("GLB_UNEXPECTED_BIN_CHUNK", "the BIN chunk must be the second chunk", f"byte {offset}")
            else:
                if length == 0:
                    issues.info("GLB_EMPTY_BIN_CHUNK", "an empty BIN chunk", f"byte {offset}")
                binary = chunk
            seen_bin = True
        else:
            issues.warning("GLB_UNKNOWN_CHUNK_TYPE", f"unknown chunk type {name} (skipped)", f"byte {offset}")
        offset = start + length
        index += 1
    if not seen_json and not any(i.severity == Severity.ERROR for i in issues):
        issues.error("GLB_UNEXPECTED_END_OF_CHUNK_HEADER", "the GLB has no JSON chunk", "byte 12")
    return Container(document, binary, True, declared)


def _chunk_name(kind: int) -> str:
    if kind == CHUNK_JSON:
        return "JSON"
    if kind == CHUNK_BIN:
        return "BIN"
    return f"0x{kind:08x}"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes, issues: IssueList) -> dict[str, Any] | None:
    """The document as a dict, or None with an error. Guards Python's parser against deep
    nesting (RecursionError) and non-JSON constants (NaN, Infinity)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        issues.error("INVALID_JSON", "the JSON starts with a byte-order mark (not allowed in glTF)")
        return None
    stripped = raw.rstrip(b"\0")
    if len(stripped) != len(raw):
        issues.warning("INVALID_JSON_PADDING", "the JSON chunk is padded with zero bytes instead of spaces")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        issues.error("INVALID_JSON", f"the JSON is not UTF-8 text (byte {exc.start})")
        return None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        issues.error("JSON_TOO_DEEP", "the JSON is nested too deeply to read")
        return None
    except ValueError as exc:
        issues.error("INVALID_JSON", f"invalid JSON: {exc}")
        return None
    if not isinstance(document, dict):
        kind = _JSON_TYPE_NAMES.get(type(document), type(document).__name__)
        issues.error("INVALID_JSON", f"the JSON is {kind}, not an object")
        return None
    depth = json_depth(document)
    if depth > MAX_JSON_DEPTH:
        issues.error("JSON_TOO_DEEP", f"the JSON nests {depth} levels deep (at most {MAX_JSON_DEPTH} are accepted)")
        return None
    return document


def json_depth(value: Any) -> int:
    """Nesting depth of containers, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return deepest
