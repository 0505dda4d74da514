"""Choosing relays automatically (:class:`AutoRelays`), one decision at a time with the clock
given: relays only while private, at most two, a dead one replaced by a live relay member
(and not retried for a while), kept when there is no other."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p import Peer
from synapse_p2p._seams import LocalNode
from synapse_p2p.identity import Identity
from synapse_p2p.relay import AdvertisedRoutes, AutoRelays, Reachability, RelayTransport
from synapse_p2p.relay._advertised import RelayMember
from synapse_p2p.relay._auto import AVOID_FOR, SWITCH_AFTER
from synapse_p2p.relay._reach import ASK, MOVE_CHECK
from synapse_p2p.relay._reserve import Reservations
from synapse_p2p.secure import Keyring
from synapse_p2p.transport import TcpTransport


class _Caller:
    async def call(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no calls in these tests")

    def connected(self, host: str, port: int) -> bool:
        return False


def setup(relays: int) -> tuple[AutoRelays, Reservations, dict[str, Peer], Reachability]:
    members = {
        f"r{i}": Peer(id=f"r{i}", address="198.18.0.1", port=7000 + i) for i in range(relays)
    }
    advertised = AdvertisedRoutes(RelayTransport(), "me", lambda: ("10.1.0.2", 1))
    for peer in members.values():
        advertised.relay_members[peer.id] = RelayMember(peer.id, peer.address, peer.port)
    reservations = Reservations(
        [], transport=TcpTransport(), identity=Identity.generate(), keyring=Keyring()
    )
    reach = Reachability(LocalNode("me"), members, lambda _id: False, _Caller())  # type: ignore[arg-type]
    auto = AutoRelays(reservations, reach, advertised, lambda: members)
    return auto, reservations, members, reach


def kept(reservations: Reservations) -> set[int]:
    return {state.relay[1] - 7000 for state in reservations.states()}


def test_relays_are_reserved_only_while_private() -> None:
    auto, reservations, _, reach = setup(3)
    auto.step(0.0)
    assert reservations.states() == []  # unknown: nothing
    reach._state = "private"
    auto.step(0.0)
    assert len(kept(reservations)) == 2  # at most two of the three
    reach._state = "public"
    auto.step(1.0)
    assert reservations.states() == []


def test_an_unreserved_relay_is_replaced_by_another_member() -> None:
    auto, reservations, _, reach = setup(3)
    reach._state = "private"
    auto.step(0.0)
    first = kept(reservations)
    auto.step(SWITCH_AFTER - 0.1)
    assert kept(reservations) == first  # not yet
    auto.step(SWITCH_AFTER)
    # both were never reserved: one is replaced by the third, the other stays (only one spare)
    now = kept(reservations)
    assert len(now) == 2
    spare = ({0, 1, 2} - first).pop()
    assert spare in now
    given_up = first - now
    assert len(given_up) == 1
    # a relay given up is not picked again for a while
    auto.step(SWITCH_AFTER + 1)
    assert not given_up & kept(reservations)
    assert auto._avoid[("198.18.0.1", 7000 + given_up.pop())] == SWITCH_AFTER + AVOID_FOR


def test_with_no_other_relay_the_reservation_is_kept() -> None:
    auto, reservations, members, reach = setup(1)
    reach._state = "private"
    auto.step(0.0)
    auto.step(100.0)
    assert kept(reservations) == {0}
    # a relay member that left is not picked
    del members["r0"]
    auto2, reservations2, _, reach2 = setup(0)
    reach2._state = "private"
    auto2.step(0.0)
    assert reservations2.states() == []


_VIRTUAL = [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", _VIRTUAL)
async def test_a_public_node_decides_nothing_until_it_is_private(anyio_backend: Any) -> None:
    """Idle and reachable, the automatic relays wait for reachability to change instead of
    deciding every half second; once private they decide every ``interval`` again."""
    auto, reservations, _, reach = setup(3)
    reach._state = "public"
    steps: list[float] = []
    step = auto.step

    def counted(now: float) -> None:
        steps.append(now)
        step(now)

    auto.step = counted  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(auto.run)
        await anyio.sleep(60)
        assert len(steps) == 1
        reach._state = "private"
        reach.changed.set()
        reach.changed = anyio.Event()
        await anyio.sleep(5 * auto.interval + auto.interval / 2)
        assert len(steps) == 1 + 6
        assert len(kept(reservations)) == 2
        tg.cancel_scope.cancel()


def members_and_local(count: int) -> tuple[dict[str, Peer], LocalNode]:
    """``count`` members ``m0``.. (ports 7000..) and this node's record (port 9000)."""
    members = {f"m{i}": Peer(id=f"m{i}", address="198.18.0.1", port=7000 + i) for i in range(count)}
    return members, LocalNode("me", address="198.18.0.9", port=9000)


