"""`hmi audit`: check or list a historian's audit trail."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("audit", help="check or list the audit trail")
    audit = p.add_subparsers(dest="action", required=True)
    a = audit.add_parser("verify", help="check the hash chain; exits 1 if a record was edited, deleted or reordered")
    a.add_argument("--db", required=True, help="historian database file (or URL)")
    a = audit.add_parser("list", help="print the audit records")
    a.add_argument("--db", required=True, help="historian database file (or URL)")
    a.add_argument("--last", type=int, default=0, help="only the last N records")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from hmi.security.audit import AuditError, AuditTrail

    try:
        trail = AuditTrail(args.db, create=False)
    except AuditError as exc:
        print(f"hmi audit: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.action == "list":
            records = trail.records()
            for r in records[-args.last :] if args.last else records:
                when = datetime.fromtimestamp(r.ts_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                print(f"{r.seq:>6} {when}Z {r.kind:<16} {r.user:<12} {r.outcome:<8} {r.target} {r.details}")
            return EXIT_OK
        checked, problems = trail.verify()
        seq, head = trail.head()
    finally:
        trail.close()
    for problem in problems:
        print(f"{args.db}: {problem}", file=sys.stderr)
    if problems:
        print(f"{args.db}: audit trail BROKEN: {len(problems)} problem(s) in {checked} record(s)", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{args.db}: audit trail intact: {checked} record(s), head {seq} {head}")
    return EXIT_OK
