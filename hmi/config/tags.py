"""A tag as the project file writes it ([tags."machine.signal"]).

The keys of one connection kind (an OPC UA `group`, an MQTT `json_path`) sit in the same
table; the kind's connection model (hmi/config/connections/) says which it accepts and turns
them into its typed address.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hmi.config.base import Pair, Strict
from hmi.core.tags import DataType


class Deadband(Strict):
    """A data-change filter: changes smaller than `value` are not reported by the server."""

    type: Literal["absolute", "percent"]  # percent of the node's EURange
    value: float = Field(ge=0)


class TagConfig(Strict):
    connection: str
    # OPC UA: the NodeId. MQTT: the topic (or empty when a subscription's template names the tag).
    address: str = ""
    unit: str = ""
    description: str = ""
    datatype: DataType = Field(default=DataType.FLOAT, strict=False)  # a string in the file: base.py
    range: Pair | None = None
    decimals: int | None = Field(default=None, ge=0, le=9)  # on screen; default: from the range
    writable: bool = False
    # A write needs a reason ([writes] verify_reasons) and a second user's verification.
    verify: bool = False
    # OPC UA: subscription group, data-change filter, and an element of an array node.
    group: str | None = None
    deadband: Deadband | None = None
    index: int | None = Field(default=None, ge=0)
    # MQTT: where the value sits in a JSON payload (address = the topic), e.g. "spindle.speed" or "values[2]".
    json_path: str | None = None
    # What the historian keeps: every sample, only changes beyond the deadband, or nothing.
    history: Literal["every", "on_change", "off"] = "every"
    history_deadband: float = Field(default=0.0, ge=0)
    # No new value this long: the value turns UNCERTAIN (stale) live and in the record.
    stale_after_s: float | None = Field(default=None, gt=0, le=30 * 86400)

    @model_validator(mode="after")
    def _deadband_needs_on_change(self) -> TagConfig:
        if self.history_deadband and self.history != "on_change":
            raise ValueError('history_deadband applies only with history = "on_change"')
        if self.verify and not self.writable:
            raise ValueError("verify applies only to a writable tag (writable = true)")
        return self


# The keys above that belong to one connection kind; each kind lists those it accepts (tag_keys).
KIND_TAG_KEYS = ("group", "deadband", "index", "json_path")
