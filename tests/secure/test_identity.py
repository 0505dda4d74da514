"""Identity keys: node ids, domain-separated signatures, the key file."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from synapse_p2p import Identity
from synapse_p2p.errors import IdentityError
from synapse_p2p.identity import (
    DOMAIN_EVENT,
    DOMAIN_NOISE_STATIC,
    DOMAIN_PEER_RECORD,
    load_or_create,
    node_id_of,
    verify,
)


def test_node_id_is_sha256_of_the_raw_public_key() -> None:
    identity = Identity.generate()
    assert len(identity.public_key) == 32
    assert identity.node_id == hashlib.sha256(identity.public_key).hexdigest()
    assert node_id_of(identity.public_key) == identity.node_id
    assert Identity.generate().node_id != identity.node_id


def test_signatures_are_domain_separated() -> None:
    identity = Identity.generate()
    sig = identity.sign(DOMAIN_EVENT, b"hello")
    assert verify(identity.public_key, DOMAIN_EVENT, b"hello", sig)
    assert not verify(identity.public_key, DOMAIN_PEER_RECORD, b"hello", sig)
    assert not verify(identity.public_key, DOMAIN_NOISE_STATIC, b"hello", sig)
    assert not verify(identity.public_key, DOMAIN_EVENT, b"hellO", sig)
    assert not verify(Identity.generate().public_key, DOMAIN_EVENT, b"hello", sig)
    # A domain that is a prefix of another (plus message bytes) cannot collide.
    assert not verify(identity.public_key, b"synapse-p2p/v1/even", b"thello", sig)
    # Malformed input is just invalid.
    assert not verify(b"short", DOMAIN_EVENT, b"hello", sig)
    assert not verify(identity.public_key, DOMAIN_EVENT, b"hello", sig[:10])
    assert not verify(b"\xff" * 32, DOMAIN_EVENT, b"hello", sig)


def test_save_and_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    identity = Identity.generate()
    identity.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = Identity.load(path)
    assert loaded == identity
    assert loaded.node_id == identity.node_id
    identity.save(path)  # same key again: fine
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]  # no temporary left


def test_save_refuses_to_overwrite_a_different_key(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = Identity.generate()
    first.save(path)
    other = Identity.generate()
    with pytest.raises(IdentityError, match="different identity"):
        other.save(path)
    assert Identity.load(path) == first
    other.save(path, overwrite=True)
    assert Identity.load(path) == other


def test_load_or_create_keeps_the_id_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node.key"
    created = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path).node_id == created.node_id
    assert Identity.load_or_create(path) == created


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    Identity.generate().save(path)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        Identity.load(path)


def test_corrupt_missing_or_foreign_key_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no identity key file"):
        Identity.load(tmp_path / "missing.key")
    corrupt = tmp_path / "corrupt.key"
    corrupt.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    corrupt.chmod(0o600)
    with pytest.raises(IdentityError, match="not a readable PEM"):
        Identity.load(corrupt)
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    foreign = tmp_path / "x25519.key"
    foreign.write_bytes(
        X25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    foreign.chmod(0o600)
    with pytest.raises(IdentityError, match="not an Ed25519 key"):
        Identity.load(foreign)
