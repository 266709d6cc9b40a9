"""Runtime -> window channel: throughput (samples/s) and latency (p50/p99), with the
runtime side in its own process as in the product, beside bare ZeroMQ PUB/SUB carrying the
same frames in the same run (the ceiling), and the same channel over CURVE (what a station
on another host gets: encrypted, the station authenticated by the ZAP handler)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import numpy as np
import zmq

from bench.common import fmt_rate, percentiles_ms, print_table
from hmi.core.bus import TagBus
from hmi.core.samples import SampleBatch, now_ns
from hmi.core.tags import TagRegistry, TagSpec
from hmi.ipc import messages as m
from hmi.ipc.client import IpcClient, NullListener
from hmi.ipc.curve import CurveClient, CurveServer
from hmi.ipc.publisher import IpcPublisher
from hmi.supervisor import free_tcp_port

TAGS = 200
THROUGHPUT_BATCH = 1000
THROUGHPUT_SECONDS = 3.0
LATENCY_BATCH = 10
LATENCY_RATE_HZ = 1000
LATENCY_MESSAGES = 3000
SETTLE_S = 1.5


def _batch(size: int, i: int, ts: int | None = None) -> SampleBatch:
    ids = (np.arange(size) % TAGS).astype(np.int32)
    t = now_ns() if ts is None else ts
    return SampleBatch.from_arrays(ids, np.full(size, t), np.full(size, float(i)), 0)


# -- the sending side, run as a child process ---------------------------------------------------


def peer(args: argparse.Namespace) -> None:
    batches = [_batch(THROUGHPUT_BATCH, i) for i in range(64)]
    if args.impl in ("hmi", "curve"):
        bus = TagBus(TagRegistry(TagSpec(f"m.t{i}") for i in range(TAGS)))
        curve = None
        if args.impl == "curve":
            station = {args.client_key: "bench"}
            curve = CurveServer(args.server_public.encode(), args.server_secret.encode(), lambda: station)
        publisher = IpcPublisher(bus, args.stream, args.requests, curve=curve)
        publisher.start()
        send = bus.publish
    else:
        ctx = zmq.Context.instance()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, 20_000)
        pub.bind(args.stream)
        header = m.pack_header(m.Header(1, 1, 1, THROUGHPUT_BATCH))

        def send(batch: SampleBatch) -> None:
            pub.send_multipart([m.KIND_BATCH, header, *m.batch_frames(batch)], copy=False)

    time.sleep(SETTLE_S)
    if args.mode == "throughput":
        end = time.perf_counter() + THROUGHPUT_SECONDS
        i = 0
        while time.perf_counter() < end:
            send(batches[i % 64])
            i += 1
            if i % 64 == 0:
                time.sleep(0)  # let the sender thread run
    else:
        period = 1.0 / LATENCY_RATE_HZ
        next_t = time.perf_counter()
        for i in range(LATENCY_MESSAGES):
            send(_batch(LATENCY_BATCH, i))
            next_t += period
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    time.sleep(1.0)


# -- the receiving side ------------------------------------------------------------------------------


class Receiver(NullListener):
    def __init__(self) -> None:
        self.samples = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[int] = []
        self.lost = 0

    def on_batch(self, batch: SampleBatch) -> None:
        now = time.perf_counter()
        arrival = now_ns()
        if not self.samples:
            self.first = now
        self.samples += len(batch)
        self.last = now
        # One latency per original batch: merged messages carry several send times.
        for ts in np.unique(batch.ts_ns):
            self.latencies.append(arrival - int(ts))


def _raw_receive(stream: str, receiver: Receiver, stop: threading.Event) -> None:
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(stream)
    while not stop.is_set():
        if sub.poll(50):
            frames = sub.recv_multipart(copy=False)
            receiver.on_batch(m.batch_from_frames(frames[2:]))
    sub.close(0)


def run(impl: str, mode: str) -> Receiver:
    host = "127.0.0.1"
    stream, requests = f"tcp://{host}:{free_tcp_port()}", f"tcp://{host}:{free_tcp_port()}"
    receiver = Receiver()
    stop = threading.Event()
    keys: list[str] = []
    if impl in ("hmi", "curve"):
        curve = None
        if impl == "curve":
            server_public, server_secret = zmq.curve_keypair()
            public, secret = zmq.curve_keypair()
            curve = CurveClient(server_public, public, secret)
            keys = ["--server-public", server_public.decode(), "--server-secret", server_secret.decode(),
                    "--client-key", public.decode()]  # fmt: skip
        client = IpcClient(stream, requests, receiver, curve=curve)
        client.start()
    else:
        thread = threading.Thread(target=_raw_receive, args=(stream, receiver, stop))
        thread.start()
    child = subprocess.run(
        [sys.executable, "-m", "bench.ipc", "--peer", "--impl", impl, "--mode", mode, "--stream", stream,
         "--requests", requests, *keys],
        check=True,
    )  # fmt: skip
    del child
    if impl in ("hmi", "curve"):
        receiver.lost = client.stats.gaps
        client.stop()
    else:
        stop.set()
        thread.join()
    return receiver


def main() -> dict[str, float]:
    results = {}
    rows = []
    paths = (
        ("hmi", "IpcPublisher -> IpcClient"),
        ("curve", "the same over CURVE (ZAP-authenticated)"),
        ("raw", "bare ZeroMQ PUB/SUB (ceiling)"),
    )
    for impl, label in paths:
        r = run(impl, "throughput")
        rate = r.samples / max(r.last - r.first, 1e-9)
        lat = run(impl, "latency")
        p50, p99, worst = percentiles_ms(lat.latencies)
        results[impl] = rate
        results[f"{impl}_p99_ms"] = p99
        lost = str(r.lost) if impl != "raw" else "n/a"
        rows.append((label, fmt_rate(rate), lost, f"{p50:.3f}", f"{p99:.3f}", f"{worst:.2f}"))
    rows[0] = (*rows[0], f"{results['hmi'] / results['raw']:.2f}", "1.00")
    rows[1] = (*rows[1], f"{results['curve'] / results['raw']:.2f}", f"{results['curve'] / results['hmi']:.2f}")
    rows[2] = (*rows[2], "1.00", "")
    print_table(
        f"Runtime -> window channel: throughput in batches of {THROUGHPUT_BATCH}; latency of {LATENCY_BATCH}-sample "
        f"batches at {LATENCY_RATE_HZ}/s (runtime side in a child process)",
        rows,
        ("path", "samples/s", "messages lost", "p50 ms", "p99 ms", "max ms", "ratio", "to plain"),
    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", action="store_true")
    parser.add_argument("--impl", choices=["hmi", "curve", "raw"])
    parser.add_argument("--mode", choices=["throughput", "latency"])
    parser.add_argument("--stream")
    parser.add_argument("--requests")
    parser.add_argument("--server-public")
    parser.add_argument("--server-secret")
    parser.add_argument("--client-key")
    args = parser.parse_args()
    if args.peer:
        peer(args)
    else:
        main()