class _Answers:
    """Dial-backs that all succeed; the times they were asked for, and whom (by port)."""

    def __init__(self, connected: frozenset[int] = frozenset()) -> None:
        self.asked: list[float] = []
        self.ports: list[int] = []
        self.open = connected  # the ports of the members "connected" to

    async def call(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(anyio.current_time())
        self.ports.append(port)
        return {"ok": True}

    def connected(self, host: str, port: int) -> bool:
        return port in self.open


class _Silent(_Answers):
    """Members that cannot say (every dial-back call fails)."""

    async def call(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        await super().call(host, port)
        raise OSError("unreachable")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", _VIRTUAL)
async def test_a_known_reachability_is_asked_again_every_five_minutes(anyio_backend: Any) -> None:
    """Once known, a node asks one member again every ``recheck`` (300 s): each ask costs
    two handshakes, and a swarm of N nodes asking three members every 60 s made N/20 asks a
    second. While members cannot say it asks three after 2 s, doubling up to ``retry_max``
    (60 s)."""
    members, local = members_and_local(5)
    for answers, rounds in ((_Answers(), [0, 300, 600]), (_Silent(), [0, 2, 6, 14, 30, 62,
                                                                        122, 182, 242])):  # fmt: skip
        reach = Reachability(local, members, lambda _id: False, answers)  # type: ignore[arg-type]
        t0 = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(reach.run)
            await anyio.sleep(rounds[-1] + 1)
            tg.cancel_scope.cancel()
        asked = sorted({round(t - t0) for t in answers.asked})
        assert asked == rounds
        confirmed = isinstance(answers, _Silent) is False
        expected = ASK + len(rounds) - 1 if confirmed else ASK * len(rounds)
        assert len(answers.asked) == expected


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", _VIRTUAL)
async def test_reachability_asks_again_at_once_when_the_node_moves(anyio_backend: Any) -> None:
    """Between rounds (every ``recheck`` once known) a node asks again at once when it
    advertises another address (membership calls ``moved``), and within ``MOVE_CHECK``
    seconds if the address changed some other way."""
    members, local = members_and_local(5)
    answers = _Answers()
    reach = Reachability(local, members, lambda _id: False, answers)  # type: ignore[arg-type]
    t0 = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(reach.run)
        await anyio.sleep(30)
        assert reach.state == "public"
        assert len(answers.asked) == ASK  # one round, the next after recheck (60 s)
        local.address = "198.18.0.10"
        reach.moved()
        await anyio.sleep(0.001)
        assert len(answers.asked) == 2 * ASK
        assert answers.asked[-1] - t0 == pytest.approx(30.0, abs=0.01)
        local.port = 9001  # changed without a word: noticed within MOVE_CHECK
        start = anyio.current_time()
        await anyio.sleep(MOVE_CHECK + 0.1)
        assert len(answers.asked) == 3 * ASK
        assert answers.asked[-1] - start <= MOVE_CHECK
        tg.cancel_scope.cancel()


def verdict(reach: Reachability) -> str:
    return reach.state  # (read anew: mypy narrows the property after an assert)


class _Changing(_Answers):
    """Dial-backs that succeed until ``fail_from``, then fail."""

    def __init__(self, fail_from: float) -> None:
        super().__init__()
        self.fail_from = fail_from

    async def call(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        await super().call(host, port)
        return {"ok": anyio.current_time() < self.fail_from}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", _VIRTUAL)
async def test_a_recheck_asks_one_member_and_more_only_when_it_is_contradicted(
    anyio_backend: Any,
) -> None:
    """The members a node is connected to are asked first (an ask then costs no connection
    of its own). A recheck asks one member; an answer that contradicts the verdict (a
    failure while public) makes it ask the others as well, as an unknown verdict does."""
    members, local = members_and_local(6)
    answers = _Answers(connected=frozenset({7001, 7004}))
    reach = Reachability(local, members, lambda _id: False, answers)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reach.run)
        await anyio.sleep(1)
        assert len(answers.ports) == ASK
        assert {7001, 7004} < set(answers.ports)  # the connected ones, and one more
        await anyio.sleep(300)
        assert len(answers.ports) == ASK + 1
        assert answers.ports[-1] in (7001, 7004)
        tg.cancel_scope.cancel()
    changing = _Changing(fail_from=anyio.current_time() + 100)
    reach = Reachability(local, members, lambda _id: False, changing)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reach.run)
        await anyio.sleep(1)
        assert reach.state == "public"
        assert len(changing.ports) == ASK
        await anyio.sleep(300)
        # one failed while public: up to ASK others asked at once, none of them the same
        assert len(changing.ports) == 2 * ASK + 1
        assert changing.ports[ASK] not in changing.ports[ASK + 1 :]
        assert all(t == changing.asked[ASK] for t in changing.asked[ASK:])
        # the contradiction started the answers over: the earlier successes count no more
        assert verdict(reach) == "private"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", _VIRTUAL)
async def test_with_move_check_off_only_moved_starts_a_round(anyio_backend: Any) -> None:
    """A node's reachability (``move_check=math.inf``: its membership calls ``moved``) does
    not wake every ``MOVE_CHECK`` seconds to look at the address between rounds."""
    members, local = members_and_local(5)
    answers = _Answers()
    reach = Reachability(local, members, lambda _id: False, answers, move_check=math.inf)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reach.run)
        await anyio.sleep(30)
        assert len(answers.asked) == ASK
        local.port = 9001  # changed without a word: not looked at before the next round
        await anyio.sleep(10 * MOVE_CHECK)
        assert len(answers.asked) == ASK
        reach.moved()
        await anyio.sleep(0.001)
        assert len(answers.asked) == 2 * ASK
        tg.cancel_scope.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", _VIRTUAL)
async def test_the_answers_of_members_gone_do_not_keep_a_node_public(anyio_backend: Any) -> None:
    """The members that said a node was reachable leave, and the node stops being reachable:
    at the next recheck their answers no longer count, the one member asked fails, and the
    verdict becomes private (it stayed public for as long as the old successes were kept)."""
    members, local = members_and_local(6)
    changing = _Changing(fail_from=anyio.current_time() + 100)
    reach = Reachability(local, members, lambda _id: False, changing)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reach.run)
        await anyio.sleep(1)
        assert reach.state == "public"
        for port in changing.ports:  # the three that answered leave
            del members[f"m{port - 7000}"]
        await anyio.sleep(300)
        assert len(changing.ports) == ASK + 3  # one asked, then the two others left
        assert verdict(reach) == "private"
        tg.cancel_scope.cancel()
