"""The client's OPC UA certificates and trust list, in the usual OPC UA folder layout.

    <data folder>/pki/
        own/certs/hmi-client.der      the client's application instance certificate
        own/private/hmi-client.pem    its private key (owner-only)
        trusted/certs/                server certificates, and CA certificates, this client trusts
        trusted/crl/                  the revocation lists of the trusted CAs
        issuers/certs/                CA certificates that complete a chain but are not trusted by themselves
        issuers/crl/                  their revocation lists
        rejected/certs/               server certificates it refused, to review and trust

A server certificate is validated as OPC UA Part 4 (6.1.3, Table 106) asks before a secure
channel is opened with it (`check_server`): its signature algorithm and key size, its validity
period, the host name of the endpoint URL and the server's ApplicationUri against its
subjectAltName, its key usage; then trust: a certificate whose SHA-1 thumbprint is in
trusted/certs is trusted (the way self-signed certificates are trusted), and a CA-signed one
also when its chain ends at a CA in trusted/certs. For a CA-signed certificate every CA of the
chain must have a CRL (trusted/crl or issuers/crl): revoked -> refused, no CRL -> refused as
"revocation unknown" (Part 4 lets a client suppress that; we do not, see docs/project-file.md).
The chain itself is built and verified by `cryptography.x509.verification`.

An unknown certificate is refused and copied to rejected/certs, where `hmi trust THUMBPRINT`
moves it to trusted/certs; `hmi trust --remove` moves a trusted one back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import logging
import os
import re
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from hmi.paths import data_dir

log = logging.getLogger(__name__)

CLIENT_NAME = "hmi-client"
_CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")
_CRL_SUFFIXES = (".crl", ".der", ".pem")
MIN_RSA_BITS = 2048  # the smallest key the RSA security policies allow (Part 7)


class CertificateRefused(Exception):
    """The server presented a certificate this client refuses; `code` is the OPC UA status name
    Part 4 gives the reason (BadCertificateTimeInvalid, BadCertificateRevoked, ...)."""

    def __init__(self, message: str, thumbprint: str, path: Path | None, code: str = "BadCertificateInvalid") -> None:
        super().__init__(message)
        self.thumbprint = thumbprint
        self.path = path
        self.code = code


class UntrustedCertificate(CertificateRefused):
    """The server presented a certificate that is not in the trust list (nor issued by a trusted CA)."""

    def __init__(self, message: str, thumbprint: str, path: Path | None) -> None:
        super().__init__(message, thumbprint, path, "BadCertificateUntrusted")


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    state: str  # "trusted" or "rejected"
    thumbprint: str  # SHA-1 of the DER encoding, upper-case hex
    subject: str
    not_after: datetime
    path: Path


def thumbprint(der: bytes) -> str:
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def _load(path: Path) -> x509.Certificate | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        return None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def default_application_uri() -> str:
    return f"urn:{socket.gethostname()}:hmi:client"


class Pki:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else data_dir() / "pki"

    @property
    def own_cert(self) -> Path:
        return self.root / "own" / "certs" / f"{CLIENT_NAME}.der"

    @property
    def own_key(self) -> Path:
        return self.root / "own" / "private" / f"{CLIENT_NAME}.pem"

    @property
    def trusted_dir(self) -> Path:
        return self.root / "trusted" / "certs"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected" / "certs"

    @property
    def trusted_crl_dir(self) -> Path:
        return self.root / "trusted" / "crl"

    @property
    def issuers_dir(self) -> Path:
        return self.root / "issuers" / "certs"

    @property
    def issuers_crl_dir(self) -> Path:
        return self.root / "issuers" / "crl"

    def ensure_folders(self) -> None:
        for folder in (
            self.own_cert.parent,
            self.trusted_dir,
            self.trusted_crl_dir,
            self.issuers_dir,
            self.issuers_crl_dir,
            self.rejected_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self.own_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.own_key.parent, 0o700)

    async def ensure_client_certificate(self, application_uri: str) -> tuple[Path, Path]:
        """The client's certificate and key, generated on first use (or when expired/mismatched)."""
        from asyncua.crypto import cert_gen
        from cryptography.x509.oid import ExtendedKeyUsageOID

        self.ensure_folders()
        before = self.own_cert.read_bytes() if self.own_cert.exists() else None
        await cert_gen.setup_self_signed_certificate(
            self.own_key,
            self.own_cert,
            application_uri,
            socket.gethostname(),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            {"organizationName": "HMI", "commonName": "HMI client"},
        )
        os.chmod(self.own_key, 0o600)  # asyncua writes it with the process umask
        after = self.own_cert.read_bytes()
        if before != after:
            log.info(
                "created the client certificate %s (thumbprint %s) for %s",
                self.own_cert,
                thumbprint(after),
                application_uri,
            )
        return self.own_cert, self.own_key

    # -- trust list ---------------------------------------------------------------------

    def _certs_in(self, folder: Path) -> list[tuple[Path, x509.Certificate]]:
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in _CERT_SUFFIXES:
                cert = _load(path)
                if cert is not None:
                    out.append((path, cert))
        return out

    def is_trusted(self, der: bytes) -> bool:
        wanted = thumbprint(der)
        return any(thumbprint(_der(cert)) == wanted for _, cert in self._certs_in(self.trusted_dir))

    def check_server(
        self,
        der: bytes,
        server: str,
        application_uri: str | None = None,
        host: str | None = None,
        chain: Sequence[bytes] = (),
        now: datetime | None = None,
        resolve: Callable[[str], set[str]] | None = None,
    ) -> None:
        """Raise CertificateRefused unless the server certificate `der` passes Part 4's checks.

        `application_uri` is the server's ApplicationDescription.ApplicationUri from the endpoint,
        `host` the host of the endpoint URL we connect to, `chain` the further certificates the
        server sent with its own. An untrusted certificate is copied to rejected/ (to review and
        trust); a defective one is refused whatever the trust list says. Blocking (reads the PKI
        folders, may resolve host names): call it off the event loop.
        """
        thumb = thumbprint(der)
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise CertificateRefused(
                f"the certificate of server {server} cannot be read ({exc}); SHA-1 thumbprint {thumb}",
                thumb,
                None,
                "BadCertificateInvalid",
            ) from None
        now = now or datetime.now(UTC)
        pinned = self.is_trusted(der)
        subject = cert.subject.rfc4514_string()
        defects = _defects(cert, application_uri, host, now, resolve or _addresses)
        chain_error = ""
        if not defects and not _self_signed(cert):
            trusted, defects, chain_error = self._check_chain(cert, pinned, chain, now)
            pinned = pinned or trusted
        if defects:
            code = defects[0][0]
            path = None if pinned else self.reject(der)
            raise CertificateRefused(
                f"the certificate of server {server} is refused ({code}): "
                + "; ".join(text for _, text in defects)
                + f" (SHA-1 thumbprint {thumb}, subject {subject}"
                + (f"; saved to {path}" if path else "")
                + ")",
                thumb,
                path,
                code,
            )
        if pinned:
            return
        path = self.reject(der)
        raise UntrustedCertificate(
            f"the certificate of server {server} is not trusted (SHA-1 thumbprint {thumb}, subject {subject}); "
            + (f"; no chain to a trusted CA ({chain_error})" if chain_error else "")
            + f"; it was saved to {path}: run `hmi trust {thumb}` to trust it"
            + (
                ""
                if _self_signed(cert)
                else f", or put the certificate of its CA ({cert.issuer.rfc4514_string()}) "
                f"in {self.trusted_dir} and its CRL in {self.trusted_crl_dir}"
            ),
            thumb,
            path,
        )

    def _check_chain(
        self, cert: x509.Certificate, pinned: bool, sent: Sequence[bytes], now: datetime
    ) -> tuple[bool, list[tuple[str, str]], str]:
        """(issued by a trusted CA, defects, why no chain to a trusted CA) of a CA-signed
        certificate: its chain and revocation."""
        anchors = [c for _, c in self._certs_in(self.trusted_dir) if _is_ca(c)]
        issuers = [c for _, c in self._certs_in(self.issuers_dir) if _is_ca(c)]
        for extra in sent:
            try:
                issuers.append(x509.load_der_x509_certificate(extra))
            except ValueError:
                log.debug("ignored an unreadable certificate in the server's chain")
        trusted = False
        path: list[x509.Certificate] | None = None
        error = ""
        if anchors:
            try:
                path = _verifier(anchors, now).verify(cert, issuers).chain
                trusted = True
            except verification.VerificationError as exc:
                error = str(exc)
        if path is None and pinned:
            # The certificate itself is trusted, but its CAs' CRLs still decide whether it was
            # revoked (Part 4: the chain must be complete whatever is trusted).
            try:
                path = _verifier(anchors + issuers, now).verify(cert, issuers).chain
            except verification.VerificationError as exc:
                error = str(exc)
        if path is None:
            if not pinned:
                return False, [], error  # untrusted: reported as such, with the way to trust it
            return (
                False,
                [
                    (
                        "BadCertificateChainIncomplete",
                        f"its issuer {cert.issuer.rfc4514_string()} is not in {self.issuers_dir} or "
                        f"{self.trusted_dir}, or the chain does not verify ({error})",
                    )
                ],
                error,
            )
        for child, ca in itertools.pairwise(path):
            crl = self._crl_of(ca)
            name = ca.subject.rfc4514_string()
            if crl is None:
                return (
                    trusted,
                    [
                        (
                            "BadCertificateRevocationUnknown",
                            f"revocation unknown: CA {name} has no valid CRL in {self.trusted_crl_dir} or "
                            f"{self.issuers_crl_dir} (add the CA's current CRL, even an empty one)",
                        )
                    ],
                    "",
                )
            revoked = crl.get_revoked_certificate_by_serial_number(child.serial_number)
            if revoked is not None:
                what = "it was" if child == cert else f"its CA {child.subject.rfc4514_string()} was"
                return (
                    trusted,
                    [
                        (
                            "BadCertificateRevoked" if child == cert else "BadCertificateIssuerRevoked",
                            f"{what} revoked by CA {name} on {_utc(revoked.revocation_date_utc):%Y-%m-%d %H:%M} UTC",
                        )
                    ],
                    "",
                )
        return trusted, [], ""

    def _crl_of(self, ca: x509.Certificate) -> x509.CertificateRevocationList | None:
        """The newest CRL issued and signed by `ca`, from trusted/crl or issuers/crl."""
        found: x509.CertificateRevocationList | None = None
        for folder in (self.trusted_crl_dir, self.issuers_crl_dir):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in _CRL_SUFFIXES:
                    continue
                crl = _load_crl(path)
                if crl is None or crl.issuer != ca.subject:
                    continue
                try:
                    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
                        log.warning("ignored %s: its signature does not verify with %s's key", path, ca.subject)
                        continue
                except (TypeError, ValueError):
                    continue
                if found is None or crl.last_update_utc > found.last_update_utc:
                    found = crl
        return found

    def reject(self, der: bytes) -> Path:
        self.ensure_folders()
        path = self.rejected_dir / f"{_safe_name(der)} [{thumbprint(der)}].der"
        if not path.exists():
            path.write_bytes(der)
        return path

    def trust(self, what: str) -> CertificateInfo:
        """Trust a rejected certificate by thumbprint, or any certificate file by path."""
        self.ensure_folders()
        source = Path(what)
        if source.is_file():
            cert = _load(source)
            if cert is None:
                raise ValueError(f"{source} is not a certificate (DER or PEM)")
            from_rejected = source.resolve().parent == self.rejected_dir.resolve()
        else:
            wanted = what.replace(":", "").replace(" ", "").upper()
            if not re.fullmatch(r"[0-9A-F]{40}", wanted):
                raise ValueError(f"{what!r} is neither a certificate file nor a SHA-1 thumbprint (40 hex digits)")
            matches = [(p, c) for p, c in self._certs_in(self.rejected_dir) if thumbprint(_der(c)) == wanted]
            if not matches:
                raise ValueError(f"no rejected certificate has thumbprint {wanted} (see `hmi trust --list`)")
            source, cert = matches[0]
            from_rejected = True
        der = _der(cert)
        target = self.trusted_dir / f"{_safe_name(der)} [{thumbprint(der)}].der"
        target.write_bytes(der)
        if from_rejected:
            source.unlink(missing_ok=True)
        log.info("trusted certificate %s (%s)", thumbprint(der), target)
        return _info("trusted", target, cert)

    def untrust(self, what: str) -> list[CertificateInfo]:
        """Move trusted certificates back to rejected/, chosen by SHA-1 thumbprint, file name or
        common name. Raises ValueError when nothing, or a name shared by several, matches."""
        wanted = what.replace(":", "").replace(" ", "").upper()
        entries = self._certs_in(self.trusted_dir)
        if re.fullmatch(r"[0-9A-F]{40}", wanted):
            matches = [(p, c) for p, c in entries if thumbprint(_der(c)) == wanted]
        else:
            name = what.strip().lower()
            matches = [(p, c) for p, c in entries if name in (p.name.lower(), p.stem.lower(), _common_name(c).lower())]
            if len(matches) > 1:
                listed = ", ".join(f"{thumbprint(_der(c))} ({p.name})" for p, c in matches)
                raise ValueError(f"{len(matches)} trusted certificates are named {what!r}: {listed}; give a thumbprint")
        if not matches:
            raise ValueError(f"no trusted certificate has thumbprint or name {what!r} (see `hmi trust --list`)")
        self.ensure_folders()
        removed = []
        for path, cert in matches:
            target = self.rejected_dir / path.name
            shutil.move(str(path), str(target))
            log.info("removed certificate %s from the trust list (now %s)", thumbprint(_der(cert)), target)
            removed.append(_info("rejected", target, cert))
        return removed

    def own_certificate(self) -> x509.Certificate:
        """The client's own certificate; FileNotFoundError (naming the path) before its first use."""
        if not self.own_cert.exists():
            raise FileNotFoundError(f"there is no client certificate yet ({self.own_cert})")
        cert = _load(self.own_cert)
        if cert is None:
            raise ValueError(f"{self.own_cert} is not a certificate (DER or PEM)")
        return cert

    def list(self) -> list[CertificateInfo]:
        return [_info("trusted", p, c) for p, c in self._certs_in(self.trusted_dir)] + [
            _info("rejected", p, c) for p, c in self._certs_in(self.rejected_dir)
        ]


