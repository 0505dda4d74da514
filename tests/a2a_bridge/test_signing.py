"""Signed agent cards: JWS (EdDSA) over the canonical card, checked with the SDK's verifier."""

from __future__ import annotations

import base64
import json

import pytest

pytest.importorskip("a2a", reason="the a2a extra is not installed")

from a2a.types import AgentCard, AgentSkill
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from synapse_p2p.a2a import CardSignatureError, CardSigner, card_verifier, verify_card


def card() -> AgentCard:
    return AgentCard(name="swarm", description="d", version="1",
                     skills=[AgentSkill(id="math", name="math", description="m")])  # fmt: skip


def test_sign_and_verify_with_a_generated_key() -> None:
    key = Ed25519PrivateKey.generate()
    signer = CardSigner(key, "node-1")
    original = card()
    signed = signer.sign(original)
    assert len(signed.signatures) == 1
    assert not original.signatures  # a copy is signed
    header = json.loads(base64.urlsafe_b64decode(signed.signatures[0].protected + "=="))
    assert header == {"kid": "node-1", "alg": "EdDSA", "typ": "JOSE"}
    verify_card(signed, key.public_key(), "node-1")
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    verify_card(signed, raw, "node-1")  # a node identity's 32-byte public key works too
    assert signer.sign(card()).signatures[0].signature == signed.signatures[0].signature
    jwk = signer.jwk()
    assert base64.urlsafe_b64decode(jwk["x"] + "=") == raw
    assert (jwk["kty"], jwk["crv"], jwk["kid"]) == ("OKP", "Ed25519", "node-1")


def test_tampered_unsigned_or_wrong_key_cards_fail() -> None:
    signer = CardSigner.generate("k")
    signed = signer.sign(card())
    tampered = AgentCard()
    tampered.CopyFrom(signed)
    tampered.skills[0].id = "admin"
    with pytest.raises(CardSignatureError):
        verify_card(tampered, signer.public_key, "k")
    with pytest.raises(CardSignatureError, match="no signatures"):
        verify_card(card(), signer.public_key, "k")
    with pytest.raises(CardSignatureError):
        verify_card(signed, CardSigner.generate("k").public_key, "k")
    with pytest.raises(CardSignatureError):  # unknown key id
        card_verifier({"other": signer.public_key})(signed)
    # a second signature by another key: either key verifies the card
    other = CardSigner.generate("k2")
    both = other.sign(signed)
    verify_card(both, signer.public_key, "k")
    verify_card(both, other.public_key, "k2")


def test_signer_arguments_are_checked() -> None:
    with pytest.raises(TypeError):
        CardSigner("not a key", "k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CardSigner(Ed25519PrivateKey.generate(), "")
    with pytest.raises(TypeError):
        card_verifier({"k": b"short"})
