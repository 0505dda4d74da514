"""Liveness with partial views on virtual time: members are watched over the links of the
active views and announced dead, not kept alive by re-signed records in every round."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p import Node
from synapse_p2p.membership._endpoints import GOSSIP_ENDPOINT, GOSSIP_VERSION
from tests.membership.test_virtual_time import Swarm, open_swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


#: What a hung node no longer answers (it still completes handshakes).
HUNG_ENDPOINTS = ("_synapse.gossip", "_synapse.views", "_synapse.join", "_synapse.record")


def by_name(swarm: Swarm, name: str) -> Node:
    return next(n for n in swarm.nodes if n.name == name)


def active_ids(node: Node) -> list[str]:
    views = node.membership.views
    assert views is not None
    return list(views.active_ids())


def seq_of(node: Node, member: Node) -> int:
    state = node.membership.table.get(member.node_id)
    assert state is not None
    return state.seq


async def notify(sender: Node, receiver: Node, dead: list[Any], kind: str = "dead") -> Any:
    """``sender`` pushes death (or suspicion: ``kind="suspect"``) notices to ``receiver`` (a
    gossip push, as a node relays)."""
    message = {
        "v": GOSSIP_VERSION,
        "from": sender.membership._signed_record(),
        "members": [],
        "push": True,
        kind: dead,
    }
    return await sender.membership.caller.call(
        receiver.membership.local.address, receiver.port, GOSSIP_ENDPOINT, [message], {}, timeout=5
    )


async def test_an_idle_swarm_with_views_neither_re_signs_nor_loses_a_member(
    anyio_backend: Any,
) -> None:
    """Five idle minutes: nobody re-signs its record (a member stays listed until announced
    dead) and nobody goes offline anywhere."""
    async with open_swarm(12, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(10)
        signed = [n.membership._signer.signed for n in swarm.nodes]  # type: ignore[union-attr]
        events = len(swarm.events)
        await anyio.sleep(300)
        assert swarm.events[events:] == []
        assert [n.membership._signer.signed for n in swarm.nodes] == signed  # type: ignore[union-attr]
        await swarm.converged()


async def test_a_crashed_node_is_announced_dead_everywhere(anyio_backend: Any) -> None:
    """Its neighbors find it silent (or refusing) and announce it; the others take their word
    and never bring the dead record back."""
    async with open_swarm(12, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(30)
        victim = by_name(swarm, "n4")
        killed_at = anyio.current_time()
        swarm.kill("n4")
        survivors = [n for n in swarm.nodes if n is not victim]
        with anyio.fail_after(60):
            while any(victim.node_id in n.peers for n in survivors):
                await anyio.sleep(0.1)
        offline = [e for e in swarm.events if e[2] == "peer.offline"]
        assert sorted(e[1] for e in offline) == sorted(n.name for n in survivors)
        assert {e[3] for e in offline} == {"n4"}
        assert max(e[0] for e in offline) - killed_at <= 25.0 + 0.5
        announced = sum(n.membership.deaths["announced"] for n in survivors)
        heard = sum(n.membership.deaths["heard"] for n in survivors)
        assert announced >= 1
        assert heard >= 1  # most survivors never watched it: they took a neighbor's word
        expired = sum(n.membership.deaths["expired"] for n in survivors)
        assert announced + heard + expired == len(survivors)
        events = len(swarm.events)
        await anyio.sleep(120)  # stale news of the dead record brings it back nowhere
        assert swarm.events[events:] == []
        assert not any(victim.node_id in n.peers for n in survivors)


async def test_a_false_death_notice_is_refuted_and_the_member_comes_back(
    anyio_backend: Any,
) -> None:
    """A member says n5 is dead: n2 believes it, the notice floods, n5 hears it, signs a new
    record and pushes it: every node lists n5 again."""
    async with open_swarm(12, partial_views=True) as swarm:
        await swarm.converged()
        n2, n3, n5 = by_name(swarm, "n2"), by_name(swarm, "n3"), by_name(swarm, "n5")
        old = seq_of(n2, n5)
        await notify(n3, n2, [[n5.node_id, old]])
        assert n5.node_id not in n2.peers  # believed: n3 is a member at its address
        with anyio.fail_after(30):
            while n5.membership.deaths["refuted"] == 0:
                await anyio.sleep(0.05)
            await swarm.converged()
        assert n5.membership._proof().seq > old  # type: ignore[union-attr]
        assert n2.membership.deaths["heard"] == 1
        assert ("n2", "peer.offline", "n5") in [e[1:] for e in swarm.events]


#: Rounds a minute apart: news that reaches a node within seconds came pushed, not in a
#: round's digest.
SLOW_ROUNDS = {"heartbeat_interval": 60, "peer_timeout": 600}


async def dead_everywhere(swarm: Swarm, member: Node) -> int:
    """Every node takes a false notice that ``member`` is dead (``member``, silent meanwhile,
    is told none) and the notices settle; ``member`` stays silent on links of its own (its
    views) until the test ends. Returns the ``seq`` the notice named."""
    quiet = member.membership
    views = quiet.views
    assert views is not None
    others = [n for n in swarm.nodes if n is not member]
    old = seq_of(others[0], member)
    quiet._gossip_to = lambda *args, **kwargs: None  # type: ignore[method-assign]
    views.tick = lambda: None  # type: ignore[method-assign]
    for node in others:
        assert node.membership._kill(member.node_id, old, first_hand=False, how="heard")
    with anyio.fail_after(10):  # the notices pushed and answered
        while any(n.membership._dead or n.membership._outstanding for n in others):
            await anyio.sleep(0.05)
    assert not any(member.node_id in n.peers for n in others)
    del quiet._gossip_to  # (it may push again: its refutation)
    return old


async def refuted_at(x: Node, member: Node, old: int) -> float:
    """``member`` hears the notice naming record ``old`` now and refutes it: seconds until
    ``x`` lists it again, with a newer record (at most 20)."""
    back = anyio.current_time()
    member.membership._refute_notice(old)
    with anyio.fail_after(20):
        while member.node_id not in x.peers:
            await anyio.sleep(0.05)
    assert seq_of(x, member) > old
    return anyio.current_time() - back


async def test_a_member_back_from_a_false_death_reaches_a_node_whose_neighbors_hold_it_lazy(
    anyio_backend: Any,
) -> None:
    """News is pushed along a tree: a neighbor that answered a push ``lazy`` gets no news
    pushed for a while, and the rounds' digests repair what it missed. A death notice goes
    to every neighbor whatever the tree, and so must the news that undoes it. Every neighbor
    of x holds x lazy and the rounds are a minute apart: every node takes a false notice that
    n5 is dead, n5 hears it late and refutes it, and x lists n5 again within seconds, not at a
    round (n5's views stay quiet: it does not ask x for a link)."""
    async with open_swarm(12, partial_views=True, **SLOW_ROUNDS) as swarm:
        await swarm.converged()
        n5 = by_name(swarm, "n5")
        x = next(n for n in swarm.nodes if n is not n5 and n.node_id not in active_ids(n5))
        for node in swarm.nodes:  # (its neighbors now, and any it may get)
            node.membership._lazy[x.node_id] = math.inf
        # (nor does x ask to be pushed to again when a link of its own drops: a graft)
        x.membership.neighbor_down = lambda node_id: None  # type: ignore[method-assign]
        old = await dead_everywhere(swarm, n5)
        assert await refuted_at(x, n5, old) < 5
        assert all(n.membership._lazy.get(x.node_id) == math.inf for n in swarm.nodes)


async def test_a_member_back_from_a_false_death_reaches_a_node_its_neighbors_are_calling(
    anyio_backend: Any,
) -> None:
    """A push of news skips a neighbor with a call outstanding (calls never pile up), and
    the rounds' digests repair what it missed; a notice does not, and neither does the news
    that undoes it. x answers gossip 3 s late and each of its neighbors has just called it
    when n5 refutes a false death notice: x lists n5 again within seconds, not at a round (a
    minute apart)."""
    async with open_swarm(12, partial_views=True, **SLOW_ROUNDS) as swarm:
        await swarm.converged()
        n5 = by_name(swarm, "n5")
        x = next(n for n in swarm.nodes if n is not n5 and n.node_id not in active_ids(n5))
        old = await dead_everywhere(swarm, n5)
        spec = x._registry.get(GOSSIP_ENDPOINT)
        assert spec is not None
        answer = spec.handler

        @x.endpoint(GOSSIP_ENDPOINT, publish=False)
        async def late(message: Any, connection: Any = None) -> Any:
            await anyio.sleep(3)
            return await answer(message, connection=connection)

        neighbors = [n.membership for n in swarm.nodes if x.node_id in active_ids(n)]
        for m in neighbors:
            assert m._calls is not None
            m._probe(m._calls, [m.table.peers[x.node_id].peer], 60)
        assert all(x.node_id in m._outstanding for m in neighbors)
        assert await refuted_at(x, n5, old) < 8


async def test_a_death_notice_heard_again_after_the_member_spoke_does_not_drop_it_again(
    anyio_backend: Any,
) -> None:
    """n2 takes a notice that n5 is dead, then n5 itself speaks to n2 (alive again there),
    then another copy of the same flood reaches n2: n5 is suspected, not dropped a second
    time (no offline/online flapping while the notice floods), and n5's refutation settles
    it."""
    async with open_swarm(12, partial_views=True) as swarm:
        await swarm.converged()
        n2, n3, n4, n5 = (by_name(swarm, f"n{i}") for i in (2, 3, 4, 5))
        old = seq_of(n2, n5)
        refute = n5.membership._refute_notice
        n5.membership._refute_notice = lambda seq: None  # type: ignore[method-assign]
        await notify(n3, n2, [[n5.node_id, old]])  # (n5 is slow to refute it)
        assert n5.node_id not in n2.peers
        await notify(n5, n2, [])  # n5's own contact, on the record named
        assert n5.node_id in n2.peers
        offline = [e for e in swarm.events if e[1:] == ("n2", "peer.offline", "n5")]
        await notify(n4, n2, [[n5.node_id, old]])
        assert n5.node_id in n2.peers
        assert n2.membership.deaths["heard"] == 1
        n5.membership._refute_notice = refute  # type: ignore[method-assign]
        with anyio.fail_after(30):
            while n5.membership.deaths["refuted"] == 0:
                await anyio.sleep(0.05)
            await swarm.converged()
        assert [e for e in swarm.events if e[1:] == ("n2", "peer.offline", "n5")] == offline
        assert n2.membership.deaths["relayed"] == 1  # (the copy)
        assert suspected_anywhere(swarm, n5) == []


async def test_death_notices_that_prove_nothing_change_nothing(anyio_backend: Any) -> None:
    """A notice from a node that is no member, one naming a record newer than the one held
    (the member never signed it: it could not refute it), one naming an older record, and
    malformed entries: n5 stays alive everywhere, the receiver keeps serving."""
    async with open_swarm(6, partial_views=True) as swarm:
        await swarm.converged()
        n2, n3, n5 = by_name(swarm, "n2"), by_name(swarm, "n3"), by_name(swarm, "n5")
        seq = seq_of(n2, n5)
        stranger = Node(
            bind="10.0.0.99",
            port=7000,
            name="stranger",
            swarm="test",
            transport=swarm.network.transport("10.0.0.99"),
        )
        async with anyio.create_task_group() as tg:
            await tg.start(stranger.serve)
            await notify(stranger, n2, [[n5.node_id, seq]])
            tg.cancel_scope.cancel()
        await notify(n3, n2, [[n5.node_id, 2**53 - 1], [n5.node_id, seq - 1]])
        await notify(n3, n2, ["x", [1], [n5.node_id, "7"], [n5.node_id], [n5.node_id, True]])
        assert n2.membership.deaths["malformed"] == 5
        # The same for suspicions.
        async with anyio.create_task_group() as tg:
            await tg.start(stranger.serve)
            await notify(stranger, n2, [[n5.node_id, seq]], kind="suspect")
            tg.cancel_scope.cancel()
        newer_older = [[n5.node_id, 2**53 - 1], [n5.node_id, seq - 1]]
        await notify(n3, n2, newer_older, kind="suspect")
        await notify(n3, n2, ["x", [1], [n5.node_id, True]], kind="suspect")
        await notify(n3, n2, {"not": "a list"}, kind="suspect")  # type: ignore[arg-type]
        assert n2.membership.deaths["malformed"] == 5 + 4
        assert suspected_anywhere(swarm, n5) == []
        await anyio.sleep(30)
        assert n5.node_id in n2.peers
        assert n2.membership.deaths["heard"] == 0
        assert n2.membership.deaths["relayed"] == 0
        assert n5.membership.deaths["refuted"] == 0  # a newer record than its own: forged
        assert ("n2", "peer.offline", "n5") not in [e[1:] for e in swarm.events]
        assert all(n5.node_id in n.peers for n in swarm.nodes if n is not n5)


async def test_a_hung_member_is_announced_dead_by_the_silence_of_its_links(
    anyio_backend: Any,
) -> None:
    """n4 still accepts connections but never answers (a hung process): no call is refused,
    so its neighbors find it by silence (peer_timeout, longer while their calls to it time
    out), and announce it once their own calls are answered again."""
    async with open_swarm(10, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(10)
        hung = by_name(swarm, "n4")
        for endpoint in HUNG_ENDPOINTS:

            @hung.endpoint(endpoint, publish=False)
            async def stuck(*args: Any, **kwargs: Any) -> Any:
                await anyio.sleep_forever()

        hung.membership.say_goodbye = False
        started = anyio.current_time()
        # Its own rounds and view ticks stop too (a hung process sends nothing).
        views = hung.membership.views
        assert views is not None
        hung.membership._round = lambda *args: None  # type: ignore[method-assign]
        hung.membership._expire = lambda *args: None  # type: ignore[method-assign]
        hung.membership._gossip_to = lambda *args, **kwargs: None  # type: ignore[method-assign]
        views.tick = lambda: None  # type: ignore[method-assign]
        others = [n for n in swarm.nodes if n is not hung]
        events = len(swarm.events)
        # Silent past 0.75 * peer_timeout (longer for a node whose health score a call to
        # the hung member raised before it looked silent): suspected, and dead once the
        # suspicion times out unrefuted.
        await anyio.sleep(2 * 20 + 10)
        offline = [e[1] for e in swarm.events[events:] if e[2:] == ("peer.offline", "n4")]
        assert sorted(offline) == sorted(n.name for n in others)
        assert started + 15 <= min(e[0] for e in swarm.events[events:])
        assert sum(n.membership.deaths["announced"] for n in others) >= 1
        assert sum(n.membership.deaths["suspected"] for n in others) >= 1
        # It still completes handshakes, and every node retries an offline member now and
        # then: only an answered call would list it again.
        await anyio.sleep(120)
        assert [e for e in swarm.events[events:] if e[2] == "peer.joined"] == []
        assert not any(hung.node_id in n.peers for n in others)


def suspected_anywhere(swarm: Swarm, member: Node) -> list[str]:
    out = []
    for node in swarm.nodes:
        state = node.membership.table.get(member.node_id)
        if state is not None and state.suspected:
            out.append(node.name)
    return out


async def test_a_false_suspicion_is_refuted_before_anyone_loses_the_member(
    anyio_backend: Any,
) -> None:
    """A member tells n2 that n5 is suspected: n2 keeps listing it, the suspicion floods, n5
    hears it, signs a new record and pushes it; the record lifts the suspicion everywhere
    before it times out: no node ever reports n5 offline."""
    async with open_swarm(12, partial_views=True) as swarm:
        await swarm.converged()
        n2, n3, n5 = by_name(swarm, "n2"), by_name(swarm, "n3"), by_name(swarm, "n5")
        old = seq_of(n2, n5)
        events = len(swarm.events)
        await notify(n3, n2, [[n5.node_id, old]], kind="suspect")
        assert n5.node_id in n2.peers  # suspected, still listed
        assert suspected_anywhere(swarm, n5) == ["n2"]
        with anyio.fail_after(30):
            while n5.membership.deaths["refuted"] == 0 or suspected_anywhere(swarm, n5):
                await anyio.sleep(0.05)
        await anyio.sleep(60)
        assert [e for e in swarm.events[events:] if e[2] == "peer.offline"] == []
        assert all(seq_of(n, n5) > old for n in swarm.nodes if n is not n5)
        assert sum(n.membership.deaths["relayed"] for n in swarm.nodes) >= 1
        assert sum(n.membership.deaths["lifted"] for n in swarm.nodes) >= 1
        assert sum(n.membership.deaths["announced"] for n in swarm.nodes) == 0


async def test_a_suspicion_nobody_refutes_is_a_death_everywhere(anyio_backend: Any) -> None:
    """n4 hangs (accepts connections, never answers) and a member suspects it at once: the
    suspicion floods, nobody refutes it, and once it times out n4 is offline everywhere,
    long before its silence alone would have told."""
    async with open_swarm(10, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(10)
        n2, n3, hung = by_name(swarm, "n2"), by_name(swarm, "n3"), by_name(swarm, "n4")
        for endpoint in HUNG_ENDPOINTS:

            @hung.endpoint(endpoint, publish=False)
            async def stuck(*args: Any, **kwargs: Any) -> Any:
                await anyio.sleep_forever()

        hung.membership.say_goodbye = False
        hung.membership._round = lambda *args: None  # type: ignore[method-assign]
        hung.membership._expire = lambda *args: None  # type: ignore[method-assign]
        hung.membership._gossip_to = lambda *args, **kwargs: None  # type: ignore[method-assign]
        views = hung.membership.views
        assert views is not None
        views.tick = lambda: None  # type: ignore[method-assign]
        others = [n for n in swarm.nodes if n is not hung]
        events = len(swarm.events)
        started = anyio.current_time()
        await notify(n3, n2, [[hung.node_id, seq_of(n2, hung)]], kind="suspect")
        with anyio.fail_after(12):  # the suspicion's time at 10 members is 5 s
            while any(hung.node_id in n.peers for n in others):
                await anyio.sleep(0.05)
        offline = [e for e in swarm.events[events:] if e[2:] == ("peer.offline", "n4")]
        assert sorted(e[1] for e in offline) == sorted(n.name for n in others)
        assert min(e[0] for e in offline) >= started + 5.0  # not before the suspicion's time
        assert sum(n.membership.deaths["relayed"] for n in others) >= 1


async def test_a_node_whose_own_calls_fail_does_not_announce_what_it_failed_to_hear(
    anyio_backend: Any,
) -> None:
    """n1's health score is up (its calls time out: the silence may be its own). A neighbor
    it has not heard from is neither suspected nor dropped there; nobody ever loses it."""
    async with open_swarm(8, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(10)
        a = by_name(swarm, "n1")
        views = a.membership.views
        assert views is not None
        b = next(n for n in swarm.nodes if views.is_active(n.node_id))
        m = a.membership
        m.health = 3
        state = m.table.get(b.node_id)
        assert state is not None
        state.heard -= 1000
        m._expire()
        assert b.node_id in a.peers
        assert not state.suspected
        assert (m.deaths["deferred"], m.deaths["suspected"]) == (1, 0)
        await anyio.sleep(120)
        assert (m.deaths["suspected"], m.deaths["announced"]) == (0, 0)
        assert [e for e in swarm.events if e[2] == "peer.offline"] == []


async def test_a_stalled_process_accuses_nobody_when_it_wakes(anyio_backend: Any) -> None:
    """The whole process stops for 25 s (a paused machine, a laptop asleep, a loop too busy
    to keep time): every node wakes to find each of its links silent for longer than it
    suspects after (15 s). Each sees its own rounds wake late and takes the stall out of
    the silence: nobody is suspected, nobody goes offline anywhere, and a crash after it is
    still found."""
    async with open_swarm(10, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(30)
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock)
        clock.jump(25)  # no task runs meanwhile; every timer is then late
        await anyio.sleep(120)
        assert [e for e in swarm.events if e[2] == "peer.offline"] == []
        assert sum(n.membership.deaths["suspected"] for n in swarm.nodes) == 0
        assert all(n.membership.stalls >= 1 for n in swarm.nodes)
        await swarm.converged()
        victim = by_name(swarm, "n4")
        swarm.kill("n4")
        survivors = [n for n in swarm.nodes if n is not victim]
        with anyio.fail_after(60):
            while any(victim.node_id in n.peers for n in survivors):
                await anyio.sleep(1)


async def test_a_suspicion_ends_at_the_moment_the_rounds_wake_for_it(anyio_backend: Any) -> None:
    """The rounds wake for a suspicion at :meth:`_suspicion_due` and end it there. The two
    must agree to the last bit: with the due time a rounding error short of the end (a
    suspicion time that is no round number, 13 members here), the rounds woke for it again
    and again without a checkpoint, and the whole process hung."""
    async with open_swarm(13, partial_views=True) as swarm:
        await swarm.converged()
        a, b = by_name(swarm, "n1"), by_name(swarm, "n2")
        m = a.membership
        time = m._suspicion_time()
        # a start where adding the time and taking the start away again falls short of it
        since = next(x for x in (10 + i / 997 for i in range(100_000)) if (x + time) - x < time)
        seq = seq_of(a, b)
        assert m.table.suspect(b.node_id, seq, since) is not None
        m._suspects[b.node_id] = (seq, False)
        due = m._suspicion_due()
        m._now = lambda: due  # type: ignore[method-assign]
        m._end_suspicions()
        assert b.node_id not in m._suspects
        assert b.node_id not in a.peers


async def test_a_silent_member_with_a_call_of_ours_outstanding_is_judged_by_the_call(
    anyio_backend: Any,
) -> None:
    """A neighbor silent past the window, with a call of ours to it on its way (a probe on a
    loop too busy to answer in time), is not suspected yet (``awaited``): the call's answer
    would be contact. Once a call to it failed since it was last heard, or with no call
    outstanding, the silence stands and it is suspected."""
    async with open_swarm(6, partial_views=True, heartbeat_interval=60, peer_timeout=600) as swarm:
        await swarm.converged()
        x = by_name(swarm, "n1")
        m, views = x.membership, x.membership.views
        assert views is not None
        y, z = active_ids(x)[:2]
        now = anyio.current_time()
        m.health = 0  # (a healthy node: else it defers every suspicion)
        m.table.peers[y].heard = now - 500  # silent past 0.75 * peer_timeout (450 s)
        m._outstanding.add(y)  # a call to y on its way, none failed since it was heard
        m._watch_silence(now, views)
        assert not m.table.peers[y].suspected
        assert m.deaths["awaited"] == 1
        m.table.peers[z].heard = now - 500
        m._outstanding.add(z)
        m._failed_at[z] = now - 1  # a call to z failed since: its silence is confirmed
        m._watch_silence(now, views)
        assert m.table.peers[z].suspected
        assert not m.table.peers[y].suspected
        m._outstanding.discard(y)  # the call ended without an answer (no contact)
        m._watch_silence(now, views)
        assert m.table.peers[y].suspected


async def test_a_node_whose_links_are_all_silent_is_deaf_though_its_calls_are_on_their_way(
    anyio_backend: Any,
) -> None:
    """Every watched link silent, each with a call of ours on its way: the silence is this
    node's own (it cannot hear), so they are offline here and told to nobody (``unheard``),
    as with no call outstanding; a call on its way puts off a suspicion, not deafness."""
    async with open_swarm(6, partial_views=True, heartbeat_interval=60, peer_timeout=600) as swarm:
        await swarm.converged()
        x = by_name(swarm, "n1")
        m, views = x.membership, x.membership.views
        assert views is not None
        m.health = 0
        links = active_ids(x)
        assert len(links) >= 2
        now = anyio.current_time()
        for i in links:
            m.table.peers[i].heard = now - 500
            m._outstanding.add(i)
        m._watch_silence(now, views)
        assert m.deaths["unheard"] == len(links)
        assert m.deaths["suspected"] == 0
        assert not any(i in x.peers for i in links)