def _info(state: str, path: Path, cert: x509.Certificate) -> CertificateInfo:
    not_after = cert.not_valid_after_utc if hasattr(cert, "not_valid_after_utc") else cert.not_valid_after
    if not_after.tzinfo is None:
        not_after = not_after.replace(tzinfo=UTC)
    return CertificateInfo(state, thumbprint(_der(cert)), cert.subject.rfc4514_string(), not_after, path)


def _safe_name(der: bytes) -> str:
    """A file name from the certificate's common name, safe on every file system."""
    name = "server"
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if names:
            name = str(names[0].value)
    except ValueError:
        pass
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "server"


# -- Part 4's checks ---------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def application_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, an unsupported key type: not self-signed as far as we can tell
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _verifier(anchors: list[x509.Certificate], now: datetime) -> verification.ClientVerifier:
    """Chain building and signature checks by cryptography. Its web PKI profile already refuses
    SHA-1 and RSA keys below 2048 bits anywhere in the chain; the extension rules are relaxed
    to OPC UA's (a CA needs basicConstraints CA; the leaf's extensions are checked by _defects,
    and OPC UA self-signed certificates carry CA=true)."""
    policy = verification.PolicyBuilder().extension_policies(
        ca_policy=verification.ExtensionPolicy.permit_all().require_present(
            x509.BasicConstraints, verification.Criticality.AGNOSTIC, _require_ca
        ),
        ee_policy=verification.ExtensionPolicy.permit_all(),
    )
    return policy.store(verification.Store(anchors)).time(now).build_client_verifier()


