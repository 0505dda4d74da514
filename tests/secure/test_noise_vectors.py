"""The Noise core against the published cacophony vectors, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synapse_p2p.secure._noise import HandshakeState, KeyPair

VECTORS = json.loads((Path(__file__).parent / "vectors" / "noise-xx-sha256.json").read_text())[
    "vectors"
]


def _side(vector: dict[str, Any], who: str) -> HandshakeState:
    psks = [bytes.fromhex(p) for p in vector.get(f"{who}_psks", [])]
    return HandshakeState(
        initiator=who == "init",
        static=KeyPair.from_private_bytes(bytes.fromhex(vector[f"{who}_static"])),
        prologue=bytes.fromhex(vector[f"{who}_prologue"]),
        psks=psks,
        ephemeral=KeyPair.from_private_bytes(bytes.fromhex(vector[f"{who}_ephemeral"])),
    )


def test_vectors_cover_xx_and_xxpsk3() -> None:
    names = {v["protocol_name"] for v in VECTORS}
    assert names == {
        "Noise_XX_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
    }


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["protocol_name"])
def test_vector(vector: dict[str, Any]) -> None:
    init, resp = _side(vector, "init"), _side(vector, "resp")
    assert init.protocol_name.decode() == vector["protocol_name"]
    messages = vector["messages"]
    sender, receiver = init, resp
    transport: dict[int, tuple[Any, Any]] = {}
    for i, message in enumerate(messages):
        payload = bytes.fromhex(message["payload"])
        expected = bytes.fromhex(message["ciphertext"])
        if not init.complete:
            ciphertext = sender.write_message(payload)
            assert ciphertext == expected, f"handshake message {i}"
            assert receiver.read_message(ciphertext) == payload
            if init.complete:
                assert resp.complete  # type: ignore[unreachable]  # (a property: mypy narrows it)
                assert init.handshake_hash == resp.handshake_hash
                assert init.handshake_hash.hex() == vector["handshake_hash"]
                transport = {id(init): init.split(), id(resp): resp.split()}
        else:
            send = transport[id(sender)][0]
            receive = transport[id(receiver)][1]
            ciphertext = send.encrypt_with_ad(b"", payload)
            assert ciphertext == expected, f"transport message {i}"
            assert receive.decrypt_with_ad(b"", ciphertext) == payload
        sender, receiver = receiver, sender
    assert init.complete
