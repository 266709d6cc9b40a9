"""The paho side of a connection: the client (paho-mqtt 2.x, callback API version 2) with its
TLS, credentials and session settings, connecting, the pump that reads the socket and says
when coalesced rows leave, and a clean disconnect.

Threads: paho's network loop runs in one thread of ours (MqttSource._network_loop, which
calls `client.loop()` itself through `pump` instead of `loop_start()`, so that reconnecting
with backoff and jitter and flushing coalesced samples happen in the same place). Every paho
callback runs on that thread. Decoded rows are coalesced (rows.py) and cross to the bus in
exactly one function, MqttSource._hand_over: at once when the socket has nothing more to
read, else after at most `_FLUSH_ROWS` rows or `_FLUSH_S` seconds, so a burst costs one batch
per few hundred messages and a lone message waits for nothing.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hmi.config.connections import MqttConnection
from hmi.config.credentials import resolve_password
from hmi.core.events import Event
from hmi.core.sockets import disable_nagle
from hmi.sources.mqtt.rows import Rows

_FLUSH_ROWS = 4096
_FLUSH_S = 0.002
_BURST_PACKETS = 64
_ACK_EVERY_PACKETS = 16  # below Mosquitto's default in-flight window of 20 QoS 1 messages
_IDLE_TIMEOUT_S = 0.25


def make_client(config: MqttConnection, name: str, project_dir: Path | None) -> paho.Client:
    """A paho client for the connection `name`, its callbacks not yet set (the source sets them).

    Raises CredentialError when a password_ref cannot be resolved."""
    c = config
    v5 = c.protocol == "5"
    client_id = c.client_id or (
        f"hmi-{socket.gethostname()}-{name}"
        if not c.clean_session
        else f"hmi-{socket.gethostname()}-{name}-{os.getpid()}"
    )
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else c.clean_session,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=False,
    )
    client.connect_timeout = 5.0
    if c.user:
        client.username_pw_set(c.user, resolve_password(c.password_ref) if c.password_ref else None)
    tls = c.tls_config
    if tls is not None:
        key_password = resolve_password(tls.key_password_ref) if tls.key_password_ref else None
        client.tls_set(
            ca_certs=_path(tls.ca, project_dir),
            certfile=_path(tls.cert, project_dir),
            keyfile=_path(tls.key, project_dir),
            cert_reqs=ssl.CERT_REQUIRED,
            keyfile_password=key_password,
        )
        client.tls_insecure_set(not tls.server_name_check)
    client.on_socket_open = disable_nagle
    # With this set, paho queues outgoing packets (PUBACKs, command publishes) instead of
    # sending each at once from the thread that made it: the pump writes them in one
    # send per burst (one send per QoS 1 message was a sixth of the network thread's time).
    client.on_socket_register_write = _write_in_pump
    return client


def _path(relative: str | None, project_dir: Path | None) -> str | None:
    if relative is None:
        return None
    path = Path(relative)
    if not path.is_absolute() and project_dir is not None:
        path = project_dir / path
    return str(path)


def connect(client: paho.Client, config: MqttConnection, first: bool, broker: tuple[str, int] | None = None) -> None:
    """CONNECT (the first time, or to another `broker` of the connection's list) or reconnect;
    a Last Will is set before this (sparkplug_host.py)."""
    c = config
    host, port = broker or (c.host, c.port)
    properties = None
    if c.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0 if c.clean_session else c.session_expiry_s
    if first:
        client.connect(
            host,
            port,
            keepalive=c.keepalive_s,
            clean_start=c.clean_session if c.protocol == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
    else:
        client.reconnect()


def disconnect_cleanly(
    client: paho.Client, last_words: Callable[[paho.Client], paho.MQTTMessageInfo] | None = None
) -> None:
    """A clean stop: `last_words` first (the Sparkplug STATE death: a DISCONNECT discards the
    Last Will), then DISCONNECT. The pump no longer runs, so this writes the queued packets itself."""
    if last_words is not None and client.is_connected():
        info = last_words(client)
        deadline = time.monotonic() + 2.0
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
    client.disconnect()
    for _ in range(10):  # the DISCONNECT packet is queued, not yet written (see _write_in_pump)
        if not client.want_write() or client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            break


def pump(
    client: paho.Client,
    rows: Rows,
    events: list[Event],
    stopping: threading.Event,
    flush: Callable[[], None],
    housekeeping: Callable[[], None],
) -> str:
    """Run paho's loop until the connection ends or `stopping` is set, calling `flush` when the
    coalesced `rows` and `events` should leave (as described above) and `housekeeping` once
    per round. Returns why the connection ended when paho says so, "" when it was stopped or
    lost (on_disconnect tells that)."""
    while not stopping.is_set():
        timeout = _IDLE_TIMEOUT_S
        if rows.count or events:
            timeout = max(0.0, rows.since + _FLUSH_S - time.monotonic())
        rc = client.loop(timeout)
        # Packets already buffered are read without another trip through loop(), whose
        # select over two sockets, write and housekeeping cost more than the read itself.
        # The same select tells when the socket is quiet, i.e. when rows should leave now.
        sock = client.socket()
        burst = 0
        quiet = False
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and burst < _BURST_PACKETS:
            if rows.count and (rows.count >= _FLUSH_ROWS or time.monotonic() - rows.since >= _FLUSH_S):
                break  # the flush below bounds how long a decoded row waits
            if not _readable(sock):
                quiet = True
                break
            rc = client.loop_read()
            burst += 1
            if burst % _ACK_EVERY_PACKETS == 0 and client.want_write():
                rc = client.loop_write()  # acknowledge, so the broker keeps sending
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.want_write():
            rc = client.loop_write()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            flush()
            return "" if rc == MQTTErrorCode.MQTT_ERR_CONN_LOST else f"connection ended: {paho.error_string(rc)}"
        # Under load rows pile up and go out every _FLUSH_S or _FLUSH_ROWS; a lone message
        # goes out as soon as the socket is quiet.
        if (rows.count or events) and (quiet or rows.count >= _FLUSH_ROWS or time.monotonic() - rows.since >= _FLUSH_S):
            flush()
        housekeeping()
    return ""


def _write_in_pump(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho's "register for writing" hook: nothing to register, the pump writes (see pump)."""


def _readable(sock: Any) -> bool:
    """Whether more data waits (TLS may hold decrypted bytes that select cannot see)."""
    if sock is None:
        return False
    pending = getattr(sock, "pending", None)
    if pending is not None and pending() > 0:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return False
