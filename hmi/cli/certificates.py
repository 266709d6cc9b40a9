"""`hmi trust` (the server certificates this client trusts) and `hmi cert` (its own)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from hmi.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Subparsers


def add_arguments(sub: Subparsers) -> None:
    p = sub.add_parser("trust", help="trust an OPC UA server certificate (see the rejected list with --list)")
    p.add_argument("certificate", nargs="?", help="SHA-1 thumbprint of a rejected certificate, or a certificate file")
    p.add_argument("--list", action="store_true", help="list trusted and rejected certificates")
    p.add_argument(
        "--remove", metavar="THUMBPRINT|NAME", help="stop trusting a server certificate (moved back to rejected)"
    )
    p.set_defaults(func=cmd_trust)

    p = sub.add_parser("cert", help="show or export this client's OPC UA certificate (for the server to trust)")
    cert = p.add_subparsers(dest="action", required=True)
    c = cert.add_parser("show", help="subject, ApplicationUri, validity and thumbprints")
    c.add_argument("--application-uri", help="for a certificate made now (default urn:<host>:hmi:client)")
    c.set_defaults(func=cmd_cert)
    c = cert.add_parser("export", help="write the certificate to FILE: DER (.der .cer .crt) or PEM (.pem)")
    c.add_argument("file", help="where to write it")
    c.add_argument("--application-uri", help="for a certificate made now (default urn:<host>:hmi:client)")
    c.set_defaults(func=cmd_cert)


def cmd_trust(args: argparse.Namespace) -> int:
    from hmi.sources.pki import Pki

    pki = Pki()
    if args.remove:
        try:
            removed = pki.untrust(args.remove)
        except ValueError as exc:
            print(f"hmi trust: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        for info in removed:
            print(f"no longer trusted: {info.thumbprint} ({info.subject}), moved to {info.path}")
        return EXIT_OK
    if args.list or not args.certificate:
        entries = pki.list()
        if not entries:
            print(f"no certificates in {pki.trusted_dir} or {pki.rejected_dir}")
        for e in entries:
            print(f"{e.state:<8}  {e.thumbprint}  valid until {e.not_after:%Y-%m-%d}  {e.subject}")
        return EXIT_OK
    try:
        info = pki.trust(args.certificate)
    except ValueError as exc:
        print(f"hmi trust: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"trusted {info.thumbprint} ({info.subject}): {info.path}")
    return EXIT_OK


def cmd_cert(args: argparse.Namespace) -> int:
    """Show or export the client's own OPC UA certificate (made now if there is none yet), the
    one a server must trust."""
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    from hmi.sources.pki import Pki, application_uris, default_application_uri, thumbprint

    pki = Pki()
    encoding = None
    if args.action == "export":
        encoding = {".pem": Encoding.PEM, ".der": Encoding.DER, ".cer": Encoding.DER, ".crt": Encoding.DER}.get(
            Path(args.file).suffix.lower()
        )
        if encoding is None:
            print(f"hmi cert: {args.file}: give a file ending in .der, .cer, .crt (DER) or .pem (PEM)", file=sys.stderr)
            return EXIT_CONFIG
    try:
        if not pki.own_cert.exists():
            uri = args.application_uri or default_application_uri()
            asyncio.run(pki.ensure_client_certificate(uri))
            print(f"created the client certificate for {uri}", file=sys.stderr)
        cert = pki.own_certificate()
        if encoding is not None:
            Path(args.file).write_bytes(cert.public_bytes(encoding))
    except (OSError, ValueError) as exc:
        print(f"hmi cert: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    der = cert.public_bytes(Encoding.DER)
    if encoding is not None:
        print(f"wrote the client certificate ({thumbprint(der)}) to {args.file}")
        return EXIT_OK
    not_after = cert.not_valid_after_utc
    state = " (expired)" if not_after < datetime.now(UTC) else ""
    print(f"file            {pki.own_cert}")
    print(f"subject         {cert.subject.rfc4514_string()}")
    print(f"ApplicationUri  {', '.join(application_uris(cert)) or '(none)'}")
    print(f"valid           {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {not_after:%Y-%m-%d %H:%M} UTC{state}")
    print(f"SHA-256         {hashlib.sha256(der).hexdigest().upper()}")
    print(f"SHA-1           {thumbprint(der)} (the thumbprint OPC UA servers show)")
    return EXIT_OK
