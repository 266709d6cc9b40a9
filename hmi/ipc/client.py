"""Window side of the channel: snapshot first, then the stream, and a watch on the runtime.

The client runs its own thread (ZeroMQ sockets stay in it, and it works the same on any
event loop or none). It calls its listener on that thread; the listener must be quick
and thread-safe. Protocol: subscribe to the stream and wait for the first message (a
heartbeat at the latest), because a PUB socket silently drops what it sends before a new
subscription is live (ZeroMQ's "slow joiner"); then ask for a snapshot, hold stream
messages until it arrives, and apply those newer than the snapshot. A message from a new
runtime session (the runtime restarted) starts that over. No message for `timeout_s`
means the runtime is gone.

Repair: a sequence gap (a message's first number, or a heartbeat's last, beyond what
arrived) or the same session resuming after the link was declared lost makes the client ask
for a fresh snapshot, without holding the stream. The snapshot carries the number S it is
consistent with, and the runtime never merges items across S into one message, so: a tag
the stream brought anything newer than S of keeps its value, every other tag takes the
snapshot's, and batch messages up to S that arrive after it are skipped (events and tags
are never skipped: the snapshot holds values only). The listener's `on_resync` then fetches
what it keeps from events (the alarm list). One repair is in flight at a time, and at most
one starts per REPAIR_INTERVAL_S: a flood of gaps is repaired by a few snapshots.

Security: with a `CurveClient` both sockets are CURVE clients (hmi/ipc/curve.py). A command
carrying a password (a login) is sent only inside an encrypted channel or on loopback;
otherwise it is answered here, by a refusal, and never leaves the process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import zmq

from hmi.core.events import Event
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagSpec
from hmi.ipc import messages as m
from hmi.ipc.curve import CurveClient, address_is_local

log = logging.getLogger(__name__)

RUNTIME_TIMEOUT_S = 1.0  # three heartbeats missed and some margin
SNAPSHOT_RETRY_S = 1.0
# A window behind the stream reads it for this long, then serves commands, repairs and the
# link watch (which must not mistake its own backlog for a silent runtime).
DRAIN_S = 0.05
REPAIR_INTERVAL_S = 0.25  # between repair snapshots: converges in a second, never floods the runtime
PLAIN_LOGIN_REFUSED = (
    "login refused: the channel to {address} is neither encrypted nor on this host, so the password "
    "would cross the network in clear. Name the runtime's public key ([runtime] server_key) to use CURVE."
)


class ClientListener(Protocol):
    def on_snapshot(self, tags: list[tuple[int, TagSpec]], batch: SampleBatch) -> None: ...
    def on_resync(self, tags: list[tuple[int, TagSpec]], batch: SampleBatch) -> None:
        """After a gap or a stall, same runtime session (tag ids unchanged): `tags` are all
        the runtime's tags, `batch` its latest values of the tags the stream has brought
        nothing newer of. Apply what differs, and re-fetch anything kept from events."""
        ...

    def on_tags(self, tags: list[tuple[int, TagSpec]]) -> None: ...
    def on_batch(self, batch: SampleBatch) -> None: ...
    def on_events(self, events: list[Event]) -> None: ...
    def on_link(self, up: bool) -> None: ...


@dataclass
class ClientStats:
    messages: int = 0
    samples: int = 0
    gaps: int = 0  # stream messages lost (sequence numbers skipped)
    sessions: int = 0  # runtime sessions seen (restarts + 1)
    snapshots: int = 0
    repairs: int = 0  # fresh snapshots applied after a gap or a stall


@dataclass
class _Stream:
    """Where the client thread's stream stands within one runtime session."""

    last_seq: int = 0
    # Per remote tag id, the sequence number of the last batch message that brought it.
    updated_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    skip_through: int = 0  # batch messages up to this number are in a repair snapshot already
    repair_through: int | None = None  # a repair snapshot must reach this number; None: none due
    repair_sent_at: float | None = None  # a repair request is in flight since then
    last_repair_at: float = float("-inf")

    def want_repair(self, through: int) -> None:
        if through > self.skip_through:  # else the last repair snapshot already covers it
            self.repair_through = through if self.repair_through is None else max(self.repair_through, through)

    def note_updated(self, tag_ids: np.ndarray, seq: int) -> None:
        if not len(tag_ids):
            return
        top = int(tag_ids.max())
        if top >= self.updated_at.shape[0]:
            grown = np.zeros(max(top + 1, 2 * self.updated_at.shape[0]), np.int64)
            grown[: self.updated_at.shape[0]] = self.updated_at
            self.updated_at = grown
        self.updated_at[tag_ids] = seq

    def not_newer_than(self, batch: SampleBatch, seq: int) -> SampleBatch:
        """The rows of `batch` (consistent with `seq`) for tags the stream brought nothing newer of."""
        ids = batch.tag_ids
        known = ids < self.updated_at.shape[0]
        newer = np.zeros(ids.shape[0], bool)
        newer[known] = self.updated_at[ids[known]] > seq
        return batch.take(~newer) if newer.any() else batch


