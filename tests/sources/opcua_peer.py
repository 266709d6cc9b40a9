"""A small real OPC UA server for the source tests, in a thread or (for chaos tests) a process.

Objects/Test holds one variable of each data type the source maps, an array, a writable
setpoint with a range, a counter that a ticker increments at `rate_hz`, and methods
Add(a, b) and Adjust(Double setpoint, String reason) -> (Boolean accepted). Security and
user names are set per test, so each mode is tested against a server configured for exactly
that mode. Run as a process:

    python -m tests.sources.opcua_peer --port P --pki DIR [--security ...] [--start N]

(it prints "ready" once it serves, and the counter starts at N so a restarted server
continues the sequence).

BareServer is the plain kind for tests that script each value themselves: no security, no
ticker, on the test's own event loop, with the nodes a subclass adds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from asyncua import Node, Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

NAMESPACE = "urn:hmi:test"
ALL_POLICIES = (
    "None",
    "Basic256Sha256:Sign",
    "Basic256Sha256:SignAndEncrypt",
    "Aes128Sha256RsaOaep:Sign",
    "Aes128Sha256RsaOaep:SignAndEncrypt",
)

_POLICY_TYPES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256:Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256:SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes128Sha256RsaOaep:Sign": ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    "Aes128Sha256RsaOaep:SignAndEncrypt": ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
}


class _Users(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None):
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


async def _server_certificate(pki: Path) -> tuple[Path, Path]:
    from asyncua.crypto import cert_gen
    from cryptography.x509.oid import ExtendedKeyUsageOID

    pki.mkdir(parents=True, exist_ok=True)
    key, cert = pki / "server-key.pem", pki / "server-cert.der"
    await cert_gen.setup_self_signed_certificate(
        key, cert, "urn:hmi:test:server", "localhost", [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "Test server"}
    )
    return cert, key


def _fix_transfer(server: Server) -> None:
    """Make TransferSubscriptions complete in asyncua's server (2.1).

    Its transfer rebinds where publish *responses* go but not where the subscription takes
    its publish *requests* from, so a transferred subscription keeps answering the old,
    dead connection and everything it sends is lost. Real servers rebind both; so does this
    test server, so that the client's transfer and republish can be tested end to end.
    """
    service = server.iserver.subscription_service
    original = service.transfer_subscriptions

    async def transfer(params: ua.TransferSubscriptionsParameters, session_id: ua.NodeId, callback: Any) -> Any:
        results = await original(params, session_id, callback)
        processor = getattr(callback, "__self__", None)
        for sub_id, result in zip(params.SubscriptionIds, results, strict=True):
            sub = service.subscriptions.get(int(sub_id))
            if result.StatusCode.is_good() and sub is not None and processor is not None:
                sub.pub_request_callback = processor.get_publish_request
        return results

    service.transfer_subscriptions = transfer


class OpcUaPeer:
    """Serve on 127.0.0.1:`port` until stopped."""

    def __init__(
        self,
        port: int,
        pki: Path,
        security: tuple[str, ...] = ("None",),
        users: dict[str, str] | None = None,
        rate_hz: float = 20.0,
        start: int = 0,
        certificate: tuple[Path, Path] | None = None,
    ) -> None:
        self.port = port
        self.certificate = certificate  # (DER certificate, PEM key) to serve instead of a generated one
        self.pki = pki
        self.security = security
        self.users = users
        self.rate_hz = rate_hz
        self.counter = start
        self.server: Server | None = None
        self.nodes: dict[str, Any] = {}
        self.written: list[tuple[str, Any]] = []
        self.adjusted: list[tuple[float, str]] = []  # Adjust(setpoint, reason) calls that were carried out
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/test"

    @property
    def certificate_der(self) -> bytes:
        return (self.certificate[0] if self.certificate else self.pki / "server-cert.der").read_bytes()

    async def serve(self, stop: asyncio.Event | None = None, on_ready: Any = None) -> None:
        self._stop = stop or asyncio.Event()
        server = Server(user_manager=_Users(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("HMI test server")
        await server.set_application_uri("urn:hmi:test:server")
        server.set_security_policy([_POLICY_TYPES[s] for s in self.security])
        server.set_identity_tokens(
            [ua.UserNameIdentityToken] if self.users else [ua.AnonymousIdentityToken, ua.UserNameIdentityToken]
        )
        if any(s != "None" for s in self.security) or self.users:
            cert, key = self.certificate or await _server_certificate(self.pki)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        _fix_transfer(server)
        ns = await server.register_namespace(NAMESPACE)
        folder = await server.nodes.objects.add_folder(ua.NodeId("Test", ns), ua.QualifiedName("Test", ns))

        async def var(name: str, value: Any, vtype: ua.VariantType, writable: bool = False) -> Any:
            node = await folder.add_variable(ua.NodeId(f"Test/{name}", ns), ua.QualifiedName(name, ns), value, vtype)
            if writable:
                await node.set_writable()
            self.nodes[name] = node
            return node

        await var("double", 1.5, ua.VariantType.Double)
        await var("float", 2.5, ua.VariantType.Float)
        await var("int16", -7, ua.VariantType.Int16, writable=True)
        await var("uint32", 7, ua.VariantType.UInt32)
        await var("int64", 2**40, ua.VariantType.Int64)
        await var("bool", True, ua.VariantType.Boolean, writable=True)
        await var("string", "hello", ua.VariantType.String, writable=True)
        await var("time", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), ua.VariantType.DateTime)
        array = await var("array", [1.0, 2.0, 3.0, 4.0], ua.VariantType.Double, writable=True)
        await array.write_value_rank(1)
        await array.write_array_dimensions([4])
        await var("counter", float(self.counter), ua.VariantType.Double)
        await var("setpoint", 50.0, ua.VariantType.Double, writable=True)

        async def add(parent: Any, a: ua.Variant, b: ua.Variant) -> list[ua.Variant]:
            return [ua.Variant(a.Value + b.Value, ua.VariantType.Double)]

        self.nodes["add"] = await folder.add_method(
            ua.NodeId("Test/add", ns),
            ua.QualifiedName("Add", ns),
            add,
            [ua.VariantType.Double] * 2,
            [ua.VariantType.Double],
        )

        async def adjust(parent: Any, setpoint: ua.Variant, reason: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
            if setpoint.Value > 1000:  # a Bad status, not an output: the caller must show it as such
                return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
            self.adjusted.append((setpoint.Value, reason.Value))
            return [ua.Variant(0 <= setpoint.Value <= 100, ua.VariantType.Boolean)]

        def arg(name: str, vtype: ua.VariantType, text: str) -> ua.Argument:
            return ua.Argument(Name=name, DataType=ua.NodeId(vtype.value), ValueRank=-1,
                               Description=ua.LocalizedText(text))  # fmt: skip

        self.nodes["adjust"] = await folder.add_method(
            ua.NodeId("Test/adjust", ns),
            ua.QualifiedName("Adjust", ns),
            adjust,
            [arg("setpoint", ua.VariantType.Double, "new setpoint in %"), arg("reason", ua.VariantType.String, "why")],
            [arg("accepted", ua.VariantType.Boolean, "the setpoint is within 0..100")],
        )
        self.server = server
        async with server:
            if on_ready is not None:
                on_ready()
            period = 1.0 / self.rate_hz
            counter = self.nodes["counter"]
            while not self._stop.is_set():
                self.counter += 1
                await counter.write_value(
                    ua.DataValue(
                        ua.Variant(float(self.counter), ua.VariantType.Double), SourceTimestamp=datetime.now(UTC)
                    )
                )
                try:
                    await asyncio.wait_for(self._stop.wait(), period)
                except TimeoutError:
                    pass

    # -- in a thread ------------------------------------------------------------------------

    def start(self) -> OpcUaPeer:
        self._loop = asyncio.new_event_loop()

        def main() -> None:
            try:
                self._loop.run_until_complete(self.serve(on_ready=self._ready.set))
            except BaseException as exc:  # surfaced by start()
                self.error = exc
                self._ready.set()

        self._thread = threading.Thread(target=main, daemon=True, name="opcua-peer")
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise RuntimeError(f"test OPC UA server failed: {self.error!r}") from self.error
        return self

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's loop (e.g. to read a written value)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


class BareServer:
    """A real OPC UA server on 127.0.0.1:`port` without security, started and stopped on the
    test's loop; a subclass sets `namespace`, adds its nodes and writes values as it needs."""

    namespace = NAMESPACE
    path = "test"

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = Server()
        self.ns = 0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/{self.path}"

    async def start(self) -> Self:
        await self.server.init()
        self.server.set_endpoint(self.endpoint)
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await self.server.register_namespace(self.namespace)
        await self.add_nodes(self.server.nodes.objects)
        await self.server.start()
        return self

    async def add_nodes(self, objects: Node) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        await self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pki", required=True)
    parser.add_argument("--security", action="append", default=[])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    peer = OpcUaPeer(args.port, Path(args.pki), tuple(args.security or ["None"]), rate_hz=args.rate, start=args.start)

    def ready() -> None:
        print("ready", flush=True)

    asyncio.run(peer.serve(on_ready=ready))


if __name__ == "__main__":
    sys.exit(main())
