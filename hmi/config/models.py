"""The project file's schema. docs/project-file.md documents every key.

Unknown keys are errors: in a hand-edited file they are nearly always typos.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from hmi.config.base import NumberOrBool, Pair, Strict
from hmi.config.bindings import BindingConfig, CameraPresetConfig
from hmi.config.migrations import CURRENT_FORMAT
from hmi.config.twin import TwinConfig, twin_tag_specs
from hmi.core.alarms.model import Condition, check_template
from hmi.core.expressions import ExpressionError, parse_expression
from hmi.core.tags import DataType, TagSpec
from hmi.core.values import DEFAULT_MAX_AGE_S, DEFAULT_MAX_AHEAD_S, TimestampWindow

Port = Annotated[int, Field(ge=0, le=65535)]


class ProjectInfo(Strict):
    name: str = Field(min_length=1)
    timezone: str = "UTC"
    description: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')") from None
        return value


class SimulatorConfig(Strict):
    """The built-in demo plant, started by `hmi run` in its own process when enabled."""

    enabled: bool = False
    machines: list[str] = Field(default_factory=list)  # empty: every demo machine
    opcua_port: Port = 48400
    rate_hz: float = Field(default=10.0, gt=0, le=1000)
    speed: float = Field(default=1.0, gt=0, le=10000)
    seed: int = 1


class HistorianConfig(Strict):
    url: str = "sqlite:///{data}/historian.sqlite"
    retention_days: int = Field(default=90, ge=1)


class RuntimeConfig(Strict):
    """Where the headless runtime serves windows (used when it runs on its own)."""

    ipc_host: str = "127.0.0.1"
    stream_port: Port = 47100
    request_port: Port = 47101


# OPC UA security: "None" or "<policy>:<mode>"; the policies asyncua implements.
SECURITY_POLICIES = ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
SECURITY_MODES = ("Sign", "SignAndEncrypt")
_REF_RE = r"^[A-Za-z0-9_]+$"


class Deadband(Strict):
    """A data-change filter: changes smaller than `value` are not reported by the server."""

    type: Literal["absolute", "percent"]  # percent of the node's EURange
    value: float = Field(ge=0)


class OpcUaGroup(Strict):
    """Subscription parameters shared by the tags that name this group (`group = "fast"`)."""

    publishing_interval_ms: float | None = Field(default=None, gt=0, le=60000)
    sampling_interval_ms: float | None = Field(default=None, ge=0, le=60000)
    queue_size: int | None = Field(default=None, ge=1, le=100000)
    deadband: Deadband | None = None


class Credentials(Strict):
    """A user name and a reference to the password (never the password itself)."""

    user: str | None = Field(default=None, min_length=1)
    # Looked up as the environment variable HMI_PASSWORD_<NAME> or in the user's
    # credentials file (data folder, credentials.toml, readable by its owner only).
    password_ref: str | None = Field(default=None, pattern=_REF_RE)

    @model_validator(mode="after")
    def _ref_needs_user(self) -> Credentials:
        if self.password_ref is not None and self.user is None:
            raise ValueError("password_ref needs a user")
        return self


class SourceConnection(Credentials):
    """What every source connection shares: credentials and the window of source timestamps it
    trusts (hmi/core/values.py: a time outside it is replaced by the arrival time, UNCERTAIN)."""

    timestamp_max_age_s: float = Field(default=DEFAULT_MAX_AGE_S, gt=0)
    timestamp_max_ahead_s: float = Field(default=DEFAULT_MAX_AHEAD_S, ge=0)

    def timestamp_window(self) -> TimestampWindow:
        return TimestampWindow(self.timestamp_max_age_s, self.timestamp_max_ahead_s)


class OpcUaConnection(SourceConnection):
    kind: Literal["opcua"]
    endpoint: str
    security: str = "None"  # "None" or "<policy>:<mode>", e.g. "Basic256Sha256:SignAndEncrypt"
    application_uri: str | None = None  # default urn:<host name>:hmi:client
    publishing_interval_ms: float = Field(default=100.0, gt=0, le=60000)
    sampling_interval_ms: float = Field(default=0.0, ge=0, le=60000)  # 0: fastest the server allows
    queue_size: int = Field(default=100, ge=1, le=100000)
    deadband: Deadband | None = None
    groups: dict[str, OpcUaGroup] = Field(default_factory=dict)
    timeout_s: float = Field(default=4.0, gt=0, le=120)
    # The keep-alive the subscriptions request; before format 2 `watchdog_interval_s`.
    keepalive_s: float = Field(default=1.0, gt=0, le=60)
    session_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    reconnect_max_delay_s: float = Field(default=10.0, gt=0, le=600)

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        if not value.startswith("opc.tcp://"):
            raise ValueError("an OPC UA endpoint starts with opc.tcp://")
        return value

    @field_validator("security")
    @classmethod
    def _known_security(cls, value: str) -> str:
        if value == "None":
            return value
        policy, _, mode = value.partition(":")
        if policy not in SECURITY_POLICIES or mode not in SECURITY_MODES:
            choices = ", ".join(f"{p}:{m}" for p in SECURITY_POLICIES for m in SECURITY_MODES)
            raise ValueError(f"unknown security {value!r} (use None or one of {choices})")
        return value

    @property
    def security_policy(self) -> str:
        return self.security.partition(":")[0]

    @property
    def security_mode(self) -> str:
        return self.security.partition(":")[2] or "None"


class TlsConfig(Strict):
    """TLS to the broker. Paths are relative to the project file."""

    ca: str | None = None  # CA bundle (PEM); none: the system's trusted CAs
    cert: str | None = None  # client certificate (PEM), with `key`
    key: str | None = None
    key_password_ref: str | None = Field(default=None, pattern=_REF_RE)
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
    # how its values map (unset: OPC UA codes and names, good/uncertain/bad; hmi/sources/mqtt.py).
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


class MqttConnection(SourceConnection):
    kind: Literal["mqtt"]
    host: str = Field(min_length=1)
    port: Port = 1883
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


Connection = Annotated[OpcUaConnection | MqttConnection, Field(discriminator="kind")]


class MachineConfig(Strict):
    label: str = ""
    model: str | None = None  # GLB file, relative to the project file
    description: str = ""
    key_tags: list[str] = Field(default_factory=list)  # shown on the machine's overview tile
    # A machine (device) silent this long turns every tag of it UNCERTAIN (stale), even while
    # its connection stays up; a tag's own stale_after_s overrides it. Unset: never stale.
    stale_after_s: float | None = Field(default=None, gt=0, le=30 * 86400)


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
        return self


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ShiftConfig(Strict):
    """One shift of the calendar, in the project's time zone; an end at or before the
    start means the shift runs past midnight (C: 22:00 to 06:00)."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a time of day as HH:MM (e.g. 06:00)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> ShiftConfig:
        if self.start == self.end:
            raise ValueError("a shift cannot start and end at the same time")
        return self


