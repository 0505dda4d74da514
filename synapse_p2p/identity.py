"""A node's identity: an Ed25519 key pair, its node id, and domain-separated signatures.

``node_id`` is ``sha256(raw 32-byte public key).hexdigest()`` (64 hex characters). Every
signature is made over ``len(domain) || domain || message`` (one length byte), so a signature
made for one purpose (a Noise static key, a conversation event, a peer record) can never be
taken for another; the domains in use are the ``DOMAIN_*`` constants.

Key file format: the private key as unencrypted PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``,
what ``openssl genpkey -algorithm ed25519`` writes), file mode 0600. :meth:`Identity.save` writes
atomically (a temporary file in the same directory, then a link or rename) and refuses to
replace a file holding a different key. :meth:`Identity.load` raises
:class:`~synapse_p2p.errors.IdentityError` for a missing-key, corrupt, non-Ed25519 or
group/world-accessible file (on POSIX systems).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from .errors import IdentityError

__all__ = [
    "DOMAIN_EVENT",
    "DOMAIN_NOISE_STATIC",
    "DOMAIN_PEER_RECORD",
    "Identity",
    "load_or_create",
    "node_id_of",
    "verify",
]

#: Signs the X25519 static key of a secure-channel handshake.
DOMAIN_NOISE_STATIC = b"synapse-p2p/v1/noise-static"
#: Signs a conversation event.
DOMAIN_EVENT = b"synapse-p2p/v1/event"
#: Signs a peer record (address, name, capabilities, sequence number).
DOMAIN_PEER_RECORD = b"synapse-p2p/v1/peer-record"

PathLike = str | os.PathLike[str]


def node_id_of(public_key: bytes) -> str:
    """The node id of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    # Interned: the id proved by a handshake is the same string as the one membership decoded
    # and keeps (see ``synapse_p2p.types``), so a connection's identity holds no copy of it.
    return sys.intern(hashlib.sha256(public_key).hexdigest())


def _signed(domain: bytes, message: bytes) -> bytes:
    if not 0 < len(domain) < 256:
        raise ValueError("a signature domain is 1 to 255 bytes")
    return bytes([len(domain)]) + domain + message


@lru_cache(maxsize=4096)
def _public(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def verify(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is ``public_key``'s signature of ``message`` under ``domain``.

    Never raises for bad input: a malformed key or signature is simply not valid.
    """
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        _public(bytes(public_key)).verify(signature, _signed(domain, message))
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """An Ed25519 key pair: ``node_id``, ``public_key`` (32 raw bytes) and :meth:`sign`."""

    __slots__ = ("__weakref__", "_key", "node_id", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.node_id = node_id_of(self.public_key)

    def __repr__(self) -> str:
        return f"Identity(node_id={self.node_id[:16]}...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        """A new random identity."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> Identity:
        """The identity of a raw 32-byte Ed25519 private key (seed)."""
        return cls(Ed25519PrivateKey.from_private_bytes(data))

    @classmethod
    def load_or_create(cls, path: PathLike) -> Identity:
        """The identity in ``path``, created there if missing (see :func:`load_or_create`)."""
        return load_or_create(path)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The ``cryptography`` private key object, for signing formats of other protocols
        (an A2A agent card's JWS, say). Keep it private: it *is* this node's identity."""
        return self._key

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """The 64-byte signature of ``message`` under ``domain`` (see the module docs)."""
        return self._key.sign(_signed(domain, message))

    def to_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (the key file's content)."""
        return self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "key data") -> Identity:
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError(f"{source} is not a readable PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{source} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def load(cls, path: PathLike) -> Identity:
        """Read a key file; ``IdentityError`` if it is missing, corrupt or accessible to
        other users (fix with ``chmod 600``)."""
        path = Path(path)
        try:
            with path.open("rb") as file:
                mode = os.fstat(file.fileno()).st_mode
                data = file.read(64 * 1024)
        except FileNotFoundError:
            raise IdentityError(f"no identity key file at {path}") from None
        except OSError as exc:
            raise IdentityError(f"cannot read identity key file {path}: {exc}") from None
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            raise IdentityError(
                f"identity key file {path} is accessible to other users "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        return cls.from_pem(data, source=f"identity key file {path}")

    def save(self, path: PathLike, *, overwrite: bool = False) -> None:
        """Write the key file atomically with mode 0600.

        If ``path`` already holds this key nothing changes; if it holds anything else,
        ``IdentityError`` unless ``overwrite``. On any error no partial file is left behind.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            if Identity.load(path) == self:
                return
            raise IdentityError(f"{path} holds a different identity key; not overwriting it")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(self.to_pem())
                file.flush()
                os.fsync(file.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # fails if someone created the file meanwhile
                except FileExistsError:
                    if Identity.load(path) != self:
                        raise IdentityError(
                            f"{path} holds a different identity key; not overwriting it"
                        ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def load_or_create(path: PathLike) -> Identity:
    """The identity in ``path``, or a new one saved there (mode 0600) if the file does not
    exist. Two processes racing to create it end up with the same key."""
    path = Path(path)
    if path.exists():
        return Identity.load(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    identity = Identity.generate()
    try:
        identity.save(path)
    except IdentityError:
        if not path.exists():
            raise
        return Identity.load(path)  # another process created it first
    return identity
