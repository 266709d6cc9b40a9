"""`hmi station`: this workstation's CURVE key, and the stations enrolled on its runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers, cli_operator, load
from hmi.paths import default_project


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("station", help="enrol stations on this runtime by their public keys; show this station's key")
    stations = p.add_subparsers(dest="action", required=True)
    k = stations.add_parser("key", help="print this station's public key (made on first use), to enrol it")
    k.add_argument("--runtime", action="store_true", help="print this runtime's public key instead (server_key)")
    stations.add_parser("list", help="list the enrolled stations")
    for action, text in (("add", "enrol a station by its public key"), ("remove", "remove an enrolled station")):
        a = stations.add_parser(action, help=text)
        a.add_argument("name")
        if action == "add":
            a.add_argument("--key", required=True, help="the station's public key (Z85) or its key file")
        a.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        a.add_argument(
            "--project",
            default=str(default_project()),
            metavar="FILE",
            help="the project whose audit trail records the change (default: the demo plant)",
        )
    p.set_defaults(func=cmd_station)


def cmd_station(args: argparse.Namespace) -> int:
    from hmi.security.audit import AuditError, AuditTrail
    from hmi.security.stations import StationError, StationList, read_public_key, runtime_key_pair, station_key_pair

    try:
        if args.action == "key":
            print((runtime_key_pair() if args.runtime else station_key_pair()).public.decode("ascii"))
            return EXIT_OK
        stations = StationList()
        if args.action == "list":
            enrolled = stations.stations()
            if not enrolled:
                print(f"no stations enrolled in {stations.path}: enrol one with `hmi station add NAME --key KEY`")
            for s in enrolled:
                print(f"{s.name:<24} {s.key}  added by {s.added_by}: {s.reason}")
            return EXIT_OK
        if not args.reason.strip():
            raise StationError("--reason must say why")
        key = read_public_key(args.key) if args.action == "add" else None
        stations.stations()  # a refused allow-list (its mode) is said before anything else
        # The trail is opened before the change, so a bad --project changes nothing.
        project = load(Path(args.project))
        try:
            trail = AuditTrail(project.historian.url)
        except AuditError as exc:
            print(f"hmi station: {exc}; nothing changed", file=sys.stderr)
            return EXIT_FAILURE
        try:
            by, host = cli_operator()
            if key is not None:
                entry = stations.add(args.name, key, by, host, args.reason)
                print(f"station {args.name!r} enrolled")
            else:
                entry = stations.remove(args.name, by, host, args.reason)
                # The ZAP handler refuses its next handshake and the runtime its next command; a
                # window open on it keeps the stream it has until it reconnects.
                print(f"station {args.name!r} removed")
            try:
                trail.append([entry])
            except Exception as exc:
                print(
                    f"hmi station: the change was made and is in the change log of {stations.path}, but the audit "
                    f"trail of {args.project} cannot be written: {exc.__class__.__name__}: {exc}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
        finally:
            trail.close()
    except StationError as exc:
        print(f"hmi station: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK
