"""Idle record layers let go of their AEAD objects and make them again, counters intact."""

from __future__ import annotations

import os

import pytest

from synapse_p2p.errors import RecordError
from synapse_p2p.secure import _resting
from synapse_p2p.secure._noise import CipherState
from synapse_p2p.secure._records import RecordLayer
from synapse_p2p.secure._resting import REST_AFTER, look
from synapse_p2p.secure._secure_stream import SecureStream
from tests.secure.test_secure_stream_nowait import PEER, ScriptedStream, layers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(_resting, "_clock", clock)
    monkeypatch.setattr(_resting, "_awake", _resting._Awake())  # (this test's layers only)
    return clock


def pair(watch: bool = True) -> tuple[RecordLayer, RecordLayer]:
    """Two ends of a link, watched as a secure stream's layers are."""
    one, two = os.urandom(32), os.urandom(32)
    a, b = (
        RecordLayer(CipherState(one), CipherState(two)),
        RecordLayer(CipherState(two), CipherState(one)),
    )
    if watch:
        a.watch = b.watch = look
    return a, b


def talk(a: RecordLayer, b: RecordLayer, text: bytes) -> None:
    assert b.open(a.seal(text)) == [text]
    assert a.open(b.seal(text[::-1])) == [text[::-1]]


def test_a_layer_idle_past_a_sweep_rests_and_resumes_its_counters(clock: Clock) -> None:
    idle_a, idle_b = pair()
    busy_a, busy_b = pair()
    assert (idle_a.resting, idle_b.resting) == (True, True)  # (nothing made before a record)
    talk(idle_a, idle_b, b"hello")
    talk(busy_a, busy_b, b"hello")
    before = idle_a.seal(b"sealed before the rest")  # (counter 1, never delivered)
    assert (idle_a.resting, idle_b.resting) == (False, False)

    clock.now += REST_AFTER + 0.1
    talk(*pair(), b"wake")  # a layer woken sweeps: every layer was used since the last one
    assert (idle_a.resting, idle_b.resting) == (False, False)
    clock.now += 1.0
    talk(busy_a, busy_b, b"busy")
    clock.now += REST_AFTER
    talk(*pair(), b"wake")  # this sweep finds the idle pair unused since the last one
    assert (idle_a.resting, idle_b.resting) == (True, True)
    assert (idle_a._send._aead, idle_a._receive._aead) == (None, None)
    assert (busy_a.resting, busy_b.resting) == (False, False)

    # The counters stayed: the record sealed before the rest opens, then the talk goes on.
    assert idle_b.open(before) == [b"sealed before the rest"]
    talk(idle_a, idle_b, b"after the rest")
    with pytest.raises(RecordError, match="replayed"):
        idle_b.open(before)


def test_a_rested_layer_refuses_a_replay_and_a_tampered_record(clock: Clock) -> None:
    a, b = pair()
    first = a.seal(b"first")
    assert b.open(first) == [b"first"]
    a.rest()
    b.rest()
    with pytest.raises(RecordError, match="authentication"):
        b.open(first)  # replayed after the rest: its nonce is used
    a, b = pair()
    talk(a, b, b"x")
    a.rest()
    b.rest()
    tampered = bytearray(a.seal(b"second"))
    tampered[-1] ^= 1
    with pytest.raises(RecordError, match="authentication"):
        b.open(bytes(tampered))


def test_a_layer_sealing_many_records_after_a_rest(clock: Clock) -> None:
    a, b = pair()
    talk(a, b, b"x")
    a.rest()
    b.rest()
    payload = os.urandom(200_000)  # several records, sealed into one buffer
    assert b"".join(b.open(a.seal(payload))) == payload


def test_a_layer_rests_while_only_busy_ones_carry_records(clock: Clock) -> None:
    """No layer wakes and every busy one was marked used before the sweep was due: the busy
    ones still look at the sweep every few records, so the idle one rests."""
    idle_a, idle_b = pair()
    busy_a, busy_b = pair()
    talk(idle_a, idle_b, b"once")
    for _ in range(100):  # 20 s of a record each way every 0.2 s
        clock.now += 0.2
        talk(busy_a, busy_b, b"busy")
    assert (idle_a.resting, idle_b.resting) == (True, True)
    assert (busy_a.resting, busy_b.resting) == (False, False)
    talk(idle_a, idle_b, b"again")


def test_a_key_of_the_wrong_length_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CipherState(b"short")


def test_an_unwatched_layer_never_rests_by_itself(clock: Clock) -> None:
    """Without a watch (the sans-IO layer alone) nothing reads a clock and nothing rests."""
    a, b = pair(watch=False)
    talk(a, b, b"once")
    for _ in range(50):
        clock.now += 1.0
        talk(*pair(), b"others")
    assert (a.resting, b.resting) == (False, False)


def test_a_secure_stream_s_layer_is_watched() -> None:
    """The secure stream sets its record layer's watch (the sweep of its thread)."""
    sending, _ = layers()
    assert sending.watch is None
    SecureStream(ScriptedStream(iter(()), all_or_nothing=False), sending, PEER, [])
    assert sending.watch is look


def test_a_layer_used_before_its_stream_watched_it_rests_when_idle(clock: Clock) -> None:
    """The handshake seals and opens with the layer before the secure stream sets its watch;
    a connection that carries nothing afterwards rests all the same."""
    a, b = pair(watch=False)
    talk(a, b, b"handshake")
    SecureStream(ScriptedStream(iter(()), all_or_nothing=False), a, PEER, [])
    busy_a, busy_b = pair()
    for _ in range(30):  # 6 s of another link carrying records
        clock.now += 0.2
        talk(busy_a, busy_b, b"busy")
    assert a.resting
