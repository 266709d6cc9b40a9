"""MQTT connections ([connections.NAME] with kind = "mqtt"): broker, TLS, subscriptions and
commands, and the address of a tag read from one topic."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hmi.config.base import SECRET_REF_PATTERN, Port, Strict
from hmi.config.connections.base import SourceConnection, TagProblem
from hmi.config.tags import TagConfig
from hmi.core.tags import SourceAddress, TagSpec


@dataclass(frozen=True, slots=True)
class MqttAddress(SourceAddress):
    """A topic and, for a JSON payload, where the value sits in it."""

    topic: str
    json_path: str | None = None

    @classmethod
    def of(cls, spec: TagSpec) -> MqttAddress:
        address = spec.source_address
        return address if isinstance(address, MqttAddress) else cls(spec.address)


class TlsConfig(Strict):
    """TLS to the broker. Paths are relative to the project file."""

    ca: str | None = None  # CA bundle (PEM); none: the system's trusted CAs
    cert: str | None = None  # client certificate (PEM), with `key`
    key: str | None = None
    key_password_ref: str | None = Field(default=None, pattern=SECRET_REF_PATTERN)
    server_name_check: bool = True  # check the broker's host name against its certificate

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")
        return self


MqttFormat = Literal["json", "value", "sparkplugb", "status"]
QualityName = Literal["GOOD", "UNCERTAIN", "BAD", "COMM_LOST"]  # hmi.core.quality.Quality's names


def _check_quality_map(key: str | None, mapping: Mapping[str, str] | None) -> None:
    if mapping is not None and key is None:
        raise ValueError("quality_map needs quality_key (the payload key whose values it maps)")


class MqttSubscription(Strict):
    """One topic filter and how its messages become tags.

    `tag` is a template: {topic[i]} is the i-th topic level, {key} a JSON key (json),
    {machine} the machine id; for sparkplugb {group}, {node}, {device} and {metric}.
    """

    topic: str = Field(min_length=1)
    format: MqttFormat = "json"
    tag: str | None = None
    qos: int = Field(default=0, ge=0, le=2)
    timestamp_key: str | None = "ts"  # json: a top-level key holding the sample time
    # json: a top-level key holding the device's quality of every value in the message, and
    # how its values map (unset: OPC UA codes and names, good/uncertain/bad; hmi/sources/mqtt/payload.py).
    quality_key: str | None = None
    quality_map: dict[str, QualityName] | None = None
    create_tags: bool = False  # register tags the template names but the project does not
    machine: str = "{topic[1]}"  # status: the machine a status message is about
    status_path: str | None = Field(default=None, min_length=1)  # status: where the state sits in JSON
    online: str | list[str] = "online"  # status payloads (or values at status_path)
    offline: str | list[str] = "offline"
    # sparkplugb: on a sequence gap, an unknown alias or data from a node whose birth was
    # missed, publish the "Node Control/Rebirth" NCMD (at most every 10 s per edge node).
    request_rebirth: bool = True

    @field_validator("topic")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        levels = value.split("/")
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != len(levels) - 1):
                raise ValueError("'#' must be a whole level at the end of a topic filter")
            if "+" in level and level != "+":
                raise ValueError("'+' must be a whole topic level")
        return value

    @model_validator(mode="after")
    def _needs_template(self) -> MqttSubscription:
        if self.format in ("json", "value", "sparkplugb") and self.tag is None:
            raise ValueError(f"a {self.format} subscription needs a tag template (tag = ...)")
        _check_quality_map(self.quality_key, self.quality_map)
        both = set(self.online_values) & set(self.offline_values)
        if both:
            raise ValueError(f"status value(s) {sorted(both)} listed as both online and offline")
        return self

    @property
    def online_values(self) -> tuple[str, ...]:
        return (self.online,) if isinstance(self.online, str) else tuple(self.online)

    @property
    def offline_values(self) -> tuple[str, ...]:
        return (self.offline,) if isinstance(self.offline, str) else tuple(self.offline)


def _split_broker(text: str, default_port: int) -> tuple[str, int]:
    """host:port, host or [v6 address]:port -> (host, port); port -1 when it is not a number."""
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    return host, int(port) if port.isdigit() else -1


class MqttConnection(SourceConnection):
    label: ClassVar[str] = "MQTT"
    source_class: ClassVar[str] = "hmi.sources.mqtt:MqttSource"
    tag_keys: ClassVar[frozenset[str]] = frozenset({"json_path"})

    kind: Literal["mqtt"]
    host: str = Field(min_length=1)
    port: Port = 1883
    # Redundant brokers, "host:port" (or "host": `port`), tried in this order on loss of the
    # active one; instead of `host`, which then reads as the first of them.
    brokers: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _host_or_brokers(cls, data: object) -> object:
        if isinstance(data, dict) and "brokers" in data:
            if "host" in data:
                raise ValueError("give either host (one broker) or brokers (redundant brokers), not both")
            first = data["brokers"][0] if isinstance(data["brokers"], list) and data["brokers"] else None
            # A stand-in when the list itself is wrong: only the list's own error is reported.
            data = {**data, "host": (_split_broker(first, 0)[0] if isinstance(first, str) else "") or "(none)"}
        return data

    @field_validator("brokers")
    @classmethod
    def _valid_brokers(cls, value: list[str] | None) -> list[str] | None:
        for broker in value or ():
            host, port = _split_broker(broker, 1883)
            if not host or not 0 < port <= 65535:
                raise ValueError(f"{broker!r} is not host:port")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a broker is listed twice")
        return value

    @property
    def broker_addresses(self) -> tuple[tuple[str, int], ...]:
        """The (host, port) of each broker to try, in order (one unless `brokers` lists several)."""
        if not self.brokers:
            return ((self.host, self.port),)
        return tuple(_split_broker(b, self.port) for b in self.brokers)

    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None  # default hmi-<host name>-<pid>
    clean_session: bool = True  # false: the broker keeps subscriptions and QoS>0 messages while away
    session_expiry_s: int = Field(default=3600, ge=0)  # MQTT 5, when clean_session = false
    keepalive_s: int = Field(default=10, ge=1, le=65535)
    tls: TlsConfig | None = None  # `tls = true` for the system's CAs, or a table

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_flag(cls, value: object) -> object:
        if value is True:
            return {}
        return None if value is False else value

    max_payload_bytes: int = Field(default=256 * 1024, ge=16)
    subscriptions: list[MqttSubscription] = Field(default_factory=list)
    timestamp_key: str | None = "ts"  # for tags addressed one by one (address = topic, json_path)
    quality_key: str | None = None  # the same, for the device's quality (as on a subscription)
    quality_map: dict[str, QualityName] | None = None
    command_topic: str | None = None  # writes: e.g. "factory/{machine}/command"
    # json: {"<signal>": value}; set: {"command": "set", "signal": ..., "value": ...}; value: the bare value
    command_format: Literal["json", "set", "value"] = "json"
    # Where the device answers a command (same fields as command_topic), JSON {"status": "ok"|...};
    # unset: a write is confirmed by the tag's own next value (read-back), if it has one.
    command_reply_topic: str | None = None
    write_confirm_s: float = Field(default=5.0, gt=0, le=8)  # the runtime gives a write 10 s in all
    # Sparkplug B: publish this host application's STATE (birth, and death as the Last Will).
    # Only the primary host of the edge nodes should; unset: no STATE.
    sparkplug_host_id: str | None = Field(default=None, min_length=1, pattern=r"^[^/+#]+$")

    @field_validator("command_reply_topic")
    @classmethod
    def _reply_fields_whole_levels(cls, value: str | None) -> str | None:
        # The source subscribes with each {field} as a "+" wildcard, which must be a whole level.
        for level in (value or "").split("/"):
            if ("{" in level and not re.fullmatch(r"\{(machine|signal|tag)\}", level)) or "+" in level or "#" in level:
                raise ValueError("each level is plain text or exactly one of {machine}, {signal}, {tag}")
        return value

    reconnect_max_delay_s: float = Field(default=10.0, gt=0, le=600)
    # Warn about subscribed topics that delivered nothing this long after subscribing (an ACL
    # that forbids reading them looks exactly like this: brokers grant the subscription).
    silent_topic_warning_s: float = Field(default=60.0, gt=0)

    @property
    def tls_config(self) -> TlsConfig | None:
        return self.tls

    @model_validator(mode="after")
    def _quality_map_needs_key(self) -> MqttConnection:
        _check_quality_map(self.quality_key, self.quality_map)
        return self

    def address_of(self, tag: TagConfig) -> MqttAddress:
        return MqttAddress(tag.address, tag.json_path)

    def tag_problems(self, tag: TagConfig) -> list[TagProblem]:
        out: list[TagProblem] = []
        if "+" in tag.address or "#" in tag.address:
            out.append((["address"], "an MQTT tag's address is one topic, without wildcards"))
        if tag.json_path is not None and not tag.address:
            out.append((["json_path"], "json_path needs the topic in address"))
        return out
