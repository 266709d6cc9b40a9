"""A bench OPC UA server: N Double variables updated at a fixed rate, in batches.

asyncua's `Server.write_attribute_value` costs a type check, a wrapper and a lookup per
value, and one server saturates a core near 15k updates/s that way. This server keeps the
address-space entries and calls the data-change hooks directly, one tick at a time, so a
process serves about twice that. Run several (sharding the tags) for more.

    python -m bench._opcua_server --port P --tags N --rate HZ

Prints "ready" when it serves; stops on SIGTERM. The leading underscore keeps bench's
runner from treating it as a benchmark; bench/sources.py starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from datetime import UTC, datetime

from asyncua import Server, ua

NAMESPACE = "urn:hmi:bench"


async def serve(port: int, tags: int, rate: float) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NAMESPACE)
    folder = await server.nodes.objects.add_folder(ua.NodeId("Bench", ns), "Bench")
    nodes = []
    for i in range(tags):
        node = await folder.add_variable(ua.NodeId(f"v{i}", ns), f"v{i}", 0.0, ua.VariantType.Double)
        nodes.append(node.nodeid)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    aspace = server.iserver.aspace
    attrs = [aspace._nodes[n].attributes[ua.AttributeIds.Value] for n in nodes]
    async with server:
        print("ready", flush=True)
        period = 1.0 / rate
        tick = 0
        next_at = time.monotonic()
        while not stop.is_set():
            tick += 1
            now = datetime.now(UTC)
            for i, attval in enumerate(attrs):
                dv = ua.DataValue(
                    ua.Variant(float(tick * 1000 + i % 1000), ua.VariantType.Double),
                    SourceTimestamp=now,
                    ServerTimestamp=now,
                )
                attval.value = dv
                for key, callback in attval.datachange_callbacks.items():
                    await callback(key, dv)
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tags", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.tags, args.rate))


if __name__ == "__main__":
    cli()
