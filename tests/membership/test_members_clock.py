"""``node.peers``: the offset between the wall clock and the event loop's that ``last_seen``
is computed with."""

from __future__ import annotations

import threading

import trio

from synapse_p2p.membership._members import DRIFT, Members
from synapse_p2p.membership._table import PeerState, PeerTable
from synapse_p2p.types import Peer


def members() -> Members:
    table = PeerTable("self", peer_timeout=10.0)
    return Members({}, lambda: table, lambda: 0.0)


def test_the_offset_holds_within_the_drift_and_moves_past_it() -> None:
    m = members()
    assert m.shift(10.0, 1000.0) == 990.0
    assert m.shift(20.0, 1010.0 + DRIFT / 2) == 990.0  # (two clocks read a moment apart)
    assert m.shift(30.0, 1120.0) == 1090.0  # the wall clock jumped
    assert m.shift(40.0, 1130.0) == 1090.0


def test_a_read_from_another_loop_does_not_take_its_clock_for_this_node_s() -> None:
    """A read of ``node.peers`` in another thread's event loop (another clock) gets an offset
    of its own, and the node keeps the one its membership took."""
    m = members()
    m.shift(10.0, 1000.0)
    assert m.shift(150_000.0, 1001.0, keep=False) == 1001.0 - 150_000.0
    assert m.shift(11.0, 1001.0, keep=False) == 990.0


def test_a_read_in_another_thread_s_event_loop_uses_the_node_s_offset() -> None:
    """``node.peers`` read in a thread running an event loop of its own (a trio clock starts
    hours away from the system's monotonic clock): ``last_seen`` is the one the node's loop
    would give, not one computed with the other loop's clock."""
    table = PeerTable("self", peer_timeout=10.0)
    table.peers["p"] = PeerState(Peer("p", "127.0.0.1", 1, last_seen=0.0), heard=5.0, legacy=False)
    m = Members({"p": table.peers["p"].peer}, lambda: table, lambda: 1000.0)
    m.shift(10.0, 1000.0)  # the membership, in the node's loop: wall = loop clock + 990
    assert m["p"].last_seen == 995.0  # (this thread has no event loop: the offset kept)
    seen: list[float] = []

    async def read() -> None:
        assert abs(trio.current_time() - 10.0) > 1.0  # (a clock of its own)
        seen.append(m["p"].last_seen)

    thread = threading.Thread(target=trio.run, args=(read,))
    thread.start()
    thread.join(10)
    assert seen == [995.0]


def test_a_membership_started_again_in_another_thread_takes_its_offset_and_thread() -> None:
    """A node served again in another thread's event loop: the offset is taken anew there, and
    a read in this thread's event loop (no longer the node's) uses it."""
    table = PeerTable("self", peer_timeout=10.0)
    table.peers["p"] = PeerState(Peer("p", "127.0.0.1", 1, last_seen=0.0), heard=5.0, legacy=False)
    m = Members({"p": table.peers["p"].peer}, lambda: table, lambda: 1000.0)
    m.shift(10.0, 1000.0)  # the first run, in this thread
    thread = threading.Thread(target=m.restart, args=(50.0, 1000.0))  # (wall = clock + 950)
    thread.start()
    thread.join(10)

    async def read() -> float:
        return m["p"].last_seen

    assert trio.run(read) == 955.0
