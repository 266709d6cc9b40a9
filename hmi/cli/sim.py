"""`hmi sim`: serve the demo plant over OPC UA and/or MQTT."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers, log_to_file, stop_on_signals


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sim",
        help="serve the demo plant over OPC UA and/or MQTT",
        description="Serve the demo plant (docs/demo-plant.md). Passwords come from HMI_SIM_PASSWORD and "
        "HMI_SIM_MQTT_PASSWORD or from files, never from the command line.",
    )
    p.add_argument("--machines", help="comma-separated machine ids (default: all five)")
    p.add_argument("--list", action="store_true", help="print every machine's signals and faults, then exit")
    p.add_argument("--rate", type=float, default=10.0, help="ticks (updates) per second (default 10)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same values")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="MACHINE.FAULT@TIME",
        help="schedule a fault in simulated time: pump01.bearing_wear@300s, pump01.cavitation@1m..2m (cleared at "
        "2 min), --fault=-pump01.cavitation@5m (clear only); repeatable",
    )
    p.add_argument("--duration", type=float, help="stop after S wall-clock seconds")
    p.add_argument("--scale-tags", type=int, default=0, metavar="N", help="add N synthetic tags (OPC UA load tests)")
    g = p.add_argument_group("OPC UA")
    g.add_argument("--opcua-port", type=int, default=48400, help="OPC UA port (default 48400; 0: off)")
    g.add_argument("--host", default="127.0.0.1", help="address to serve OPC UA on (default 127.0.0.1)")
    g.add_argument(
        "--security",
        choices=("both", "none", "encrypt"),
        default="both",
        help="endpoints: None and Basic256Sha256 SignAndEncrypt (both, default), or one of them",
    )
    g.add_argument("--pki", metavar="DIR", help="certificate folder (default: <data dir>/sim-pki)")
    g.add_argument("--user", help="require this user name (password: HMI_SIM_PASSWORD or --password-file)")
    g.add_argument("--password-file", metavar="FILE", help="file whose first line is the OPC UA password")
    g.add_argument("--unbatched", action="store_true", help="use asyncua's one-by-one write path (benchmarks)")
    g = p.add_argument_group("MQTT")
    g.add_argument("--mqtt-host", help="broker host (MQTT is off without it)")
    g.add_argument("--mqtt-port", type=int, help="broker port (default 1883, or 8883 with TLS)")
    g.add_argument("--mqtt-tls", action="store_true", help="connect with TLS")
    g.add_argument("--mqtt-ca", metavar="PEM", help="CA certificate(s) to trust for the broker (implies TLS)")
    g.add_argument("--mqtt-cert", metavar="PEM", help="client certificate (implies TLS; needs --mqtt-key)")
    g.add_argument("--mqtt-key", metavar="PEM", help="client private key")
    g.add_argument("--mqtt-tls-insecure", action="store_true", help="do not check the broker's host name")
    g.add_argument("--mqtt-user", help="user name (password: HMI_SIM_MQTT_PASSWORD or --mqtt-password-file)")
    g.add_argument("--mqtt-password-file", metavar="FILE", help="file whose first line is the MQTT password")
    g.add_argument("--mqtt-root", default="factory", help="topic root (default: factory)")
    p.set_defaults(func=cmd_sim)


def cmd_sim(args: argparse.Namespace) -> int:
    from hmi.sim.plant import Plant, catalogue, parse_fault

    if args.list:
        print(catalogue())
        return EXIT_OK
    try:
        machines = [m for m in args.machines.split(",") if m] if args.machines is not None else None
        faults = [item for text in args.fault for item in parse_fault(text)]
        plant = Plant(machines, seed=args.seed, faults=faults, scale_tags=args.scale_tags)
        if not plant.machines:
            raise ValueError("no machines to simulate (--machines is empty and there are no --scale-tags)")
        if args.rate <= 0 or args.speed <= 0:
            raise ValueError("--rate and --speed must be positive")
        opcua, mqtt = _sim_servers(args, plant)
    except ValueError as exc:
        print(f"hmi sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if opcua is None and mqtt is None:
        print("hmi sim: nothing to serve (--opcua-port 0 and no --mqtt-host)", file=sys.stderr)
        return EXIT_CONFIG

    log_to_file("plant")
    from hmi.sim.runner import PlantRunner

    runner = PlantRunner(plant, args.rate, args.speed, opcua=opcua, mqtt=mqtt, freeze_gc=True)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await runner.run(stop, args.duration)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"hmi sim: cannot serve on port {args.opcua_port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _sim_servers(args: argparse.Namespace, plant: Any) -> tuple[Any, Any]:
    """The OPC UA server and MQTT publisher `hmi sim` was asked for (None when off)."""
    opcua = mqtt = None
    if args.opcua_port:
        from hmi.sim.opcua_server import OpcUaSecurity, PlantOpcUaServer

        password = _secret("HMI_SIM_PASSWORD", args.password_file, "OPC UA") if args.user else None
        if args.user and not password:
            raise ValueError(f"--user {args.user} needs a password: set HMI_SIM_PASSWORD or give --password-file")
        security = OpcUaSecurity(
            policies=args.security, pki_dir=Path(args.pki) if args.pki else None, user=args.user, password=password
        )
        opcua = PlantOpcUaServer(plant, args.host, args.opcua_port, security, batched=not args.unbatched)
    if args.mqtt_host:
        from hmi.sim.mqtt_publisher import MqttOptions, PlantMqttPublisher

        tls = args.mqtt_tls or bool(args.mqtt_ca or args.mqtt_cert)
        options = MqttOptions(
            host=args.mqtt_host,
            port=args.mqtt_port or (8883 if tls else 1883),
            tls=tls,
            ca_file=Path(args.mqtt_ca) if args.mqtt_ca else None,
            cert_file=Path(args.mqtt_cert) if args.mqtt_cert else None,
            key_file=Path(args.mqtt_key) if args.mqtt_key else None,
            tls_insecure=args.mqtt_tls_insecure,
            username=args.mqtt_user,
            password=_secret("HMI_SIM_MQTT_PASSWORD", args.mqtt_password_file, "MQTT") if args.mqtt_user else None,
            topic_root=args.mqtt_root,
        )
        mqtt = PlantMqttPublisher(plant, options)
    return opcua, mqtt


def _secret(env: str, file: str | None, what: str) -> str | None:
    """A password from a file (first line) or an environment variable, never the command line."""
    if file:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read the {what} password file: {exc}") from None
        return lines[0].strip() if lines else ""
    return os.environ.get(env)
