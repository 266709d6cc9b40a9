"""Tag definitions and the registry that gives every tag a dense integer id.

Samples travel as numpy arrays of tag ids, so the registry is the one place that maps
names to ids. Ids are never reused or renumbered while a registry lives.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

TAG_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class DataType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"


class SourceAddress:
    """Where a tag sits in its source, typed per connection kind (e.g. OpcUaAddress in
    hmi/config/connections/opcua.py). `TagSpec.address` is its text as the file wrote it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TagSpec:
    """What a tag is: its name (`machine.signal`), unit and where its value comes from."""

    name: str
    unit: str = ""
    datatype: DataType = DataType.FLOAT
    description: str = ""
    connection: str = ""
    address: str = ""
    writable: bool = False
    low: float | None = None  # engineering range, also the limits a write is checked against
    high: float | None = None
    decimals: int | None = None  # shown on screen; None: derived from the range
    verify: bool = False  # a write waits for a second user's verification (hmi.security.verified_writes)
    # The connection kind's typed address (None: `address` alone, e.g. a tag made at run time).
    source_address: SourceAddress | None = field(default=None, compare=False, hash=False)

    @property
    def machine(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def signal(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else self.name

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "datatype": str(self.datatype),
            "description": self.description,
            "connection": self.connection,
            "address": self.address,
            "writable": self.writable,
            "low": self.low,
            "high": self.high,
            "decimals": self.decimals,
            "verify": self.verify,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TagSpec:
        return cls(
            name=str(data["name"]),
            unit=str(data.get("unit", "")),
            datatype=DataType(str(data.get("datatype", "float"))),
            description=str(data.get("description", "")),
            connection=str(data.get("connection", "")),
            address=str(data.get("address", "")),
            writable=bool(data.get("writable", False)),
            low=_opt_float(data.get("low")),
            high=_opt_float(data.get("high")),
            decimals=None if data.get("decimals") is None else int(data["decimals"]),  # type: ignore[call-overload]
            verify=bool(data.get("verify", False)),
        )


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


class TagRegistry:
    """Thread-safe name <-> id map. Listeners hear about new tags in registration order."""

    def __init__(self, specs: Iterable[TagSpec] = ()) -> None:
        self._lock = threading.Lock()
        self._specs: list[TagSpec] = []
        self._ids: dict[str, int] = {}
        self._listeners: list[Callable[[list[tuple[int, TagSpec]]], None]] = []
        self.register_many(specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[TagSpec]:
        return iter(list(self._specs))

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def id_of(self, name: str) -> int:
        return self._ids[name]

    def get_id(self, name: str) -> int | None:
        return self._ids.get(name)

    def spec(self, tag_id: int) -> TagSpec:
        return self._specs[tag_id]

    def by_name(self, name: str) -> TagSpec:
        return self._specs[self._ids[name]]

    def names(self) -> list[str]:
        return [s.name for s in self._specs]

    def on_added(self, listener: Callable[[list[tuple[int, TagSpec]]], None]) -> None:
        """Call `listener(new_tags)` on the registering thread whenever tags are added."""
        self._listeners.append(listener)

    def register(self, spec: TagSpec) -> int:
        return self.register_many([spec])[0]

    def register_many(self, specs: Iterable[TagSpec]) -> list[int]:
        """Register tags, returning their ids; an already known name keeps its id and spec."""
        added: list[tuple[int, TagSpec]] = []
        ids: list[int] = []
        with self._lock:
            for spec in specs:
                existing = self._ids.get(spec.name)
                if existing is not None:
                    ids.append(existing)
                    continue
                tag_id = len(self._specs)
                self._specs.append(spec)
                self._ids[spec.name] = tag_id
                ids.append(tag_id)
                added.append((tag_id, spec))
        if added:
            for listener in list(self._listeners):
                listener(added)
        return ids
