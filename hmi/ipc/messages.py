"""Wire format of the runtime <-> window channel.

Every stream message is a multipart ZeroMQ message whose first frame is its kind and
whose second is a fixed header (session id, first and last sequence number, count).
Batches travel as raw little-endian numpy buffers, one frame per array, so neither side
copies or parses them element by element. PROTOCOL_VERSION changes with the format.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hmi.core.events import Event
from hmi.core.quality import QUALITY_DTYPE
from hmi.core.samples import TAG_ID_DTYPE, TS_DTYPE, VALUE_DTYPE, SampleBatch
from hmi.core.tags import TagSpec

PROTOCOL_VERSION = 1

KIND_BATCH = b"B"
KIND_TAGS = b"T"
KIND_EVENTS = b"E"
KIND_HEARTBEAT = b"H"
KIND_SNAPSHOT = b"S"
KIND_REPLY = b"R"

REQUEST_SNAPSHOT = b"snapshot"
REQUEST_COMMAND = b"command"

_HEADER = struct.Struct("<HQQQI")  # version, session, first seq, last seq, count


@dataclass(frozen=True, slots=True)
class Header:
    session: int
    first_seq: int
    last_seq: int
    count: int = 0


class ProtocolError(ValueError):
    pass


def pack_header(header: Header) -> bytes:
    return _HEADER.pack(PROTOCOL_VERSION, header.session, header.first_seq, header.last_seq, header.count)


def unpack_header(frame: bytes | memoryview) -> Header:
    if len(frame) != _HEADER.size:
        raise ProtocolError(f"header of {len(frame)} bytes, expected {_HEADER.size}")
    version, session, first, last, count = _HEADER.unpack(frame)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version}, this program speaks {PROTOCOL_VERSION}")
    return Header(session, first, last, count)


def batch_frames(batch: SampleBatch) -> list[Any]:
    """The four array frames plus the texts frame (empty when there are none)."""
    texts = json.dumps({str(k): v for k, v in batch.texts.items()}).encode() if batch.texts else b""
    return [
        np.ascontiguousarray(batch.tag_ids, TAG_ID_DTYPE).data,
        np.ascontiguousarray(batch.ts_ns, TS_DTYPE).data,
        np.ascontiguousarray(batch.values, VALUE_DTYPE).data,
        np.ascontiguousarray(batch.quality, QUALITY_DTYPE).data,
        texts,
    ]


def batch_from_frames(frames: Sequence[Any]) -> SampleBatch:
    if len(frames) != 5:
        raise ProtocolError(f"a batch has 5 frames, got {len(frames)}")
    ids = np.frombuffer(_buffer(frames[0]), TAG_ID_DTYPE)
    ts = np.frombuffer(_buffer(frames[1]), TS_DTYPE)
    values = np.frombuffer(_buffer(frames[2]), VALUE_DTYPE)
    quality = np.frombuffer(_buffer(frames[3]), QUALITY_DTYPE)
    raw_texts = bytes(_buffer(frames[4]))
    texts = {int(k): v for k, v in json.loads(raw_texts).items()} if raw_texts else None
    return SampleBatch(ids, ts, values, quality, texts)


def _buffer(frame: Any) -> Any:
    return frame.buffer if hasattr(frame, "buffer") else frame


def tags_frame(tags: Sequence[tuple[int, TagSpec]]) -> bytes:
    return json.dumps([{"id": tag_id, **spec.to_json()} for tag_id, spec in tags]).encode()


def tags_from_frame(frame: Any) -> list[tuple[int, TagSpec]]:
    return [(int(item["id"]), TagSpec.from_json(item)) for item in json.loads(bytes(_buffer(frame)))]


def events_frame(events: Sequence[Event]) -> bytes:
    return json.dumps([e.to_json() for e in events]).encode()


def events_from_frame(frame: Any) -> list[Event]:
    return [Event.from_json(item) for item in json.loads(bytes(_buffer(frame)))]
