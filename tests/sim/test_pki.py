"""The demo plant's certificate pair: never reused when the key is missing, torn or from
another pair, written whole (a crash mid-write leaves no half key in place) and private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hmi.sim import pki
from hmi.sim.pki import ensure_certificate

URI = "urn:hmi:demo-plant:server"


def pair_matches(pair: pki.CertificatePair) -> bool:
    cert = x509.load_der_x509_certificate(pair.certificate.read_bytes())
    key = serialization.load_pem_private_key(pair.private_key.read_bytes(), None)
    return key.public_key() == cert.public_key()


@pytest.mark.parametrize("damage", ["truncated", "other pair's key", "empty"])
def test_a_damaged_key_is_replaced_not_served(tmp_path: Path, damage: str) -> None:
    """A key that cannot serve with its certificate makes the next start make a new pair."""
    first = ensure_certificate(tmp_path, "server", URI)
    key = first.private_key.read_bytes()
    if damage == "truncated":
        first.private_key.write_bytes(key[: len(key) // 2])
    elif damage == "other pair's key":
        first.private_key.write_bytes(ensure_certificate(tmp_path / "other", "server", URI).private_key.read_bytes())
    else:
        first.private_key.write_bytes(b"")
    again = ensure_certificate(tmp_path, "server", URI)
    assert again.created
    assert pair_matches(again)


def test_a_crash_while_writing_leaves_no_half_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between writing the key and renaming it into place: the old, whole pair stays
    and no temporary file is left; killed between the key's and the certificate's renames:
    the next start sees the pair does not match and makes a new one."""
    folder = tmp_path / "pki"
    first = ensure_certificate(folder, "server", URI)
    old_key = first.private_key.read_bytes()
    real_replace = os.replace

    def crash(src: object, dst: object) -> None:
        raise KeyboardInterrupt  # as a kill at this instant would, for the files on disk

    monkeypatch.setattr(pki.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_certificate(folder, "server", "urn:another")  # another URI: a new pair is made
    assert first.private_key.read_bytes() == old_key
    assert sorted(p.name for p in folder.iterdir()) == ["server-cert.der", "server-key.pem"]

    calls = []

    def crash_second(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(pki.os, "replace", crash_second)
    with pytest.raises(KeyboardInterrupt):
        ensure_certificate(folder, "server", URI + ":x")
    monkeypatch.setattr(pki.os, "replace", real_replace)
    again = ensure_certificate(folder, "server", URI)
    assert again.created and pair_matches(again)
    assert (again.private_key.stat().st_mode & 0o077) == 0


def test_a_good_pair_is_reused_quickly(tmp_path: Path) -> None:
    """Reuse reads the pair and compares keys; it does not make a new one."""
    first = ensure_certificate(tmp_path, "server", URI)
    again = ensure_certificate(tmp_path, "server", URI)
    assert not again.created
    assert again.certificate.read_bytes() == first.certificate.read_bytes()
