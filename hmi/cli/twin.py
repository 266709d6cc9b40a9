"""`hmi twin fit`: fit a pump's curve from a recorded healthy period."""

from __future__ import annotations

import argparse
import sys

from hmi.cli.common import EXIT_CONFIG, EXIT_OK, Subparsers, add_range_args, open_recording


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("twin", help="digital-twin tools: fit a pump curve from recorded data")
    twin = p.add_subparsers(dest="action", required=True)
    t = twin.add_parser("fit", help="fit [twin.MACHINE.curve] from a healthy period in the historian; prints TOML")
    add_range_args(t)
    t.add_argument("--machine", required=True, help="the pump's machine id, e.g. pump01")
    t.add_argument("--rated-speed", type=float, metavar="RPM", help="without --project: the rated speed")
    t.add_argument("--magnetising-current", type=float, metavar="A", help="no-load current (motor data sheet)")
    p.set_defaults(func=cmd_twin)


def cmd_twin(args: argparse.Namespace) -> int:
    """`hmi twin fit`: fit a pump's curve from a recorded healthy period, print the config block."""
    from hmi.config.twin import CentrifugalPumpConfig
    from hmi.twin.fit import FitError, fit_pump

    reader, time_range, project = open_recording(args)
    config = project.twin.get(args.machine) if project is not None else None
    if config is not None and not isinstance(config, CentrifugalPumpConfig):
        reader.close()
        print(f"hmi twin fit: [twin.{args.machine}] is a {config.kind_name} model, not a pump", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = fit_pump(
            reader,
            args.machine,
            time_range.start_ns,
            time_range.end_ns,
            config,
            rated_speed_rpm=args.rated_speed,
            magnetising_a=args.magnetising_current,
        )
    except FitError as exc:
        print(f"hmi twin fit: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        reader.close()
    print(result.report(), file=sys.stderr)
    print(result.toml())
    return EXIT_OK
