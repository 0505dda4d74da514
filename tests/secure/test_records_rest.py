"""Idle record layers let go of their AEAD objects and make them again, counters intact."""

from __future__ import annotations

import os

import pytest

from synapse_p2p.errors import RecordError
from synapse_p2p.secure import _records
from synapse_p2p.secure._noise import CipherState
from synapse_p2p.secure._records import REST_AFTER, RecordLayer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(_records, "_clock", clock)
    monkeypatch.setattr(_records, "_awake", _records._Awake())  # (this test's layers only)
    return clock


def pair() -> tuple[RecordLayer, RecordLayer]:
    one, two = os.urandom(32), os.urandom(32)
    return RecordLayer(CipherState(one), CipherState(two)), RecordLayer(
        CipherState(two), CipherState(one)
    )


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
