"""Runtime side of the channel: streams the bus to windows and answers their requests.

Threads: the bus calls `_on_batch`/`_on_events`/`_on_tags` on whatever thread published;
those only append to an outbox under a lock (and take a sequence number), never touch a
socket. One sender thread owns the PUB socket: it drains the outbox, merges runs of
batches into one message and sends. One request thread owns the ROUTER socket. A slow
window never slows the runtime: PUB drops beyond the high-water mark and the window sees
the gap in the sequence numbers. No stream message spans the sequence number a snapshot
was taken at, so a window can tell exactly which messages a snapshot already contains.

With a `CurveServer` both sockets are CURVE servers in a ZeroMQ context of their own, whose
ZAP handler (hmi/ipc/curve.py) lets in enrolled stations only; a command's station is then
the enrolled name of the connection it came on. Without one, only loopback is served.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch
from hmi.core.tags import TagSpec
from hmi.ipc import messages as m
from hmi.ipc.curve import NOT_ENROLLED, CurveServer, StationAuthenticator, require_curve

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.2
SEND_HWM = 20_000  # messages per window before PUB drops (the window counts the gap)
MAX_MERGED_SAMPLES = 200_000
# Events per message: a window decodes a message's JSON in one call that holds the GIL, so
# an alarm flood sent as one 10,000-event message would freeze its UI thread for ~80 ms.
MAX_MERGED_EVENTS = 500

# An outbox marker, never sent: a snapshot was taken at this sequence number, so no message
# may merge items from both sides of it.
_CUT = b""

CommandHandler = Callable[[dict[str, Any]], dict[str, Any]]


def check_free(address: str) -> None:
    """Raise OSError (the message `start` gives) if a tcp://host:port address is taken.

    The runtime asks before its historian opens the file, so a start that fails on a busy
    port leaves nothing behind, while the ports themselves are bound only once the
    historian exists (a window that connects can read it)."""
    if not address.startswith("tcp://"):
        return
    host, _, port = address[len("tcp://") :].rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return  # a port chosen by the system cannot be taken
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As ZeroMQ does: a port in TIME_WAIT is free, one another socket listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("" if host == "*" else host.strip("[]"), int(port)))
        except OSError as exc:
            raise OSError(f"cannot listen on {address}: {exc.strerror or exc}") from None


class IpcPublisher:
    def __init__(
        self,
        bus: TagBus,
        stream_address: str,
        request_address: str,
        command_handler: CommandHandler | None = None,
        context: zmq.Context | None = None,
        curve: CurveServer | None = None,
    ) -> None:
        self.bus = bus
        self.stream_address = stream_address
        self.request_address = request_address
        self.command_handler = command_handler
        self.curve = curve
        self.session = random.getrandbits(63) or 1
        # The ZAP handler serves its whole context: a context of our own keeps it to our sockets.
        self._own_ctx = curve is not None and context is None
        self._ctx = zmq.Context() if self._own_ctx else (context or zmq.Context.instance())
        self._auth: StationAuthenticator | None = None
        self._cond = threading.Condition(threading.Lock())
        self._outbox: list[tuple[bytes, int, Any]] = []  # (kind, seq, payload)
        self._seq = 0
        self._running = False
        self._threads: list[threading.Thread] = []
        self._subscriptions: list[Any] = []
        self.messages_sent = 0
        self.samples_sent = 0
        # Test hook, off in production: while True, what the bus publishes is numbered but
        # never sent, which is exactly the gap a window sees when PUB drops beyond SEND_HWM.
        # It is read where items are numbered, on the publishing thread, so a test that sets
        # it around a publish knows which items are lost.
        self.discard_stream = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Bind both sockets (raises OSError naming the address if taken, or if it is not
        loopback and the channel is plain), then serve."""
        require_curve(self.stream_address, self.curve)
        require_curve(self.request_address, self.curve)
        if self.curve is not None:
            # Answering before the first bind: libzmq lets every key in while no handler runs.
            self._auth = StationAuthenticator(self._ctx, self.curve.stations)
            self._auth.start()
            self._auth.thread.name = "ipc-zap"
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, SEND_HWM)
        pub.setsockopt(zmq.LINGER, 0)
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        for sock, address in ((pub, self.stream_address), (router, self.request_address)):
            if self.curve is not None:
                self.curve.apply(sock)
            try:
                sock.bind(address)
            except zmq.ZMQError as exc:
                pub.close()
                router.close()
                self._stop_auth()
                raise OSError(f"cannot listen on {address}: {exc}") from None
        self._running = True
        self._subscriptions = [
            self.bus.subscribe(self._on_batch, name="ipc-publisher"),
            self.bus.subscribe_events(self._on_events, name="ipc-publisher"),
        ]
        self.bus.registry.on_added(self._on_tags)
        # Each socket moves to the one thread that uses it from now on (thread start is
        # the memory barrier ZeroMQ asks for when a socket changes threads).
        for target, sock, name in ((self._send_loop, pub, "ipc-send"), (self._request_loop, router, "ipc-requests")):
            thread = threading.Thread(target=target, args=(sock,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._running = False
        for sub in self._subscriptions:
            sub.close()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2.0)
        ended = not any(t.is_alive() for t in self._threads)
        self._threads.clear()
        self._stop_auth()
        if self._own_ctx and ended:
            self._ctx.term()

    def _stop_auth(self) -> None:
        # After the sockets closed: without its handler libzmq would let any key in.
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    @property
    def stations_refused(self) -> int:
        """Handshakes the ZAP handler refused (unknown keys) since start."""
        return self._auth.refused if self._auth is not None else 0

    # -- bus side (any thread, under the bus lock) --------------------------------------------

    def _push(self, kind: bytes, payload: Any) -> None:
        with self._cond:
            self._seq += 1
            if self.discard_stream:
                return
            self._outbox.append((kind, self._seq, payload))
            self._cond.notify()

    def _on_batch(self, batch: SampleBatch) -> None:
        self._push(m.KIND_BATCH, batch)

    def _on_events(self, events: Any) -> None:
        self._push(m.KIND_EVENTS, list(events))

    def _on_tags(self, added: list[tuple[int, TagSpec]]) -> None:
        if self._running:
            self._push(m.KIND_TAGS, added)

    def current_seq(self) -> int:
        with self._cond:
            return self._seq

    def _snapshot_seq(self) -> int:
        """The sequence number a snapshot taken now is consistent with (read under the bus
        lock), cutting the outbox there so that no stream message spans it."""
        with self._cond:
            self._outbox.append((_CUT, self._seq, None))
            return self._seq

    # -- sender thread ----------------------------------------------------------------------

    def _send_loop(self, pub: zmq.Socket) -> None:
        try:
            next_heartbeat = 0.0
            while self._running:
                with self._cond:
                    if not self._outbox:
                        self._cond.wait(timeout=max(next_heartbeat - time.monotonic(), 0.001))
                    pending, self._outbox = self._outbox, []
                    last_seq = self._seq
                for group in _merge_runs(pending):
                    self._send(pub, group)
                now = time.monotonic()
                if now >= next_heartbeat:
                    header = m.pack_header(m.Header(self.session, last_seq, last_seq))
                    pub.send_multipart([m.KIND_HEARTBEAT, header])
                    next_heartbeat = now + HEARTBEAT_S
        finally:
            pub.close()

    def _send(self, pub: zmq.Socket, group: list[tuple[bytes, int, Any]]) -> None:
        kind = group[0][0]
        first, last = group[0][1], group[-1][1]
        if kind == m.KIND_BATCH:
            batch = SampleBatch.concat([payload for _, _, payload in group])
            header = m.pack_header(m.Header(self.session, first, last, len(batch)))
            pub.send_multipart([kind, header, *m.batch_frames(batch)], copy=len(batch) < 2000)
            self.samples_sent += len(batch)
        elif kind == m.KIND_EVENTS:
            events = [e for _, _, payload in group for e in payload]
            header = m.pack_header(m.Header(self.session, first, last, len(events)))
            pub.send_multipart([kind, header, m.events_frame(events)])
        else:
            tags = [t for _, _, payload in group for t in payload]
            header = m.pack_header(m.Header(self.session, first, last, len(tags)))
            pub.send_multipart([kind, header, m.tags_frame(tags)])
        self.messages_sent += 1

    # -- request thread ------------------------------------------------------------------------

    def _request_loop(self, router: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        try:
            while self._running:
                if not poller.poll(100):
                    continue
                parts = router.recv_multipart(copy=False)
                identity, request = parts[0].bytes, [p.bytes for p in parts[1:]]
                # The enrolled name the ZAP handler gave this connection (None when plain).
                user_id = parts[1].get("User-Id") if self.curve is not None and len(parts) > 1 else None
                station = str(user_id) if user_id else None
                try:
                    reply = self._handle(request, station)
                except Exception as exc:
                    log.exception("IPC request failed")
                    reply = [m.KIND_REPLY, json.dumps({"ok": False, "error": str(exc)}).encode()]
                router.send_multipart([identity, *reply])
        finally:
            router.close()

    def _handle(self, request: list[bytes], station: str | None = None) -> list[Any]:
        if not request:
            raise m.ProtocolError("empty request")
        enrolled = self.curve is None or bool(station and self.curve.enrolled(station))
        if request[0] == m.REQUEST_SNAPSHOT:
            if not enrolled:  # removed from the allow-list since it connected: nothing more for it
                return [m.KIND_REPLY, json.dumps({"ok": False, "error": NOT_ENROLLED}).encode()]
            return self.snapshot_frames()
        if request[0] == m.REQUEST_COMMAND and len(request) == 2:
            command = json.loads(request[1])
            command_id = command.pop("_id", 0)
            if not enrolled:
                return [m.KIND_REPLY, json.dumps({"ok": False, "error": NOT_ENROLLED, "_id": command_id}).encode()]
            if station is not None:
                # Who sent it is who the handshake proved, whatever the window wrote in it.
                command["station"] = station
            if self.command_handler is None:
                result = {"ok": False, "error": "this runtime accepts no commands"}
            else:
                try:
                    result = self.command_handler(command)
                except Exception as exc:
                    log.exception("command %s failed", command.get("command"))
                    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            return [m.KIND_REPLY, json.dumps({**result, "_id": command_id}).encode()]
        raise m.ProtocolError(f"unknown request {request[0]!r}")

    def snapshot_frames(self) -> list[Any]:
        snapshot, seq = self.bus.snapshot(consistent_with=self._snapshot_seq)
        registry = self.bus.registry
        tags = [(i, registry.spec(i)) for i in range(len(registry))]
        batch = snapshot.batch
        header = m.pack_header(m.Header(self.session, seq or 0, seq or 0, len(batch)))
        return [m.KIND_SNAPSHOT, header, m.tags_frame(tags), *m.batch_frames(batch)]


def _merge_runs(pending: list[tuple[bytes, int, Any]]) -> list[list[tuple[bytes, int, Any]]]:
    """Group consecutive items of the same kind (batches capped in size), keeping order.
    A group never spans a snapshot's cut, nor a hole in the numbering (the test hook's
    discarded items), which must show as a gap as a dropped message does."""
    groups: list[list[tuple[bytes, int, Any]]] = []
    size = 0
    cut = False
    for item in pending:
        kind = item[0]
        if kind == _CUT:
            cut = True
            continue
        n = len(item[2]) if kind in (m.KIND_BATCH, m.KIND_EVENTS) else 0
        limit = MAX_MERGED_SAMPLES if kind == m.KIND_BATCH else MAX_MERGED_EVENTS if kind == m.KIND_EVENTS else None
        if (
            groups
            and not cut
            and groups[-1][0][0] == kind
            and groups[-1][-1][1] + 1 == item[1]
            and (limit is None or size + n <= limit)
        ):
            groups[-1].append(item)
            size += n
        else:
            groups.append([item])
            size = n
        cut = False
    return groups