class TrendConfig(Strict):
    name: str = Field(min_length=1)
    pens: list[str] = Field(min_length=1)
    span_s: float = Field(default=300.0, gt=0, le=8 * 3600)


AlarmPriority = Literal["urgent", "high", "medium", "low"]
_NEEDS_LIMIT = {"hi", "hihi", "lo", "lolo", "deviation", "rate"}


class AlarmConfig(Strict):
    """One alarm: a condition on a tag ([[alarms]]). Named `<tag>.<condition>` unless `name` says otherwise."""

    tag: str
    condition: Condition = Field(strict=False)  # a string in the file: base.py
    name: str | None = Field(default=None, min_length=1, max_length=200)
    limit: float | None = None
    deadband: float = Field(default=0.0, ge=0)
    on_delay_s: float = Field(default=0.0, ge=0, le=3600)
    off_delay_s: float = Field(default=0.0, ge=0, le=3600)
    priority: AlarmPriority = "medium"
    message: str = ""
    guidance: str = ""
    latching: bool = False
    comment_required: bool = False
    setpoint_tag: str | None = None
    rate_period_s: float = Field(default=1.0, gt=0, le=3600)
    direction: Literal["rise", "fall", "both"] = "both"
    states: list[NumberOrBool] = Field(default_factory=list)
    suppress_when: str | None = None
    # Nuisance detection; unset: [alarm_system]'s setting, 0: off for this alarm.
    chatter_count: int | None = Field(default=None, ge=0, le=1000)
    chatter_window_s: float | None = Field(default=None, gt=0, le=86400)
    fleeting_s: float | None = Field(default=None, ge=0, le=3600)

    @property
    def alarm_name(self) -> str:
        return self.name or f"{self.tag}.{self.condition}"

    @field_validator("message")
    @classmethod
    def _template(cls, value: str) -> str:
        if value:
            check_template(value)
        return value

    @field_validator("suppress_when")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_expression(value)
            except ExpressionError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _keys_of_condition(self) -> AlarmConfig:
        condition = str(self.condition)
        if condition in _NEEDS_LIMIT and self.limit is None:
            raise ValueError(f"a {condition} alarm needs a limit")
        if condition in ("deviation", "rate") and self.limit is not None and self.limit <= 0:
            raise ValueError(f"the limit of a {condition} alarm is a positive magnitude")
        if condition not in _NEEDS_LIMIT and self.limit is not None:
            raise ValueError(f"a {condition} alarm has no limit")
        if condition == "deviation" and not self.setpoint_tag:
            raise ValueError("a deviation alarm needs setpoint_tag")
        if condition != "deviation" and self.setpoint_tag:
            raise ValueError("setpoint_tag applies only to deviation alarms")
        if condition == "discrete" and not self.states:
            raise ValueError("a discrete alarm needs states (the values that are abnormal, e.g. [1] or [true])")
        if condition != "discrete" and self.states:
            raise ValueError("states applies only to discrete alarms")
        if condition in ("discrete", "bad_quality", "comm_loss") and self.deadband:
            raise ValueError(f"a {condition} alarm has no deadband")
        return self


