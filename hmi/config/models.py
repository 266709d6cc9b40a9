"""The project file's schema. docs/project-file.md documents every key.

Unknown keys are errors: in a hand-edited file they are nearly always typos.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from hmi.config.base import SECRET_REF_PATTERN, NumberOrBool, Port, Strict
from hmi.config.bindings import BindingConfig, CameraPresetConfig
from hmi.config.connections import Connection
from hmi.config.migrations import CURRENT_FORMAT
from hmi.config.tags import TagConfig
from hmi.config.twin import TwinConfig, twin_tag_specs
from hmi.core.alarms.model import Condition, check_template
from hmi.core.expressions import ExpressionError, parse_expression
from hmi.core.tags import TagSpec


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


_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


class ForwardConfig(Strict):
    """[historian.forward]: store-and-forward from the local historian to a central
    PostgreSQL (hmi/historian/forward.py, docs/historian.md "Forwarding")."""

    url: str = Field(min_length=1)  # postgresql://user@host:port/database, no password
    password_ref: str | None = Field(default=None, pattern=SECRET_REF_PATTERN)
    # None: verify-full towards another machine, prefer on this one (see effective_sslmode).
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    sslrootcert: str | None = None  # CA file, relative to the project file
    station: str = Field(default_factory=lambda: _host_name(), min_length=1, max_length=100)
    samples: bool = True
    events: bool = True
    audit: bool = True
    tags: bool = True
    sessions: bool = True
    batch_rows: int = Field(default=50_000, ge=100, le=2_000_000)
    max_backlog_mb: float = Field(default=2048.0, gt=0)
    backlog_alarm_s: float = Field(default=3600.0, gt=0)

    @field_validator("url")
    @classmethod
    def _postgres_url_without_password(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"{value!r} is not a database URL (postgresql://user@host:5432/database)") from None
        if url.get_backend_name() != "postgresql":
            raise ValueError(f"forwarding goes to PostgreSQL: a postgresql:// URL, not {url.drivername}://")
        if url.password is not None:
            raise ValueError("the URL holds a password: remove it and name it with password_ref instead")
        return value

    @model_validator(mode="after")
    def _samples_need_tags(self) -> ForwardConfig:
        if self.samples and not self.tags:
            raise ValueError("samples = true needs tags = true (central samples are keyed by the station's tags)")
        return self

    @property
    def effective_sslmode(self) -> str:
        if self.sslmode is not None:
            return self.sslmode
        from sqlalchemy.engine import make_url

        host = make_url(self.url).host or ""
        return "prefer" if host in _LOCAL_HOSTS or host.startswith("/") else "verify-full"


def _host_name() -> str:
    import socket

    return socket.gethostname() or "station"


class HistorianConfig(Strict):
    url: str = "sqlite:///{data}/historian.sqlite"
    retention_days: int = Field(default=90, ge=1)
    # Where the window reads history (trend backfill, journal, playback); None: `url`. A
    # central database: postgresql://user@host/db?station=ws1, its password by reference.
    read_url: str | None = None
    read_password_ref: str | None = Field(default=None, pattern=SECRET_REF_PATTERN)
    forward: ForwardConfig | None = None  # [historian.forward]: ship to a central PostgreSQL

    @field_validator("read_url")
    @classmethod
    def _read_url_without_password(cls, value: str | None) -> str | None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"{value!r} is not a database URL (postgresql://user@host:5432/database)") from None
        if url.password is not None:
            raise ValueError("the URL holds a password: remove it and name it with read_password_ref instead")
        return value

    @property
    def read_target(self) -> str:
        """What a reader of this workstation's history opens: read_url with its password_ref
        (the name, never the password), else the local url."""
        if not self.read_url:
            return self.url
        if not self.read_password_ref:
            return self.read_url
        from sqlalchemy.engine import make_url

        url = make_url(self.read_url).update_query_dict({"password_ref": self.read_password_ref})
        return url.render_as_string(hide_password=False)


class RuntimeConfig(Strict):
    """Where the headless runtime serves windows (used when it runs on its own), whether the
    channel is CURVE-encrypted, and, on a station, the remote runtime its window attaches to."""

    ipc_host: str = "127.0.0.1"
    stream_port: Port = 47100
    request_port: Port = 47101
    # None: CURVE exactly when the channel leaves this host (ipc_host or remote not loopback).
    curve: bool | None = None
    remote: str | None = Field(default=None, min_length=1)  # "tcp://10.0.0.5" or "10.0.0.5"
    # The remote runtime's public key: 40 characters of Z85, or its key file (relative to the
    # project file). Public only: the secret keys stay in the data folders.
    server_key: str | None = Field(default=None, min_length=1)

    @field_validator("remote")
    @classmethod
    def _remote_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.removeprefix("tcp://")
        # A port (host:port) is refused: the ports are stream_port and request_port. An IPv6
        # address is written in brackets, as in a URL.
        if not host or "/" in host or (not host.startswith("[") and ":" in host):
            raise ValueError(
                f"{value!r}: give the runtime's host as tcp://HOST or tcp://[IPv6] (the ports are "
                "stream_port and request_port)"
            )
        return host

    @field_validator("curve")
    @classmethod
    def _curve_off_loopback(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        host = info.data.get("ipc_host", "127.0.0.1")
        if value is False and not _is_loopback(host):
            raise ValueError(
                f"ipc_host = {host!r} is reachable from other hosts, so the channel needs CURVE: set "
                "[runtime] curve = true (or leave it unset), or serve on 127.0.0.1"
            )
        return value

    @model_validator(mode="after")
    def _remote_has_key(self) -> RuntimeConfig:
        if self.remote is not None and self.server_key is None and self.uses_curve(self.remote):
            raise ValueError(
                f"remote = {self.remote!r} needs the runtime's public key: set [runtime] server_key "
                "(print it on the runtime's host with `hmi station key --runtime`)"
            )
        return self

    def uses_curve(self, host: str) -> bool:
        """Whether the channel to or on `host` is CURVE: as configured, else when it is not loopback."""
        return self.curve if self.curve is not None else not _is_loopback(host)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MachineConfig(Strict):
    label: str = ""
    model: str | None = None  # GLB file, relative to the project file
    description: str = ""
    key_tags: list[str] = Field(default_factory=list)  # shown on the machine's overview tile
    # A machine (device) silent this long turns every tag of it UNCERTAIN (stale), even while
    # its connection stays up; a tag's own stale_after_s overrides it. Unset: never stale.
    stale_after_s: float | None = Field(default=None, gt=0, le=30 * 86400)


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


class WritesConfig(Strict):
    """[writes]: two-person writes to tags declared `verify = true` (hmi/security/verified_writes.py)."""

    # The reasons an operator picks from when asking for a verified write (a list, not free
    # text: the trail can be searched by reason, and nobody types one in a hurry).
    verify_reasons: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list)
    verify_timeout_s: float = Field(default=120.0, ge=5, le=3600)  # unverified this long: it lapses

    @field_validator("verify_reasons")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each reason once")
        return value


class PositionConfig(Strict):
    """An operator position ([[positions]]): the machines one operator answers for. Its window
    shows their alarms by default, and its flood count counts only them (ISA-18.2: per position)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    area: str = Field(default="", max_length=100)  # what the operator calls it: "Machining hall"
    machines: list[str] = Field(min_length=1)


