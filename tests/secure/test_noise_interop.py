"""Interop with an independent Noise implementation (the ``noiseprotocol`` package) on random
keys, as initiator and as responder, with and without a PSK; plus properties of the core."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_p2p.secure._noise import HandshakeState, KeyPair, NoiseError

noise_connection = pytest.importorskip(
    "noise.connection", reason="noiseprotocol is not installed (pip install -e '.[dev]')"
)
NoiseConnection = noise_connection.NoiseConnection
NoiseKeypair = noise_connection.Keypair


def _theirs(initiator: bool, psk: bytes | None, prologue: bytes) -> object:
    name = b"Noise_XXpsk3_25519_ChaChaPoly_SHA256" if psk else b"Noise_XX_25519_ChaChaPoly_SHA256"
    conn = NoiseConnection.from_name(name)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(NoiseKeypair.STATIC, os.urandom(32))
    conn.set_prologue(prologue)
    if psk:
        conn.set_psks(psk=psk)
    conn.start_handshake()
    return conn


@pytest.mark.parametrize("with_psk", [False, True], ids=["XX", "XXpsk3"])
@pytest.mark.parametrize("we_initiate", [True, False], ids=["we-initiate", "we-respond"])
def test_interop_with_noiseprotocol(we_initiate: bool, with_psk: bool) -> None:
    psk = os.urandom(32) if with_psk else None
    prologue = os.urandom(7)
    ours = HandshakeState(
        initiator=we_initiate,
        static=KeyPair.generate(),
        prologue=prologue,
        psks=[psk] if psk else [],
    )
    theirs = _theirs(not we_initiate, psk, prologue)
    for step in range(3):
        payload = os.urandom(step * 10)
        if ours.my_turn:
            assert theirs.read_message(ours.write_message(payload)) == payload  # type: ignore[attr-defined]
        else:
            assert ours.read_message(theirs.write_message(payload)) == payload  # type: ignore[attr-defined]
    assert ours.complete
    assert theirs.handshake_finished  # type: ignore[attr-defined]
    assert ours.handshake_hash == theirs.get_handshake_hash()  # type: ignore[attr-defined]
    send, receive = ours.split()
    for size in (0, 1, 1000, 65535 - 16):
        data = os.urandom(size)
        assert theirs.decrypt(send.encrypt_with_ad(b"", data)) == data  # type: ignore[attr-defined]
        assert receive.decrypt_with_ad(b"", theirs.encrypt(data)) == data  # type: ignore[attr-defined]


def _pair(
    init_psk: bytes | None = None, resp_psks: list[bytes] | None = None
) -> tuple[HandshakeState, HandshakeState]:
    init = HandshakeState(
        initiator=True, static=KeyPair.generate(), psks=[init_psk] if init_psk else []
    )
    resp = HandshakeState(initiator=False, static=KeyPair.generate(), psks=resp_psks or [])
    return init, resp


def _run(init: HandshakeState, resp: HandshakeState) -> None:
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    resp.read_message(init.write_message())


def test_responder_keyring_picks_the_matching_psk() -> None:
    keys = [os.urandom(32) for _ in range(3)]
    for i, key in enumerate(keys):
        init, resp = _pair(key, keys)
        _run(init, resp)
        assert resp.psk_index == i
        assert init.handshake_hash == resp.handshake_hash
        assert init.rs == resp.s.public
        assert resp.rs == init.s.public


def test_psk_not_in_keyring_fails_on_message_three() -> None:
    init, resp = _pair(os.urandom(32), [os.urandom(32), os.urandom(32)])
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    with pytest.raises(NoiseError, match="no pre-shared key matched"):
        resp.read_message(init.write_message())


def test_out_of_turn_message_is_refused() -> None:
    init, resp = _pair()
    with pytest.raises(NoiseError):
        init.read_message(b"\x00" * 32)
    with pytest.raises(NoiseError):
        resp.write_message()


def _transport() -> tuple[tuple[object, object], tuple[object, object]]:
    init, resp = _pair()
    _run(init, resp)
    return init.split(), resp.split()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=2000), min_size=1, max_size=5))
def test_any_payload_round_trips(payloads: list[bytes]) -> None:
    (i_send, _), (_, r_recv) = _transport()
    for payload in payloads:
        assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", payload)) == payload  # type: ignore[attr-defined]


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_a_flipped_bit_fails(payload: bytes, data: st.DataObject) -> None:
    (i_send, _), (_, r_recv) = _transport()
    ciphertext = bytearray(i_send.encrypt_with_ad(b"", payload))  # type: ignore[attr-defined]
    bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1))
    ciphertext[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(NoiseError):
        r_recv.decrypt_with_ad(b"", bytes(ciphertext))  # type: ignore[attr-defined]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=50), min_size=2, max_size=6), st.data())
def test_replayed_or_reordered_records_fail(payloads: list[bytes], data: st.DataObject) -> None:
    (i_send, _), (_, r_recv) = _transport()
    sealed = [i_send.encrypt_with_ad(b"", p) for p in payloads]  # type: ignore[attr-defined]
    taken = data.draw(st.integers(0, len(sealed) - 2))
    for ciphertext in sealed[:taken]:
        r_recv.decrypt_with_ad(b"", ciphertext)  # type: ignore[attr-defined]
    wrong = data.draw(
        st.sampled_from([c for j, c in enumerate(sealed) if j != taken]), label="replayed or later"
    )
    with pytest.raises(NoiseError):
        r_recv.decrypt_with_ad(b"", wrong)  # type: ignore[attr-defined]
