"""`hmi users`: manage the users in the data folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers, cli_operator, load, read_password


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("users", help="manage users (stored in the data folder; no default password)")
    users = p.add_subparsers(dest="action", required=True)
    u = users.add_parser("list", help="list users and their roles")
    for action, text in (
        ("add", "add a user (the first must be an admin)"),
        ("passwd", "set a user's password"),
        ("disable", "disable a user (keeps the record)"),
        ("enable", "enable a disabled user"),
        ("role", "change a user's role"),
    ):
        u = users.add_parser(action, help=text)
        u.add_argument("name")
        if action in ("add", "role"):
            u.add_argument("--role", required=True, help="viewer, operator, supervisor, engineer or admin")
        if action in ("add", "passwd"):
            u.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        u.add_argument(
            "--project",
            metavar="FILE",
            help="also record the change (and who made it: the OS user and host) in this project's audit trail",
        )
    p.set_defaults(func=cmd_users)


def cmd_users(args: argparse.Namespace) -> int:
    from hmi.security.audit import AuditError, AuditTrail
    from hmi.security.roles import Role
    from hmi.security.users import UserError, UserStore

    store = UserStore()
    by, station = cli_operator()
    trail: AuditTrail | None = None
    if getattr(args, "project", None):
        # Opened before the change, so a bad --project changes nothing.
        project = load(Path(args.project))
        try:
            trail = AuditTrail(project.historian.url)
        except AuditError as exc:
            print(f"hmi users: {exc}; nothing changed", file=sys.stderr)
            return EXIT_FAILURE
    try:
        if args.action == "list":
            users = store.users()
            if not users:
                print(f"no users yet in {store.path}: create the first admin with `hmi users add NAME --role admin`")
            for user in users:
                state = "disabled" if user.disabled else "enabled"
                print(f"{user.name:<24} {user.role.label:<9} {state}")
            return EXIT_OK
        if args.action == "add":
            role = Role.parse(args.role)
            if role != Role.ADMIN and not any(u.role == Role.ADMIN for u in store.users()):
                raise UserError("the first user must be an admin (--role admin)")
            store.add(args.name, role, read_password(args), by, station)
            print(f"user {args.name!r} added as {role.label}")
        elif args.action == "passwd":
            if store.get(args.name) is None:
                raise UserError(f"no user {args.name!r}")
            store.set_password(args.name, read_password(args, "New password: "), by, station)
            print(f"password of {args.name!r} changed")
        elif args.action in ("disable", "enable"):
            store.set_disabled(args.name, args.action == "disable", by, station)
            print(f"user {args.name!r} {args.action}d")
        elif args.action == "role":
            store.set_role(args.name, Role.parse(args.role), by, station)
            print(f"user {args.name!r} is now {args.role}")
        if trail is not None and store.last_change is not None:
            # The change is in users.json's change log already; this puts it in the project's
            # trail too (a running runtime then publishes its event without recording it twice).
            try:
                trail.append([store.last_change.audit_entry()])
            except Exception as exc:
                print(
                    f"hmi users: the change was made and is in the change log of {store.path}, but the audit "
                    f"trail of {args.project} cannot be written: {exc.__class__.__name__}: {exc}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
    except (UserError, ValueError) as exc:
        print(f"hmi users: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if trail is not None:
            trail.close()
    return EXIT_OK
