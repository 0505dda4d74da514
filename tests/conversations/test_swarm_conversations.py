"""Broadcasts, asks, ACKs, replies, custom events, sync and compaction across a swarm
(in-memory network, under trio and asyncio)."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import pytest

from synapse_p2p import ConversationEvent, Identity, Node, Peer, RemoteError
from synapse_p2p.conversations._signing import sign_event
from synapse_p2p.testing import open_swarm

pytestmark = pytest.mark.anyio


Net = Literal["memory", "tcp"]


@pytest.fixture(params=["memory", "tcp"])
def net(request: pytest.FixtureRequest) -> Net:
    """Every test runs on the in-memory network and on real loopback TCP."""
    param: Net = request.param
    return param


def reviewers(i: int) -> dict[str, Any]:
    return {"name": ["asker", "reviewer", "tester", "security"][i]}


async def install_ask(node: Node, *, fail: bool = False) -> None:
    @node.ask
    async def handle(task: str, context: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.01)
        if fail:
            raise RuntimeError(f"{node.name} cannot do {task!r}")
        return {"from": node.name, "answer": f"{task} looks fine", "context": context}


async def until(predicate: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_broadcast_ask_gets_acks_and_replies(anyio_backend: str, net: Net) -> None:
    async with open_swarm(4, transport=net, configure=reviewers) as swarm:
        asker, *workers = swarm.nodes
        for worker in workers:
            await install_ask(worker)
        acks: list[str] = []

        @asker.on("conversation.ack")
        async def on_ack(event: ConversationEvent) -> None:
            acks.append(event.peer.name)

        b = await asker.broadcast("synapse.ask", "Review this diff", context={"url": "u"})
        got = []
        with anyio.fail_after(10):
            async for reply in asker.iter_replies(b, timeout=10):
                got.append((reply.peer.name, reply.result["answer"]))
        assert sorted(got) == [
            ("reviewer", "Review this diff looks fine"),
            ("security", "Review this diff looks fine"),
            ("tester", "Review this diff looks fine"),
        ]
        assert sorted(r.peer.name for r in asker.replies(b)) == ["reviewer", "security", "tester"]
        await until(lambda: len(acks) == 3)

        # Every node converges on the same log: message, 3 ACKs, 3 replies, one id each.
        def ids(node: Node) -> list[tuple[str, str]]:
            return [(e.kind, e.event_id) for e in node.conversation(b)]

        await until(lambda: all(len(node.conversation(b)) == 7 for node in swarm.nodes))
        reference = sorted(ids(asker))
        assert [k for k, _ in reference].count("reply") == 3
        for node in workers:
            assert sorted(ids(node)) == reference


async def test_answers_go_to_the_origin_which_passes_them_on(anyio_backend: str, net: Net) -> None:
    """An ask's answers leave each replier for the origin only; the origin passes them on to
    the bystanders, so an ask costs O(N) calls, not one from every replier to every node."""
    async with open_swarm(6, transport=net) as swarm:
        asker, *workers = swarm.nodes
        for worker in workers:
            await install_ask(worker)
        sends: list[tuple[str, str, str, str]] = []  # sender, receiver, kind, author
        ids: list[tuple[str, str]] = []  # sender, event id
        for node in swarm.nodes:
            delivery = node._conversations.delivery
            original = delivery.send

            def send(peer: Peer, endpoint: str, args: list[Any], kwargs: dict[str, Any],
                     node: Node = node, original: Any = original, **options: Any,
                     ) -> None:  # fmt: skip
                data = args[0] if args and isinstance(args[0], dict) else {}
                author = data.get("peer", {}).get("id", "")
                sends.append((node.node_id, peer.id, str(data.get("kind")), author))
                ids.append((node.node_id, str(data.get("event_id"))))
                original(peer, endpoint, args, kwargs, **options)

            delivery.send = send  # type: ignore[method-assign]
        b = await asker.broadcast("synapse.ask", "Review this diff")
        with anyio.fail_after(10):
            while len(asker.replies(b)) < len(workers):
                await anyio.sleep(0.01)
        # every bystander still gets every ACK and reply
        await until(lambda: all(len(node.conversation(b)) == 11 for node in swarm.nodes))
        answers = [s for s in sends if s[2] in ("ack", "reply")]
        assert answers
        for sender, receiver, _kind, author in answers:
            if sender == author:  # a replier's own answer: to the origin only
                assert receiver == asker.node_id
            else:  # passed on: only by the origin, never back to its author
                assert sender == asker.node_id
                assert receiver != author
        # A member answering again is not passed on again: the origin is no amplifier.
        conv = workers[0]._conversations
        extra = conv.new_event(b.nonce, "again", "reply", {"result": 2}, parent_id=b.nonce)
        await conv.remember(extra, local=True)
        conv.deliver(extra)
        await until(lambda: any(e.event_id == "again" for e in asker.conversation(b)))
        assert (workers[0].node_id, "again") in ids
        assert (asker.node_id, "again") not in ids  # (sends are queued as the event is stored)


async def test_a_failing_handler_becomes_an_error_event(anyio_backend: str, net: Net) -> None:
    async with open_swarm(3, transport=net, configure=reviewers) as swarm:
        asker, good, bad = swarm.nodes
        await install_ask(good)
        await install_ask(bad, fail=True)
        errors: list[dict[str, Any]] = []

        @asker.on("conversation.error")
        async def on_error(event: ConversationEvent) -> None:
            errors.append(event.payload)

        b = await asker.broadcast("synapse.ask", "deploy")
        replies = [r async for r in asker.iter_replies(b, timeout=10)]
        assert [r.peer.name for r in replies] == ["reviewer"]
        await until(
            lambda: (
                errors
                == [
                    {"task": "deploy", "error": "tester cannot do 'deploy'", "type": "RuntimeError"}
                ]
            )
        )


async def test_custom_events_reach_everyone_and_fire_handlers(anyio_backend: str, net: Net) -> None:
    async with open_swarm(5, transport=net) as swarm:
        seen: dict[str, list[Any]] = {n.name: [] for n in swarm.nodes}
        for node in swarm.nodes:

            @node.on("conversation.status")
            async def on_status(event: ConversationEvent, node: Node = node) -> None:
                seen[node.name].append(event.payload["state"])

        event = await swarm[2].emit_conversation_event("room", "status", {"state": "green"})
        await until(lambda: all(v == ["green"] for v in seen.values()))
        for node in swarm.nodes:
            assert [e.event_id for e in node.conversation("room")] == [event.event_id]
            assert node.conversations() == ["room"]


async def test_emit_and_broadcast_do_not_wait_for_a_tarpit_peer(
    anyio_backend: str, net: Net
) -> None:
    async with open_swarm(3, transport=net) as swarm:
        a, b, tarpit = swarm.nodes
        release = anyio.Event()

        @tarpit.endpoint("_synapse.conversation.event", publish=False)
        async def hang(event: Any) -> None:
            await release.wait()

        @tarpit.endpoint("synapse.ask", publish=False)
        async def hang_ask(task: str, context: Any = None, broadcast: Any = None) -> None:
            await release.wait()

        with anyio.fail_after(1):
            for i in range(20):
                await a.emit_conversation_event("c", "tick", {"i": i})
            await a.broadcast("synapse.ask", "anything")
        await until(lambda: len(b.conversation("c")) == 20)
        release.set()


async def test_sync_pages_through_a_long_conversation(anyio_backend: str, net: Net) -> None:
    # 10,000 events of a, signed by a's key before the swarm starts (so that the sync below
    # begins before anti-entropy would find them).
    key = Identity.generate()
    author = Peer(id=key.node_id, address="127.0.0.1", port=1, swarm="test", team="default")
    events = []
    for i in range(10_000):
        event = ConversationEvent(
            "long", f"e{i:05d}", "line", author, {"i": i}, created_at=1000.0 + i
        )
        events.append(sign_event(key, event, i))
    options = [{"identity": key}, {}]
    async with open_swarm(2, transport=net, configure=lambda i: options[i]) as swarm:
        a, b = swarm.nodes
        # Written on a alone (no delivery), then synced to b, page by page.
        await a.conversation_log.append_many(events)
        new = await b.sync_conversation(b.peers[a.node_id], "long")
        assert new == 10_000
        assert [e.event_id for e in b.conversation("long")] == [e.event_id for e in events]
        assert await b.sync_conversation(b.peers[a.node_id], "long") == 0  # idempotent


async def test_compaction_keeps_head_and_tail_and_refuses_compacted_events(
    anyio_backend: str, net: Net
) -> None:
    async with open_swarm(
        2, transport=net, conversation_max_events=10, conversation_keep_recent=3
    ) as swarm:
        a, b = swarm.nodes
        compacted = anyio.Event()

        @b.on("conversation.compacted")
        async def on_compacted(summary: ConversationEvent) -> None:
            compacted.set()

        bc = await a.broadcast("topic.start", "hello")
        for i in range(12):
            await a.emit_conversation_event(bc, "line", {"i": i})
        with anyio.fail_after(10):
            await compacted.wait()
        await until(lambda: any(e.payload.get("i") == 11 for e in b.conversation(bc)))
        await until(lambda: len(b.conversation(bc)) <= 10)
        log = b.conversation(bc)
        assert log[0].kind == "message"
        assert any(e.kind == "summary" for e in log)
        assert [e.payload.get("i") for e in log if e.kind == "line"][-3:] == [9, 10, 11]
        # A peer that still has the compacted events cannot bring them back.
        before = {e.event_id for e in b.conversation(bc)}
        await b.sync_conversation(b.peers[a.node_id], bc)
        assert {e.event_id for e in b.conversation(bc)} <= before | {
            e.event_id for e in a.conversation(bc)
        }
        assert len(b.conversation(bc)) <= 10


async def test_bad_events_get_clear_errors(anyio_backend: str, net: Net) -> None:
    async with open_swarm(1, transport=net, max_upload_size=64 * 1024) as swarm:
        node = swarm[0]
        outsider = node.self_peer().to_dict() | {"id": "x" * 64, "swarm": "other"}
        event = {
            "conversation_id": "c",
            "event_id": "e",
            "kind": "k",
            "peer": outsider,
            "payload": {},
            "parent_id": None,
            "created_at": 1.0,
            "metadata": {},
        }
        with pytest.raises(RemoteError, match="different swarm") as info:
            await node.call_peer(node.self_peer(), "_synapse.conversation.event", event)
        assert info.value.code == "bad_request"
        with pytest.raises(RemoteError, match="'payload' must be a map"):
            await node.call_peer(
                node.self_peer(),
                "_synapse.conversation.event",
                event | {"payload": [1], "peer": node.self_peer().to_dict()},
            )
        with pytest.raises(ValueError, match="peers accept at most"):
            await node.emit_conversation_event("c", "big", {"blob": b"x" * 100_000})
        assert node.conversation("c") == []


async def test_fetch_a_peers_agent_card(anyio_backend: str, net: Net) -> None:
    async with open_swarm(2, transport=net) as swarm:
        a, b = swarm.nodes
        a.artifact(
            "agent-card",
            {"name": "reviewer", "capabilities": ["code-review"]},
            mime_type="application/vnd.synapse.agent-card+json",
        )
        card = await b.fetch_artifact(b.peers[a.node_id], "agent-card")
        assert card.content == {"name": "reviewer", "capabilities": ["code-review"]}
        assert (card.size, card.encoding) == (50, "json")
        with pytest.raises(RemoteError, match="unknown artifact: nope"):
            await b.fetch_artifact(b.peers[a.node_id], "nope")


async def test_forged_replies_cannot_grow_memory_without_bound(
    anyio_backend: str, net: Net
) -> None:
    async with open_swarm(1, transport=net, conversation_max_conversations=500) as swarm:
        node = swarm[0]
        book = node._conversations.book
        me = node.self_peer().to_dict()
        secured = node.config.secured  # then unsigned replies are refused outright

        errors: list[RemoteError] = []

        async def forge(i: int) -> None:
            forged = me | {"id": f"{i:064x}"}
            try:
                await node.call_peer(
                    node.self_peer(), "_synapse.broadcast.reply", f"nonce-{i}", forged
                )
            except RemoteError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(3000):
                tg.start_soon(forge, i)
        assert len(book._states) <= book.max_broadcasts
        assert node.peers == {}  # authors of replies are never added as peers
        with anyio.fail_after(5):
            while len(node.conversations()) > 500:
                await anyio.sleep(0.01)
        assert len(node.conversations()) == (0 if secured else 500)
        assert len(errors) == (3000 if secured else 0)
        assert all(exc.code == "bad_request" for exc in errors)


async def test_an_origin_not_yet_verified_still_gets_the_ack_and_the_reply(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command-line asker joins and broadcasts at once: the receiver has not verified it
    yet, but the answers to its own question still reach it (ACK first, then the reply).
    Without a secret only: with one, a node that is not a verified member is never dialed on
    a message's word (``Membership.dialable``)."""
    monkeypatch.delenv("SYNAPSE_SECRET", raising=False)
    from synapse_p2p import Broadcast, Client
    from synapse_p2p.conversations._ids import new_nonce

    asker = Node(name="asker", swarm="s", bind="127.0.0.1", heartbeat_interval=None)
    worker = Node(name="worker", swarm="s", bind="127.0.0.1", heartbeat_interval=None)
    await install_ask(worker)
    async with asker, worker:
        got: list[str] = []
        done = anyio.Event()

        @asker.on("conversation.event")
        async def on_event(event: ConversationEvent) -> None:
            if event.peer.id == worker.node_id:
                got.append(event.kind)
                if event.kind == "reply":
                    done.set()

        assert not worker.peers
        assert not asker.peers
        b = Broadcast(new_nonce(), asker.self_peer(), "synapse.ask")
        # The asker's message event, signed, as its broadcast would carry it.
        payload = {"endpoint": "synapse.ask", "args": ["check"], "kwargs": {"context": {}}}
        message = asker._conversations.new_event(
            b.nonce, b.nonce, "message", payload, peer=b.origin
        )
        wire = b.to_dict() | {"sig": message.metadata["sig"]}
        async with Client("127.0.0.1", worker.port) as client:
            answer = await client.call("synapse.ask", "check", context={}, broadcast=wire)
        assert answer == {"accepted": True, "deferred": True}
        with anyio.fail_after(10):
            await done.wait()
        assert sorted(got) == ["ack", "reply"]
        assert [r.peer.name for r in asker.replies(b)] == ["worker"]


async def test_iter_replies_waits_for_a_late_ack_after_a_fast_reply(anyio_backend: str) -> None:
    """A fast peer ACKs and replies before a slower peer's ACK arrives: iteration does not
    end on the fast peer's reply alone."""
    async with open_swarm(3, configure=lambda i: {"name": ["asker", "fast", "slow"][i]}) as swarm:
        asker, fast, slow = swarm.nodes
        await install_ask(fast)
        await install_ask(slow)
        receive = slow._registry.pre_dispatch
        assert receive is not None

        async def late(request: Any, connection: Any) -> Any:
            await anyio.sleep(0.1)  # the broadcast reaches this peer late
            return await receive(request, connection)

        slow._registry.pre_dispatch = late
        b = await asker.broadcast("synapse.ask", "review")
        with anyio.fail_after(10):
            names = [reply.peer.name async for reply in asker.iter_replies(b, timeout=10)]
        assert sorted(names) == ["fast", "slow"]