def _require_ca(_policy: object, _cert: x509.Certificate, ext: x509.BasicConstraints | None) -> None:
    if ext is None or not ext.ca:
        raise ValueError("a CA certificate must have basicConstraints CA=true")


def _load_crl(path: Path) -> x509.CertificateRevocationList | None:
    try:
        data = path.read_bytes()
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (OSError, ValueError):
        return None


def _addresses(name: str) -> set[str]:
    """The IP addresses a host name resolves to (empty when it does not)."""
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except (OSError, UnicodeError):
        return set()


def _host_matches(cert: x509.Certificate, host: str, resolve: Callable[[str], set[str]]) -> tuple[bool, list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False, []
    dns = [d.lower().rstrip(".") for d in san.get_values_for_type(x509.DNSName)]
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    names = dns + sorted(ips)
    host = host.strip("[]").lower().rstrip(".")
    try:
        host_ip: str | None = str(ipaddress.ip_address(host))
    except ValueError:
        host_ip = None
    if host in dns or host_ip in ips:
        return True, names
    # The certificate may name the machine (plc1.plant, localhost) and the URL its address, or
    # the reverse: the same machine if the addresses meet.
    wanted = {host_ip} if host_ip else resolve(host)
    if wanted & ips or any(wanted & resolve(d) for d in dns):
        return True, names
    return False, names


def _defects(
    cert: x509.Certificate,
    application_uri: str | None,
    host: str | None,
    now: datetime,
    resolve: Callable[[str], set[str]],
) -> list[tuple[str, str]]:
    """What is wrong with the certificate itself, as (status name, reason): Table 106's security
    policy, validity period, host name, URI and certificate usage steps."""
    out: list[tuple[str, str]] = []
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # UnsupportedAlgorithm: nothing a security policy allows
        algorithm = None
    if isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        name = algorithm.name.upper().replace("SHA1", "SHA-1")
        out.append(("BadCertificatePolicyCheckFailed", f"it has a {name} signature, which is refused"))
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        out.append(
            (
                "BadCertificatePolicyCheckFailed",
                f"its RSA key has {key.key_size} bits, fewer than the {MIN_RSA_BITS} the security policies require",
            )
        )
    not_before, not_after = _utc(cert.not_valid_before_utc), _utc(cert.not_valid_after_utc)
    if now > not_after:
        out.append(("BadCertificateTimeInvalid", f"it expired on {not_after:%Y-%m-%d %H:%M} UTC"))
    elif now < not_before:
        out.append(("BadCertificateTimeInvalid", f"it is not valid before {not_before:%Y-%m-%d %H:%M} UTC"))
    if host:
        ok, names = _host_matches(cert, host, resolve)
        if not ok:
            out.append(
                (
                    "BadCertificateHostNameInvalid",
                    f"it is for host {', '.join(names) or '(none)'}, not {host} (the host of the endpoint URL)",
                )
            )
    if application_uri is not None:
        uris = application_uris(cert)
        if application_uri not in uris:
            out.append(
                (
                    "BadCertificateUriInvalid",
                    f"its ApplicationUri {', '.join(uris) or '(none)'} does not match {application_uri} "
                    "(the server's ApplicationUri in its endpoint)",
                )
            )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        out.append(("BadCertificateUseNotAllowed", "it has no keyUsage extension"))
    else:
        missing = [] if usage.digital_signature else ["digitalSignature"]
        if not (usage.key_encipherment or usage.data_encipherment):
            missing.append("keyEncipherment or dataEncipherment")
        if missing:
            out.append(("BadCertificateUseNotAllowed", f"its keyUsage lacks {' and '.join(missing)}"))
    try:
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        if ExtendedKeyUsageOID.SERVER_AUTH not in extended:
            out.append(("BadCertificateUseNotAllowed", "its extendedKeyUsage does not include serverAuth"))
    return out