class IpcClient:
    def __init__(
        self,
        stream_address: str,
        request_address: str,
        listener: ClientListener,
        timeout_s: float = RUNTIME_TIMEOUT_S,
        context: zmq.Context | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        self.stream_address = stream_address
        self.request_address = request_address
        self.listener = listener
        self.curve = curve
        self.timeout_s = timeout_s
        self.stats = ClientStats()
        self.link_up = False
        self.session: int | None = None
        self._ctx = context or zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._running = False
        self._commands: list[tuple[dict[str, Any], Future[dict[str, Any]]]] = []
        self._commands_lock = threading.Lock()
        self._wake_address = f"inproc://ipc-client-wake-{id(self)}"
        self._wake_send: zmq.Socket | None = None
        self._wake_lock = threading.Lock()

    def start(self) -> None:
        self._running = True
        wake_recv = self._ctx.socket(zmq.PAIR)
        wake_recv.bind(self._wake_address)
        self._thread = threading.Thread(target=self._loop, args=(wake_recv,), name="ipc-client", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._wake_send is not None:
            self._wake_send.close(0)
            self._wake_send = None

    @property
    def carries_secrets(self) -> bool:
        """True when a password may travel on this channel: encrypted, or never off this host."""
        return self.curve is not None or address_is_local(self.request_address)

    def send_command(self, command: dict[str, Any]) -> Future[dict[str, Any]]:
        """Send a command to the runtime; the future resolves with its reply (thread-safe)."""
        future: Future[dict[str, Any]] = Future()
        if "password" in command and not self.carries_secrets:
            future.set_result({"ok": False, "error": PLAIN_LOGIN_REFUSED.format(address=self.request_address)})
            return future
        with self._commands_lock:
            self._commands.append((command, future))
        self._wake()
        return future

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_send is None:
                self._wake_send = self._ctx.socket(zmq.PAIR)
                self._wake_send.connect(self._wake_address)
            try:
                self._wake_send.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                # No peer: the client thread has already ended (stop() raced it, which a
                # loaded machine makes likely), or its queue is full and it is awake anyway.
                pass

    # -- client thread ----------------------------------------------------------------------

    def _new_dealer(self) -> zmq.Socket:
        dealer = self._ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply(dealer)
        dealer.connect(self.request_address)
        return dealer

    def _loop(self, wake: zmq.Socket) -> None:
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if self.curve is not None:
            self.curve.apply(sub)
        sub.connect(self.stream_address)
        dealer = self._new_dealer()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(dealer, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)

        snapshot_seq: int | None = None  # None: waiting for a snapshot
        held: list[tuple[m.Header, bytes, list[Any]]] = []
        requested_at: float | None = None  # None: not asked yet (stream not live yet)
        stream = _Stream()
        last_message = time.monotonic()
        pending: dict[int, Future[dict[str, Any]]] = {}  # command id -> future
        next_command_id = 1

        def request_snapshot() -> None:
            nonlocal requested_at, dealer
            if requested_at is not None or self.session is not None:
                # A retry, or a new runtime: what was sent to the old one is never answered, so
                # start a fresh socket. (The first request goes on the socket commands already
                # use: the runtime that answers them is the one whose stream just arrived.)
                poller.unregister(dealer)
                dealer.close(0)
                dealer = self._new_dealer()
                poller.register(dealer, zmq.POLLIN)
                stream.repair_sent_at = None  # its answer went with the old socket
                for future in pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("the runtime restarted before it answered"))
                pending.clear()
            dealer.send_multipart([m.REQUEST_SNAPSHOT])
            requested_at = time.monotonic()

        try:
            while self._running:
                events = dict(poller.poll(50))
                now = time.monotonic()
                if wake in events:
                    while wake.poll(0):
                        wake.recv()
                    with self._commands_lock:
                        commands, self._commands = self._commands, []
                    for command, future in commands:
                        command_id = next_command_id
                        next_command_id += 1
                        pending[command_id] = future
                        payload = json.dumps({**command, "_id": command_id}).encode()
                        dealer.send_multipart([m.REQUEST_COMMAND, payload])
                if dealer in events:
                    frames = dealer.recv_multipart(copy=False)
                    kind = bytes(frames[0].buffer)
                    if kind == m.KIND_SNAPSHOT:
                        header = m.unpack_header(frames[1].buffer)
                        tags = m.tags_from_frame(frames[2])
                        batch = m.batch_from_frames(frames[3:])
                        if snapshot_seq is None:
                            if self.session != header.session:
                                self.stats.sessions += 1
                                self.session = header.session
                            snapshot_seq = header.last_seq
                            stream = _Stream(last_seq=snapshot_seq)
                            self.stats.snapshots += 1
                            self.listener.on_snapshot(tags, batch)
                            for h, k, f in held:
                                if h.session == header.session and h.last_seq > snapshot_seq:
                                    self._apply(stream, h, k, f)
                            held.clear()
                            last_message = now
                            self._set_link(True)
                        elif header.session == self.session:
                            self._repair(stream, header, tags, batch)
                        # else: a new runtime answered a repair; its stream will start over.
                    elif kind == m.KIND_REPLY:
                        reply = json.loads(bytes(frames[1].buffer))
                        answered = pending.pop(int(reply.pop("_id", 0)), None)
                        if answered is not None and not answered.done():
                            answered.set_result(reply)
                if sub in events:
                    while True:
                        received_at = time.monotonic()
                        if received_at - now > DRAIN_S:
                            break
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        kind = bytes(frames[0].buffer)
                        header = m.unpack_header(frames[1].buffer)
                        last_message = received_at
                        if self.session is not None and header.session != self.session and snapshot_seq is not None:
                            log.warning("runtime restarted (new session); taking a fresh snapshot")
                            snapshot_seq = None
                            held.clear()
                            requested_at = None
                        if snapshot_seq is None:
                            if kind != m.KIND_HEARTBEAT:
                                held.append((header, kind, list(frames[2:])))
                            if requested_at is None:
                                # The subscription is live now: what follows reaches us.
                                request_snapshot()
                            continue
                        if not self.link_up:
                            # The same session resumes after the link was declared lost: the
                            # window shows every value COMM_LOST, and anything may have changed.
                            # Due even if nothing was lost, so not through want_repair.
                            log.info("runtime stream resumed after a stall; taking a fresh snapshot")
                            stream.repair_through = max(stream.repair_through or 0, header.last_seq)
                        if kind == m.KIND_HEARTBEAT:
                            if header.last_seq > stream.last_seq:
                                self.stats.gaps += header.last_seq - stream.last_seq
                                stream.last_seq = header.last_seq
                                stream.want_repair(header.last_seq)
                            self._set_link(True)
                            continue
                        if header.last_seq <= snapshot_seq:
                            continue
                        self._apply(stream, header, kind, list(frames[2:]))
                        self._set_link(True)
                if snapshot_seq is None and requested_at is not None and now - requested_at > SNAPSHOT_RETRY_S:
                    request_snapshot()
                if snapshot_seq is not None and stream.repair_through is not None:
                    if stream.repair_sent_at is not None and now - stream.repair_sent_at > SNAPSHOT_RETRY_S:
                        stream.repair_sent_at = None  # unanswered (runtime busy or gone): ask again
                    if stream.repair_sent_at is None and now - stream.last_repair_at >= REPAIR_INTERVAL_S:
                        dealer.send_multipart([m.REQUEST_SNAPSHOT])
                        stream.repair_sent_at = stream.last_repair_at = now
                if self.link_up and now - last_message > self.timeout_s:
                    self._set_link(False)
        finally:
            for future in pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("client stopped"))
            sub.close(0)
            dealer.close(0)
            wake.close(0)

    def _apply(self, stream: _Stream, header: m.Header, kind: bytes, frames: list[Any]) -> None:
        if header.first_seq > stream.last_seq + 1:
            self.stats.gaps += header.first_seq - stream.last_seq - 1
            stream.want_repair(header.first_seq - 1)
        stream.last_seq = max(stream.last_seq, header.last_seq)
        if kind == m.KIND_BATCH:
            if header.last_seq <= stream.skip_through:
                return  # a repair snapshot already gave these values or newer ones
            batch = m.batch_from_frames(frames)
            self.stats.messages += 1
            self.stats.samples += len(batch)
            stream.note_updated(batch.tag_ids, header.last_seq)
            self.listener.on_batch(batch)
            return
        self.stats.messages += 1
        if kind == m.KIND_TAGS:
            self.listener.on_tags(m.tags_from_frame(frames[0]))
        elif kind == m.KIND_EVENTS:
            self.listener.on_events(m.events_from_frame(frames[0]))

    def _repair(self, stream: _Stream, header: m.Header, tags: list[tuple[int, TagSpec]], batch: SampleBatch) -> None:
        """Apply a repair snapshot consistent with `header.last_seq` (see the module docstring)."""
        seq = header.last_seq
        stream.repair_sent_at = None
        if seq < stream.skip_through:
            return  # an older answer (a retried request): a newer repair is applied already
        stream.skip_through = seq
        if stream.repair_through is not None and seq >= stream.repair_through:
            stream.repair_through = None
        self.stats.repairs += 1
        self.listener.on_resync(tags, stream.not_newer_than(batch, seq))

    def _set_link(self, up: bool) -> None:
        if up != self.link_up:
            self.link_up = up
            log.info("runtime link %s", "up" if up else "lost")
            self.listener.on_link(up)


# A listener that ignores everything, for subclassing.
class NullListener:
    def on_snapshot(self, tags: list[tuple[int, TagSpec]], batch: SampleBatch) -> None:
        pass

    def on_resync(self, tags: list[tuple[int, TagSpec]], batch: SampleBatch) -> None:
        pass

    def on_tags(self, tags: list[tuple[int, TagSpec]]) -> None:
        pass

    def on_batch(self, batch: SampleBatch) -> None:
        pass

    def on_events(self, events: list[Event]) -> None:
        pass

    def on_link(self, up: bool) -> None:
        pass