class AlarmSystemConfig(Strict):
    """System-wide alarm settings: flood detection per operator position, shelving limit,
    chattering and fleeting alarm detection (each alarm may set its own)."""

    flood_threshold: int = Field(default=10, ge=1)
    flood_window_s: float = Field(default=600.0, gt=0, le=86400)
    max_shelve_s: float = Field(default=8 * 3600.0, gt=0, le=7 * 86400)
    positions: dict[str, list[str]] = Field(default_factory=dict)
    # ISA-18.2 (and PAS/EEMUA practice): 3 or more activations in a minute is chattering.
    chatter_count: int = Field(default=3, ge=0, le=1000)
    chatter_window_s: float = Field(default=60.0, gt=0, le=86400)
    # Back to normal within a few seconds, before an operator could have responded: fleeting.
    fleeting_s: float = Field(default=5.0, ge=0, le=3600)
    # The window's horn: new alarms of this priority and above sound it, repeated every
    # horn_repeat_s until silenced or acknowledged (hmi/ui/annunciator.py).
    horn_min_priority: Literal["urgent", "high", "medium", "low"] = "high"
    horn_repeat_s: float = Field(default=5.0, ge=1, le=600)


class SecurityConfig(Strict):
    """Logins: idle logout in the window, lockout after failed attempts (users live in the data folder)."""

    idle_logout_s: float = Field(default=900.0, ge=0, le=86400)  # 0: never
    max_failed_logins: int = Field(default=5, ge=1, le=100)
    lockout_s: float = Field(default=60.0, ge=1, le=86400)


class Project(Strict):
    # The file's format: the loader has upgraded an older one (hmi/config/migrations.py).
    format: int = Field(default=CURRENT_FORMAT, ge=CURRENT_FORMAT, le=CURRENT_FORMAT)
    project: ProjectInfo
    simulator: SimulatorConfig = SimulatorConfig()
    historian: HistorianConfig = HistorianConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    connections: dict[str, Connection] = Field(default_factory=dict)
    machines: dict[str, MachineConfig] = Field(default_factory=dict)
    tags: dict[str, TagConfig] = Field(default_factory=dict)
    trends: list[TrendConfig] = Field(default_factory=list)
    alarms: list[AlarmConfig] = Field(default_factory=list)
    alarm_system: AlarmSystemConfig = AlarmSystemConfig()
    security: SecurityConfig = SecurityConfig()
    shifts: list[ShiftConfig] = Field(default_factory=list)
    bindings: list[BindingConfig] = Field(default_factory=list)
    cameras: list[CameraPresetConfig] = Field(default_factory=list)
    twin: dict[str, TwinConfig] = Field(default_factory=dict)  # machine -> its digital-twin model

    # Set by the loader, not read from the file.
    source_path: Path | None = Field(default=None, exclude=True)
    migration_notes: tuple[str, ...] = Field(default=(), exclude=True)  # what upgrading an older format changed

    @field_validator("shifts")
    @classmethod
    def _unique_shift_names(cls, value: list[ShiftConfig]) -> list[ShiftConfig]:
        names = [shift.name for shift in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"shift names must be unique; repeated: {', '.join(repeated)}")
        return value

    def tag_specs(self) -> list[TagSpec]:
        specs = []
        for name, tag in self.tags.items():
            low, high = tag.range if tag.range is not None else (None, None)
            specs.append(
                TagSpec(
                    name=name,
                    unit=tag.unit,
                    datatype=tag.datatype,
                    description=tag.description,
                    connection=tag.connection,
                    address=tag.address,
                    writable=tag.writable,
                    low=low,
                    high=high,
                    decimals=tag.decimals,
                    extra={
                        key: value
                        for key, value in (
                            ("group", tag.group),
                            ("deadband", tag.deadband),
                            ("index", tag.index),
                            ("json_path", tag.json_path),
                        )
                        if value is not None
                    },
                )
            )
        # The twin's derived tags follow the configured ones, so ids stay stable per project.
        specs += twin_tag_specs(self.twin)
        return specs

    def tags_of_connection(self, connection: str) -> list[TagSpec]:
        return [spec for spec in self.tag_specs() if spec.connection == connection]

    def resolve_path(self, relative: str) -> Path:
        """A path from the project file, relative to the file's own folder; when nothing is
        there, relative to the installation's config/ folder (so a copy of the demo project
        saved elsewhere still finds the demo's models)."""
        from hmi.paths import install_root

        path = Path(relative)
        if path.is_absolute():
            return path
        base = self.source_path.parent if self.source_path is not None else Path.cwd()
        candidate = (base / path).resolve()
        if not candidate.exists():
            installed = (install_root() / "config" / path).resolve()
            if installed.exists():
                return installed
        return candidate
