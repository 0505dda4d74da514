"""Probes by id (gossip version 4): a link's probe names its caller by id and ``seq`` only,
and is taken as contact only on the caller's own secure channel and for the record held;
otherwise the callee asks for the whole record (virtual time, in-memory network)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p import Node, RemoteError
from synapse_p2p.membership._endpoints import GOSSIP_ENDPOINT, GOSSIP_VERSION
from tests.membership.test_virtual_time import Swarm, open_swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def count_probes(swarm: Swarm) -> Counter[str]:
    """Probes served by the swarm: ``by_id`` (taken), ``full_asked`` (answered ``full``),
    ``whole`` (a probe with the caller's whole record; and ``whole A -> B`` by link)."""
    served: Counter[str] = Counter()
    for node in swarm.nodes:
        m = node.membership
        probed = m.probed

        def counting(caller: Any, message: Any, connection: Any, probed: Any = probed) -> Any:
            answer = probed(caller, message, connection)
            served["full_asked" if answer.get("full") else "by_id"] += 1
            return answer

        m.probed = counting  # type: ignore[method-assign]
        send = m._gossip_one

        async def whole(peer: Any, message: Any, interval: float, send: Any = send) -> None:
            if message.get("push") and not message.get("members") and "address" in message["from"]:
                served["whole"] += 1
                served[f"whole {message['from']['id'][:8]} -> {peer.id[:8]}"] += 1
            await send(peer, message, interval)

        m._gossip_one = whole  # type: ignore[method-assign]
    return served


async def test_links_are_probed_by_id_once_the_callee_said_it_takes_them(
    anyio_backend: Any,
) -> None:
    async with open_swarm(8, partial_views=True) as swarm:
        await swarm.converged()
        await anyio.sleep(30)  # (the start's news is over; every link was probed)
        served = count_probes(swarm)
        offline = len([e for e in swarm.events if e[2] == "peer.offline"])
        await anyio.sleep(120)
        print("probes in 120 s idle:", served["by_id"], "by id,", served["whole"], "whole")
        # (at 8 members every round's digest goes to a link too: probes are few)
        assert served["by_id"] >= 20  # links are probed by id ...
        assert served["full_asked"] == 0
        whole = [n for k, n in served.items() if k.startswith("whole ")]
        assert max(whole, default=0) <= 1  # ... after one whole probe, the first on a link
        assert len([e for e in swarm.events if e[2] == "peer.offline"]) == offline  # none lost
        for node in swarm.nodes:  # and contact counts as it did
            m = node.membership
            for node_id in m.views.active_ids():  # type: ignore[union-attr]
                state = m.table.get(node_id)
                assert state is not None
                assert anyio.current_time() - state.heard < 20


async def test_a_probe_by_id_is_taken_only_on_the_callers_own_channel_and_for_the_record_held(
    anyio_backend: Any,
) -> None:
    async with open_swarm(4, partial_views=True) as swarm:
        await swarm.converged()
        a, b, c = swarm.nodes[1:4]
        seq_a = a.membership._proof().seq  # type: ignore[union-attr]

        async def probe(caller: Node, message: dict[str, Any]) -> Any:
            return await caller.membership.caller.call(
                "10.0.0.4", 7000, GOSSIP_ENDPOINT, [message], {}, timeout=5
            )

        assert c.membership.local.address == "10.0.0.4"
        by_id = {"v": 4, "from": {"id": a.node_id, "seq": seq_a}, "members": [], "push": True}
        state = c.membership.table.get(a.node_id)
        assert state is not None
        state.heard -= 100
        before = state.heard
        answer = await probe(a, {**by_id, "have": c.membership._proof().seq})  # type: ignore[union-attr]
        assert answer == {"v": GOSSIP_VERSION}  # taken; it holds our record of it: none sent
        assert state.heard > before
        # b names a: its channel proves b, not a
        state.heard -= 100
        before = state.heard
        assert (await probe(b, by_id))["full"] is True
        assert state.heard == before  # no contact
        # a record c does not hold (newer, or forged)
        newer = {**by_id, "from": {"id": a.node_id, "seq": seq_a + 5}}
        assert (await probe(a, newer))["full"] is True
        assert state.heard == before
        assert state.seq == seq_a
        # without ``have``: the callee's record rides the answer
        answer = await probe(a, by_id)
        assert answer["self"]["id"] == c.node_id
        # malformed
        with pytest.raises(RemoteError, match="probe by id"):
            await probe(a, {**by_id, "from": {"id": 7, "seq": "x"}})


async def test_a_probe_by_id_that_is_refused_is_sent_again_whole(anyio_backend: Any) -> None:
    """The caller holds ``slim`` for a member that then lost our record (restarted, say):
    the callee answers ``full``, and the caller probes again at once with its record."""
    async with open_swarm(4, partial_views=True) as swarm:
        await swarm.converged()
        a, c = swarm.nodes[1], swarm.nodes[3]
        ma = a.membership
        peer = ma.table.peers[c.node_id].peer
        ma._slim_ok[c.node_id] = ma._proof().seq  # type: ignore[union-attr]
        state = c.membership.table.get(a.node_id)
        assert state is not None
        proof = state.proof
        assert proof is not None
        state.proof = type(proof)(proof.seq - 1, proof.key, proof.sig, proof.extras)  # older
        served = count_probes(swarm)
        async with anyio.create_task_group() as calls:
            ma._probe_by_id(calls, [peer], 5.0, ma._proof().seq)  # type: ignore[union-attr]
        assert served["full_asked"] == 1
        assert served["whole"] == 1
        assert c.node_id in ma._slim_ok  # (its answer to the whole probe said slim again)


def as_version_3(node: Node) -> list[str]:
    """Make ``node`` answer gossip as a node of version 3 does: a probe by id is a malformed
    record (``bad_request``), and no answer says ``slim``. Returns the list of callers whose
    probe by id it refused."""
    registry = node._registry
    serve = registry._specs[GOSSIP_ENDPOINT].handler
    refused: list[str] = []

    async def version_3(message: Any, connection: Any = None) -> Any:
        if isinstance(message.get("from"), dict) and "address" not in message["from"]:
            refused.append(message["from"].get("id"))
            raise RemoteError("bad_request", "invalid peer: address must be a string")
        answer = await serve(message, connection)
        answer.pop("slim", None)
        answer["v"] = 3
        return answer

    registry.remove(GOSSIP_ENDPOINT)
    registry.add(version_3, GOSSIP_ENDPOINT, publish=False)
    return refused


async def test_a_node_of_gossip_version_3_is_never_probed_by_id(anyio_backend: Any) -> None:
    """A member whose answers do not say ``slim`` (an earlier version) gets whole probes;
    one that said it and then runs an earlier version (a rollback) refuses one probe by id
    from each caller at most, each then probes it whole again at once, and nobody loses it."""
    async with open_swarm(6, partial_views=True) as swarm:
        old = swarm.nodes[2]
        refused_old = as_version_3(old)
        await swarm.converged()
        await anyio.sleep(60)
        rolled = next(  # one that some member probes by id now
            n
            for n in swarm.nodes
            if n is not old and any(n.node_id in m.membership._slim_ok for m in swarm.nodes)
        )
        refused = as_version_3(rolled)
        served = count_probes(swarm)
        await anyio.sleep(120)
        assert refused_old == []
        for node in swarm.nodes:
            assert old.node_id not in node.membership._slim_ok
        assert len(refused) == len(set(refused))  # once per caller (then whole)
        assert not set(refused) & {
            n.node_id for n in swarm.nodes if rolled.node_id in n.membership._slim_ok
        }
        assert served["whole"] >= 1
        others = [n for n in swarm.nodes if n is not rolled]
        assert all(rolled.node_id in n.peers for n in others)
        assert not [e for e in swarm.events if e[2] == "peer.offline"]


async def test_at_idle_only_the_owner_of_a_link_probes_it(anyio_backend: Any) -> None:
    """The owner (lower id) probes a link it has not heard from first-hand, or not called,
    lately: the other end, which probes only if it has not heard from the owner for longer,
    never needs a connection of its own (heard of through third parties' digests, a neighbor
    used to go unprobed while it heard nothing from us)."""
    async with open_swarm(10, partial_views=True, gossip_fanout=1) as swarm:
        await swarm.converged()
        await anyio.sleep(60)  # (the start's news is over)
        by_owner: Counter[str] = Counter()
        for node in swarm.nodes:
            m = node.membership
            send = m._gossip_one

            async def sorting(
                peer: Any, message: Any, interval: float, send: Any = send, node: Node = node
            ) -> None:
                views = node.membership.views
                assert views is not None
                if message.get("push") and not message.get("members") and views.is_active(peer.id):
                    by_owner["owner" if node.node_id < peer.id else "other end"] += 1
                await send(peer, message, interval)

            m._gossip_one = sorting  # type: ignore[method-assign]
        await anyio.sleep(300)
        print("probes of links in 300 s idle:", dict(by_owner))
        assert by_owner["owner"] >= 100
        assert by_owner["other end"] == 0
