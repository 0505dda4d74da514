"""Signed agent cards: a JWS (RFC 7515, detached payload) over the card in canonical JSON
(RFC 8785), as the A2A specification describes, made and checked by the a2a-sdk's signing
helpers with an Ed25519 key (``alg: EdDSA``).

The key is a small interface: a ``cryptography`` private key object and a key id (``kid``).
A node's Ed25519 identity key plugs in as is, with its node id as the key id.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from a2a.types import AgentCard
from a2a.utils.signing import (
    SignatureVerificationError,
    create_agent_card_signer,
    create_signature_verifier,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.exceptions import InvalidKeyError

__all__ = ["CardSignatureError", "CardSigner", "card_verifier", "public_jwk", "verify_card"]

ALGORITHM = "EdDSA"

if TYPE_CHECKING:
    from ..identity import Identity


class CardSignatureError(ValueError):
    """An agent card has no signature, or none that the given keys verify."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: Ed25519PublicKey, key_id: str) -> dict[str, str]:
    """The public key as a JWK (RFC 8037 ``OKP``/``Ed25519``), for clients that verify."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "kid": key_id, "alg": ALGORITHM}


@dataclass(frozen=True)
class CardSigner:
    """Signs agent cards with ``private_key`` (Ed25519) under ``key_id``.

    ``sign(card)`` returns a signed copy (the card given is not changed); signatures already
    on it are kept, so a card may carry several. Ed25519 signatures are deterministic: the
    same card always gets the same signature.
    """

    private_key: Ed25519PrivateKey
    key_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be a cryptography Ed25519PrivateKey.")
        if not isinstance(self.key_id, str) or not self.key_id:
            raise TypeError("key_id must be a non-empty string.")

    @classmethod
    def from_identity(cls, identity: Identity) -> CardSigner:
        """A signer with a node's identity key; the key id is its node id, so a client that
        knows the node (its id is the SHA-256 of the public key) can check the card."""
        return cls(identity.private_key, identity.node_id)

    @classmethod
    def generate(cls, key_id: str) -> CardSigner:
        """A signer with a fresh key (for tests and one-off servers)."""
        return cls(Ed25519PrivateKey.generate(), key_id)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        """The public JWK of the signing key."""
        return public_jwk(self.public_key, self.key_id)

    def sign(self, card: AgentCard) -> AgentCard:
        copy = AgentCard()
        copy.CopyFrom(card)
        header: Any = {"kid": self.key_id, "alg": ALGORITHM, "typ": "JOSE"}
        return create_agent_card_signer(self.private_key, header)(copy)  # type: ignore[arg-type]


PublicKey = Ed25519PublicKey | bytes


def _public(key: PublicKey) -> Ed25519PublicKey:
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, bytes | bytearray) and len(key) == 32:
        return Ed25519PublicKey.from_public_bytes(bytes(key))
    raise TypeError("a public key is an Ed25519PublicKey or its 32 raw bytes")


def card_verifier(keys: Mapping[str, PublicKey]) -> Callable[[AgentCard], None]:
    """A ``signature_verifier`` for the a2a-sdk's client and card resolver: a card passes
    when one of its signatures verifies with the key named by its ``kid``. Raises
    :class:`CardSignatureError` otherwise. Keys are ``Ed25519PublicKey`` objects or 32 raw
    bytes (a node's ``identity.public_key``), by key id (its node id)."""
    known = {kid: _public(key) for kid, key in keys.items()}

    def key_for(kid: str | None, jku: str | None) -> Any:
        key = known.get(kid or "")
        if key is None:
            raise InvalidKeyError(f"no key with id {kid!r}")  # this signature fails
        return key

    check = create_signature_verifier(key_for, [ALGORITHM])

    def verify(card: AgentCard) -> None:
        try:
            check(card)
        except SignatureVerificationError as exc:
            raise CardSignatureError(str(exc)) from exc

    return verify


def verify_card(card: AgentCard, key: PublicKey, key_id: str) -> None:
    """Raise :class:`CardSignatureError` unless ``card`` carries a valid signature by ``key``."""
    card_verifier({key_id: key})(card)
