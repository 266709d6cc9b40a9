"""CURVE security for the channel: ZeroMQ's own CurveZMQ, with a ZAP handler (pyzmq's
zmq.auth) that lets in enrolled stations only. No cryptography of ours.

What CURVE gives here: the window knows the runtime by its public key (a wrong server key
fails the handshake), the runtime knows each window by its public key, and the ZAP handler
answers every handshake from the allow-list, so an unknown key gets no stream, no snapshot
and no command. Every frame after the handshake is encrypted and authenticated with
per-connection short-term keys and nonces, so a frame captured on one connection means
nothing on another (a replay). The ZAP reply's User-Id is the enrolled station's name;
ZeroMQ hands it to the ROUTER with each message (`Frame.get("User-Id")`), and the runtime
takes a command's station from it, never from what the window claims.

Loopback may stay plain (a window on the same host); any other address needs CURVE
(`require_curve`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import zmq
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

ZAP_DOMAIN = "hmi"
# The runtime's answer to a command whose connection carries no enrolled name (cannot happen
# with the ZAP handler running; a station removed while connected is told this).
NOT_ENROLLED = "this station is not enrolled on the runtime (hmi station add)"

# Z85 public key -> station name. Called by the ZAP thread on every handshake and by the
# request thread on every command, so it must be cheap (StationList re-reads only on change).
StationsLookup = Callable[[], Mapping[str, str]]


def host_of(address: str) -> str:
    """The host of a tcp://host:port address ("" for inproc:// and ipc://, which stay local)."""
    if not address.startswith("tcp://"):
        return ""
    host = address[len("tcp://") :].rpartition(":")[0] if address.count(":") > 1 else address[len("tcp://") :]
    return host.strip("[]")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; "" (no TCP at all) counts as local too."""
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or * (every interface): reachable from other hosts


def address_is_local(address: str) -> bool:
    return is_loopback(host_of(address))


@dataclass(frozen=True)
class CurveServer:
    """The runtime's side: its key pair and who may attach."""

    public: bytes
    secret: bytes = field(repr=False)
    stations: StationsLookup = field(repr=False, default=dict)

    def apply(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        sock.curve_server = True
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

    def enrolled(self, name: str) -> bool:
        return name in self.stations().values()


@dataclass(frozen=True)
class CurveClient:
    """A window's (or a CLI command's) side: the runtime's public key and its own key pair."""

    server_key: bytes
    public: bytes
    secret: bytes = field(repr=False)

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_serverkey = self.server_key
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def require_curve(address: str, curve: object | None) -> None:
    """Raise OSError when `address` is reachable from other hosts and the channel is plain."""
    if curve is None and not address_is_local(address):
        raise OSError(
            f"refusing to serve windows on {address} without CURVE: only loopback may stay plain "
            "(set [runtime] curve = true, or leave it unset)"
        )


class StationAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler thread, answering CURVE handshakes from the allow-list; the User-Id
    it gives a connection is the station's enrolled name."""

    def __init__(self, context: zmq.Context, stations: StationsLookup) -> None:
        super().__init__(context, log=logging.getLogger("hmi.ipc.zap"))
        self._stations = stations
        self.refused = 0
        self.configure_curve_callback(ZAP_DOMAIN, self)

    def callback(self, domain: str, key: bytes) -> bool:  # the credentials provider of pyzmq's API
        try:
            known = key.decode("ascii") in self._stations()
        except Exception:  # a damaged or unreadable allow-list lets nobody in, and says why
            log.exception("cannot read the station allow-list; refusing the station")
            known = False
        if not known:
            self.refused += 1
            log.warning("refused a station with an unknown key %s…", key[:8].decode("ascii", "replace"))
        return known

    def curve_user_id(self, client_public_key: bytes) -> str:
        from zmq.utils import z85

        return self._stations().get(z85.encode(client_public_key).decode("ascii"), "")
