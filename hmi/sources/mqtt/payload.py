"""What an MQTT payload says, as pure functions (any thread, no paho): JSON and plain values,
JSON paths, payload time stamps and the device's own quality (`quality_key`, `quality_map`).

A payload's own quality applies to every value of its message (`payload_quality`; unknown
means BAD: decode.py marks the values so).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hmi.core.quality import Quality, quality_from_opcua_status


class PayloadError(ValueError):
    """Why a payload was dropped; the message is the reason counted per topic."""


_SCAN_JSON = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner; typeshed omits it


def parse_json(payload: bytes | bytearray) -> Any:
    """json.loads with the errors it can raise turned into reasons.

    json.loads reads NaN, Infinity and 1e400 (as inf) without complaint; the source checks
    every number it maps for finiteness instead of hooking the parser, which would cost a
    Python call per number. Deep nesting raises RecursionError, not ValueError.

    The usual payload (UTF-8, no surrounding white space) goes straight to the decoder's C
    scanner, skipping json.loads' encoding detection and wrappers; anything else takes
    json.loads itself, so what is accepted and why not stays exactly json.loads'.
    """
    try:
        try:
            text = payload.decode()
            doc, end = _SCAN_JSON(text, 0)
            if end == len(text):
                return doc
        except (UnicodeDecodeError, StopIteration, ValueError):
            pass
        return json.loads(payload)
    except RecursionError:
        raise PayloadError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise PayloadError("not UTF-8") from None
    except ValueError as exc:  # JSONDecodeError
        raise PayloadError(f"invalid JSON ({str(exc)[:60]})") from None


def parse_plain(payload: bytes | bytearray) -> float | bool | str:
    """A bare value: a number, true/false, or text."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("not UTF-8") from None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise PayloadError(f"non-finite number {text[:20]}")
    return value


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def compile_json_path(path: str) -> tuple[str | int, ...]:
    """ "a.b[2].c" or "$.a.b" -> ("a", "b", 2, "c")."""
    path = path.removeprefix("$").removeprefix(".")
    parts: list[str | int] = []
    for key, index in _PATH_PART.findall(path):
        parts.append(int(index) if index else key)
    if not parts:
        raise ValueError(f"empty JSON path {path!r}")
    return tuple(parts)


def extract(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or part >= len(doc):
                raise KeyError(part)
        elif not isinstance(doc, dict):
            raise KeyError(part)
        doc = doc[part]
    return doc


def timestamp_ns(value: Any) -> int:
    """A payload timestamp: epoch s, ms, µs or ns (told apart by magnitude), or ISO 8601 text."""
    if isinstance(value, bool):
        raise PayloadError("bad timestamp")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise PayloadError("bad timestamp")
        if value < 1e11:
            return int(value * 1e9)
        if value < 1e14:
            return int(value * 1e6)
        if value < 1e17:
            return int(value * 1e3)
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PayloadError("bad timestamp") from None
        if parsed.tzinfo is None:
            raise PayloadError("timestamp without a time zone")
        return int(parsed.timestamp() * 1e9)
    raise PayloadError("bad timestamp")


# -- device quality in a payload (quality_key) ------------------------------------------------

_QUALITY_WORDS = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}
# OPC UA status names: a severity, then CamelCase detail ("GoodClamped", "BadSensorFailure").
_STATUS_NAME = re.compile(r"(Good|Uncertain|Bad)(?:[A-Z][A-Za-z0-9]*)?")
_STATUS_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
# The names of the codes hmi.core.quality maps to COMM_LOST (the data source is gone, not the value bad).
_COMM_LOST_NAMES = frozenset(
    {
        "BadCommunicationError",
        "BadServerNotConnected",
        "BadNoCommunication",
        "BadNotConnected",
        "BadConnectionClosed",
        "BadSecureChannelClosed",
        "BadTimeout",
        "BadOutOfService",
        "BadDeviceFailure",
    }
)


def payload_quality(value: Any, mapping: dict[str, Quality] | None = None) -> Quality | None:
    """The device's own quality of a message's values; None when it is not understood.

    With a `quality_map` only its entries count (a device with its own codes, e.g. 0 = bad,
    would otherwise be read as OPC UA Good). Without one: "good"/"uncertain"/"bad" in any
    case, OPC UA status names (Good*, Uncertain*, Bad*; the no-communication ones COMM_LOST)
    and OPC UA status codes by their severity bits, as numbers or as decimal or 0x-hex text.
    """
    if mapping is not None:
        return mapping.get(quality_text(value))  # type: ignore[arg-type]  # None is never a key
    if type(value) is str:
        word = _QUALITY_WORDS.get(value.lower())
        if word is not None:
            return word
        name = _STATUS_NAME.fullmatch(value)
        if name is not None:
            return Quality.COMM_LOST if value in _COMM_LOST_NAMES else _QUALITY_WORDS[name.group(1).lower()]
        if _STATUS_NUMBER.fullmatch(value) is None:
            return None
        try:
            code = int(value, 16) if value[1:2] in ("x", "X") else int(value)
        except ValueError:  # more digits than int() converts
            return None
    elif type(value) is int:
        code = value
    elif type(value) is float and value.is_integer():
        code = int(value)
    else:
        return None
    return quality_from_opcua_status(code) if 0 <= code <= 0xFFFFFFFF else None


def quality_text(value: Any) -> str | None:
    """How a payload's quality value is looked up in a quality_map (TOML keys are text)."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def quality_map(mapping: Mapping[str, str] | None) -> dict[str, Quality] | None:
    """A project's `quality_map` (text -> quality name) as payload_quality takes it."""
    return None if mapping is None else {k: Quality[v] for k, v in mapping.items()}
