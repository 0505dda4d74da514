"""Values decoded again and again are kept once: peer strings and ports."""

from __future__ import annotations

import pytest

from synapse_p2p import types
from synapse_p2p.membership._records import PeerRecord
from synapse_p2p.types import Peer


def wire(port: int) -> dict[str, object]:
    return {"id": "a" * 64, "address": "10.0.0.7", "port": port, "name": "n"}


def test_members_decoded_twice_share_their_port_and_strings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(types, "_PORTS", {})  # (other tests may have filled it)
    port = 40_000 + 123  # (ints past 256 are a new object each time they are built)
    first = Peer.from_dict(wire(int(str(port))))
    second = Peer.from_dict(wire(int(str(port))))
    assert first.port == second.port == port
    assert first.port is second.port
    assert first.address is second.address
    record = PeerRecord.from_wire({**wire(int(str(port))), "seq": 1})
    assert record.port is first.port


def test_past_the_limit_a_new_port_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(types, "_PORTS", {})
    monkeypatch.setattr(types, "MAX_SHARED_PORTS", 2)
    kept = [Peer.from_dict(wire(int(str(50_000 + i)))).port for i in range(2)]
    assert [Peer.from_dict(wire(int(str(50_000 + i)))).port is kept[i] for i in range(2)] == [
        True,
        True,
    ]
    late = int(str(50_002))
    assert Peer.from_dict(wire(late)).port is late  # returned as given
    assert len(types._PORTS) == 2


def test_small_ports_and_int_subclasses_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(types, "_PORTS", {})

    class Port(int):
        pass

    assert Peer.from_dict(wire(80)).port == 80
    odd = Port(40_001)
    assert types._interned_port(odd) is odd
    assert types._PORTS == {}