def _require_unique(what: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(repeated)}")


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
    positions: list[PositionConfig] = Field(default_factory=list)
    security: SecurityConfig = SecurityConfig()
    writes: WritesConfig = WritesConfig()
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
        _require_unique("shift", [shift.name for shift in value])
        return value

    @field_validator("positions")
    @classmethod
    def _unique_position_names(cls, value: list[PositionConfig]) -> list[PositionConfig]:
        _require_unique("position", [p.name for p in value])
        return value

    @model_validator(mode="after")
    def _verified_tags_have_reasons(self) -> Project:
        verified = [name for name, tag in self.tags.items() if tag.verify]
        if verified and not self.writes.verify_reasons:
            raise ValueError(f"tags {verified} are verify = true: [writes] verify_reasons must list the reasons")
        return self

    @model_validator(mode="after")
    def _one_way_to_positions(self) -> Project:
        if self.positions and self.alarm_system.positions:
            raise ValueError(
                "positions are given twice: keep [[positions]] (name, area, machines) and drop [alarm_system] positions"
            )
        return self

    def operator_positions(self) -> dict[str, list[str]]:
        """Position -> machines, from [[positions]] or else the older [alarm_system] positions."""
        if self.positions:
            return {p.name: list(p.machines) for p in self.positions}
        return dict(self.alarm_system.positions)

    def tag_specs(self) -> list[TagSpec]:
        specs = []
        for name, tag in self.tags.items():
            low, high = tag.range if tag.range is not None else (None, None)
            conn = self.connections.get(tag.connection)
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
                    verify=tag.verify,
                    source_address=conn.address_of(tag) if conn is not None else None,
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
