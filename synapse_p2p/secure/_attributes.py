from __future__ import annotations

from anyio import TypedAttributeSet, typed_attribute

__all__ = ["SecureAttribute"]


class SecureAttribute(TypedAttributeSet):
    """What a :class:`~synapse_p2p.secure.SecureStream` knows about its peer, through
    ``stream.extra(SecureAttribute.peer_node_id)`` and friends."""

    #: The peer's verified node id (64 hex characters).
    peer_node_id: str = typed_attribute()
    #: The peer's raw 32-byte Ed25519 public key.
    peer_public_key: bytes = typed_attribute()
    #: Which of our keyring's secrets the peer used (0 = primary), ``None`` without a secret.
    secret_index: int | None = typed_attribute()
