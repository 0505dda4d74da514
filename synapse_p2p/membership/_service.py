"""Membership driver: join/heartbeat/gossip endpoints, probe rounds, verification, seeds.

Wire behaviour towards synapse-p2p 2.5.0 peers is theirs exactly: ``_synapse.join(peer)`` and
``_synapse.heartbeat(peer)`` with 9-key peer dicts, and a heartbeat to each of them every
``heartbeat_interval`` (they drop peers silent for 20 s). Among our own nodes, each round sends
``_synapse.gossip`` to a few random peers only (``fanout``), carrying a digest of the members
the sender knows and how long ago each was last heard from directly; liveness spreads through
those digests, so a node's message rate does not grow with the swarm. News of a member spreads
at once: a node that verifies a new member pushes its digest to ``fanout`` peers right away.
"""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._validate import format_address
from ..errors import BAD_REQUEST, JoinError, RemoteError, SynapseError
from ..types import NodeKind, Peer
from ._table import Candidate, PeerTable, Verdict

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["GOSSIP_ENDPOINT", "JoinError", "Membership"]

log = logging.getLogger(__name__)

GOSSIP_ENDPOINT = "_synapse.gossip"
GOSSIP_VERSION = 1
MAX_DIGEST = 256


def check_membership(node: Node, peer: Peer) -> None:
    """The reference's rule: swarm and team must be equal unless ours is None."""
    if node.swarm is not None and peer.swarm != node.swarm:
        raise RemoteError(BAD_REQUEST, "peer requested a different swarm")
    if node.team is not None and peer.team != node.team:
        raise RemoteError(BAD_REQUEST, "peer requested a different team")


_KIND_VALUES: dict[Any, str] = {kind: kind.value for kind in NodeKind}


def _entry(peer: Peer, age: float, legacy: bool) -> dict[str, Any]:
    """A digest entry: the peer dict without ``last_seen``, plus ``age`` and ``legacy`` (built
    directly, in ``Peer.to_dict``'s key order: digests are built for every gossip message)."""
    kind = peer.kind
    return {
        "id": peer.id,
        "address": peer.address,
        "port": peer.port,
        "swarm": peer.swarm,
        "team": peer.team,
        "name": peer.name,
        "kind": _KIND_VALUES.get(kind) or str(kind),
        "capabilities": list(peer.capabilities),
        "age": round(age, 3) if age > 0.0 else 0.0,
        "legacy": legacy,
    }


class Membership:
    """Keeps ``node.peers`` accurate. Owned by the node; see the module documentation."""

    def __init__(
        self,
        node: Node,
        *,
        fanout: int = 3,
        max_peers: int = 1024,
        verify_concurrency: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.fanout = fanout
        self.table = PeerTable(node.node_id, node.peer_timeout, max_peers=max_peers)
        self._verify_limit = verify_concurrency
        self._rng = rng or random.Random()
        self._candidates_ready = anyio.Event()
        self._push = anyio.Event()
        self._last_push = -math.inf
        self._seeds_joined: set[tuple[str, int]] = set()
        self._full_logged = -math.inf
        self._outstanding: set[str] = set()
        self._verifying: set[tuple[str, int]] = set()
        self._order: list[str] = []  # gossip partners still to visit in this pass
        self._news: dict[str, None] = {}
        self.messages_sent = 0
        self.messages_received = 0
        self._register()

    # -- endpoints ------------------------------------------------------------------------------

    def _register(self) -> None:
        node = self.node

        @node.endpoint("_synapse.join", publish=False)
        async def join(peer: Any) -> dict[str, Any]:
            incoming = Peer.from_dict(peer)
            check_membership(node, incoming)
            self.messages_received += 1
            self._claim(incoming, direct=True)
            peers = [p.to_dict() for p in node.peers.values() if p.id != incoming.id]
            peers.append(incoming.to_dict())
            return {"accepted": True, "self": node.self_peer().to_dict(), "peers": peers}

        @node.endpoint("_synapse.heartbeat", publish=False)
        async def heartbeat(peer: Any) -> dict[str, Any]:
            incoming = Peer.from_dict(peer)
            check_membership(node, incoming)
            self.messages_received += 1
            self._claim(incoming, direct=True)
            return {"ok": True, "self": node.node_info()}

        @node.endpoint(GOSSIP_ENDPOINT, publish=False)
        async def gossip(message: Any) -> dict[str, Any]:
            if not isinstance(message, dict):
                raise RemoteError(BAD_REQUEST, "gossip message must be a map")
            sender = Peer.from_dict(message.get("from"))
            check_membership(node, sender)
            self.messages_received += 1
            self._claim(sender, direct=True)
            known = self.table.get(sender.id)
            trusted = known is not None and known.alive and _same(known.peer, sender)
            self._apply_digest(message.get("members"), sender.id, trusted=trusted)
            return {"v": GOSSIP_VERSION, "members": self._digest()}

    # -- evidence ---------------------------------------------------------------------------

    def _now(self) -> float:
        return anyio.current_time()

    def _claim(self, peer: Peer, *, direct: bool) -> None:
        verdict = self.table.claim(peer, self._now(), direct=direct)
        self._after(verdict, peer.id, peer)

    def _after(
        self, verdict: Verdict, node_id: str, claimed: Peer, *, first_hand: bool = True
    ) -> None:
        """Act on a table verdict. ``first_hand``: we witnessed the peer ourselves (it called
        us, or answered at its address); only first-hand news of a member is pushed to every
        peer at once, second-hand news waits for the rounds."""
        state = self.table.get(node_id)
        if verdict == "heartbeat" and state is not None:
            state.peer.last_seen = self.node.wall_clock()
            self.node.emit_event("peer.heartbeat", state.peer)
        elif verdict == "joined" and state is not None:
            state.peer.last_seen = self.node.wall_clock()
            self.node.peers[node_id] = state.peer
            log.info("peer %s (%s) joined", state.peer.name or node_id[:8], _fmt(state.peer))
            self.node.emit_event("peer.joined", state.peer)
            if first_hand:
                self._news[node_id] = None
                self.push_soon()
        elif verdict == "candidate":
            self._candidates_ready.set()
        elif verdict == "full":
            now = self._now()
            if now - self._full_logged > 60:
                self._full_logged = now
                log.warning(
                    "peer table full (max_peers=%d): ignoring new peer %s at %s",
                    self.table.max_peers,
                    node_id[:16],
                    _fmt(claimed),
                )

    def _apply_digest(self, members: Any, sender_id: str, *, trusted: bool) -> None:
        """Take a member digest. From a verified peer (``trusted``: one we dialed at its
        verified address, or that called us from one) new members are taken as verified,
        which is how news spreads without every node dialing every newcomer; from anyone
        else they are only candidates."""
        if not isinstance(members, list):
            return
        now = self._now()
        skip = (sender_id, self.node.node_id)
        known = self.table.peers
        heard_indirectly = self.table.heard_indirectly
        for item in members[:MAX_DIGEST]:
            if type(item) is not dict:
                continue
            node_id, age = item.get("id"), item.get("age", 0.0)
            if type(node_id) is not str or node_id in skip:
                continue
            if type(age) not in (float, int) or not 0 <= age < 1e9:  # bool is not int here
                continue
            state = known.get(node_id)
            if (
                state is not None
                and state.alive
                and item.get("address") == state.peer.address
                and item.get("port") == state.peer.port
            ):  # the common case, without building a Peer
                heard_indirectly(node_id, now - age)
                continue
            if age >= self.node.peer_timeout:
                continue
            try:
                peer = Peer.from_dict(item)
                check_membership(self.node, peer)
            except (ValueError, TypeError, RemoteError):
                continue
            if trusted and (state is None or not state.alive):
                legacy = item.get("legacy") is True
                verdict = self.table.verified(peer, now - age, legacy=legacy)
                self._after(verdict, peer.id, peer, first_hand=False)
            else:
                self._claim(peer, direct=False)

    def _digest(self) -> list[dict[str, Any]]:
        """Alive members and how long ago each was last heard from directly (computed fresh
        for every message: a cached age would make a silent member look recently heard)."""
        now = self._now()
        states = self.table.alive()
        if len(states) > MAX_DIGEST:
            states = self._rng.sample(states, MAX_DIGEST)
        return [_entry(s.peer, now - s.heard, s.legacy) for s in states]

    def _news_digest(self) -> list[dict[str, Any]]:
        """Only the members verified since the last push (what a push carries)."""
        now = self._now()
        news, self._news = self._news, {}
        out = []
        for node_id in news:
            state = self.table.get(node_id)
            if state is not None and state.alive:
                out.append(_entry(state.peer, now - state.heard, state.legacy))
        return out

    @property
    def settling(self) -> bool:
        """True while claimed peers wait to be verified (queued or being dialed)."""
        return bool(self.table.candidates or self._verifying)

    def is_legacy(self, node_id: str) -> bool:
        """True if ``node_id`` is a verified synapse-p2p 2.5.0 peer (no gossip, no paging)."""
        state = self.table.get(node_id)
        return state is not None and state.legacy

    def discovered(self, peer: Peer) -> None:
        """A peer announced itself on the LAN (mDNS): like a direct claim, but its address
        is verified before it is dialed for anything else."""
        try:
            check_membership(self.node, peer)
        except RemoteError:
            return
        self._claim(peer, direct=True)

    def push_soon(self) -> None:
        """Spread first-hand news of members to every peer now, batched (one push at most
        every 50 ms), instead of waiting for the rounds."""
        self._push.set()

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Rounds, verification and seeds until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._verify_loop)
            if self.node.seeds:
                tg.start_soon(self._seed_loop)
            if self.node.heartbeat_interval is not None:
                tg.start_soon(self._round_loop, self.node.heartbeat_interval)
            task_status.started()

    async def _round_loop(self, interval: float) -> None:
        """Every ``interval``: gossip to ``fanout`` random peers, heartbeat 2.5.0 peers, retry
        one silent peer, expire. Calls run in the background with a timeout, so a slow peer
        never delays a round; a peer with a call still outstanding is skipped, so calls never
        pile up."""
        next_round = self._now()
        async with anyio.create_task_group() as calls:
            while True:
                self._round(calls, interval)
                for peer in self.table.expire(self._now()):
                    self.node.peers.pop(peer.id, None)
                    log.info("peer %s (%s) is offline", peer.name or peer.id[:8], _fmt(peer))
                    self.node.emit_event("peer.offline", peer)
                next_round += interval
                if next_round < self._now():  # a stalled loop: skip missed rounds
                    next_round = self._now() + interval
                while True:  # until the next round, serve pushes (at most one per 50 ms)
                    with anyio.move_on_after(next_round - self._now()):
                        await self._push.wait()
                    if self._now() >= next_round:
                        break
                    self._push = anyio.Event()
                    wait = self._last_push + 0.05 - self._now()
                    if wait > 0:
                        await anyio.sleep(min(wait, max(0.0, next_round - self._now())))
                    self._last_push = self._now()
                    news_ids = set(self._news)
                    news = self._news_digest()
                    if news:  # first-hand news goes to every peer, in one batch...
                        targets = self._reachable()
                        old = [p for p in targets if p.id not in news_ids]
                        new = [p for p in targets if p.id in news_ids]
                        self._gossip_to(calls, old, interval, news)
                        self._gossip_to(calls, new, interval)  # ...newcomers get everything
                self._push = anyio.Event()

    def _reachable(self) -> list[Peer]:
        """Alive members of ours (not 2.5.0) without a call outstanding."""
        return [
            s.peer
            for s in self.table.alive()
            if not s.legacy and s.peer.id not in self._outstanding
        ]

    def _pick(self, count: int) -> list[Peer]:
        """The next ``count`` gossip partners, round-robin through a shuffled member list
        (reshuffled each pass, as SWIM does): every member is contacted once per pass, so a
        dead member is probed within ``members / fanout`` rounds and a pooled connection to a
        partner is reused instead of reopened."""
        picked: list[Peer] = []
        refilled = False
        while len(picked) < count:
            if not self._order:
                if refilled:
                    break
                self._order = [p.id for p in self._reachable()]
                self._rng.shuffle(self._order)
                refilled = True
                if not self._order:
                    break
            state = self.table.get(self._order.pop())
            if (
                state is not None
                and state.alive
                and not state.legacy
                and state.peer.id not in self._outstanding
                and state.peer not in picked
            ):
                picked.append(state.peer)
        return picked

    def _round(self, calls: TaskGroup, interval: float) -> None:
        self._gossip_to(calls, self._pick(self.fanout), interval)
        for state in self.table.alive():
            if state.legacy and state.peer.id not in self._outstanding:
                self._outstanding.add(state.peer.id)
                calls.start_soon(self._heartbeat, state.peer, interval)
        offline = self.table.offline()
        if offline:  # try one silent peer per round: partitions heal by themselves
            self._claim(self._rng.choice(offline).peer, direct=False)

    def _call_timeout(self, interval: float) -> float:
        return min(self.node.call_timeout, max(interval, 0.5))

    def _gossip_to(
        self,
        calls: TaskGroup,
        peers: list[Peer],
        interval: float,
        members: list[dict[str, Any]] | None = None,
    ) -> None:
        if not peers:
            return
        message = {
            "v": GOSSIP_VERSION,
            "from": self.node.self_peer().to_dict(),
            "members": self._digest() if members is None else members,
        }
        for peer in peers:
            self._outstanding.add(peer.id)
            calls.start_soon(self._gossip_one, peer, message, interval)

    async def _gossip_one(self, peer: Peer, message: dict[str, Any], interval: float) -> None:
        self.messages_sent += 1
        try:
            reply = await self.node.call_peer(
                peer, GOSSIP_ENDPOINT, message, timeout=self._call_timeout(interval)
            )
        except (SynapseError, OSError) as exc:
            log.debug("gossip to %s failed: %s", _fmt(peer), exc)
            return
        finally:
            self._outstanding.discard(peer.id)
        self.table.responded(peer.id, self._now())
        if isinstance(reply, dict):
            self._apply_digest(reply.get("members"), peer.id, trusted=True)

    async def _heartbeat(self, peer: Peer, interval: float) -> None:
        self.messages_sent += 1
        try:
            await self.node.call_peer(
                peer,
                "_synapse.heartbeat",
                self.node.self_peer().to_dict(),
                timeout=self._call_timeout(interval),
            )
        except (SynapseError, OSError) as exc:
            log.debug("heartbeat to %s failed: %s", _fmt(peer), exc)
            return
        finally:
            self._outstanding.discard(peer.id)
        self.table.responded(peer.id, self._now())

    # -- verification -------------------------------------------------------------------------

    async def _verify_loop(self) -> None:
        busy = self._verifying
        limiter = anyio.Semaphore(self._verify_limit)
        async with anyio.create_task_group() as tg:
            while True:
                await self._candidates_ready.wait()
                self._candidates_ready = anyio.Event()
                while True:
                    free = self._verify_limit - len(busy)
                    batch = self.table.next_candidates(self._now(), free, busy) if free else []
                    if not batch:
                        break
                    for candidate in batch:
                        await limiter.acquire()
                        tg.start_soon(self._verify, candidate, busy, limiter)

    async def _verify(
        self, candidate: Candidate, busy: set[tuple[str, int]], limiter: anyio.Semaphore
    ) -> None:
        peer = candidate.peer
        address = (peer.address, peer.port)
        try:
            answer = await self._identify(peer.address, peer.port)
            known = self.table.get(peer.id)
            if (
                answer is not None
                and answer[0] == peer.id
                and known is not None
                and known.alive
                and not _same(known.peer, peer)
            ):
                # A live peer "moving": refuse while its current address still answers as it.
                current = await self._identify(known.peer.address, known.peer.port)
                if current is not None and current[0] == peer.id:
                    log.warning(
                        "refusing to move peer %s from %s to %s: it still answers at its address",
                        peer.id[:16],
                        _fmt(known.peer),
                        _fmt(peer),
                    )
                    answer = None
        finally:
            busy.discard(address)
            limiter.release()
            self._candidates_ready.set()
        now = self._now()
        if answer is None or answer[0] != peer.id:
            self.table.verification_failed(address, now)
            return
        legacy = answer[1]
        verdict = self.table.verified(peer, now, legacy=legacy)
        # News is pushed only when the peer announced itself to us (a join, a heartbeat or a
        # gossip from a member we did not know): others learned of it second-hand already.
        self._after(verdict, peer.id, peer, first_hand=candidate.direct)
        if verdict == "joined" and legacy and self.node.heartbeat_interval is not None:
            await self._heartbeat(peer, self.node.heartbeat_interval)  # introduce ourselves

    async def _identify(self, host: str, port: int) -> tuple[str, bool] | None:
        """``(node_id, legacy)`` of whatever answers at ``host:port``, or ``None``."""
        try:
            with anyio.fail_after(min(self.node.call_timeout, 5.0)):
                info = await self.node.pool.session_info(host, port)
                if info.get("node_id"):
                    return str(info["node_id"]), False
                details = await self.node.pool.call(host, port, "_synapse.info")
        except (SynapseError, OSError, TimeoutError) as exc:
            log.debug("could not verify %s:%s: %s", host, port, exc)
            return None
        if isinstance(details, dict) and isinstance(details.get("id"), str):
            return details["id"], True
        return None

    # -- seeds ----------------------------------------------------------------------------------

    async def join(self) -> None:
        """Join every seed now (concurrently); raise :class:`JoinError` if none answered."""
        if not self.node.seeds:
            return
        reasons: dict[str, str] = {}
        joined = 0

        async def one(host: str, port: int) -> None:
            nonlocal joined
            try:
                await self._join_seed(host, port)
                joined += 1
            except (SynapseError, OSError, ValueError) as exc:
                reasons[format_address(host, port)] = str(exc) or type(exc).__name__

        async with anyio.create_task_group() as tg:
            for host, port in self.node.seeds:
                tg.start_soon(one, host, port)
        if not joined:
            raise JoinError(reasons)

    async def _join_seed(self, host: str, port: int) -> None:
        reply = await self.node.pool.call(
            host,
            port,
            "_synapse.join",
            [self.node.self_peer().to_dict()],
            timeout=self.node.call_timeout,
        )
        if not isinstance(reply, dict) or not reply.get("accepted", False):
            raise RemoteError(BAD_REQUEST, f"seed {format_address(host, port)} refused the join")
        self._seeds_joined.add((host, port))
        seed = Peer.from_dict(reply.get("self"))
        check_membership(self.node, seed)
        if (seed.address, seed.port) == (host, port):
            legacy = self.node.pool.is_legacy(host, port)
            verdict = self.table.verified(seed, self._now(), legacy=legacy)
            self._after(verdict, seed.id, seed, first_hand=False)
        else:
            self._claim(seed, direct=False)
        peers = reply.get("peers")
        if isinstance(peers, list):
            # The seed is the node we chose to dial: its member list is taken like a digest
            # from a verified peer (2.5.0 seeds send no age: heard now).
            digest = [dict(p, age=p.get("age", 0.0)) for p in peers if isinstance(p, dict)]
            self._apply_digest(digest, seed.id, trusted=True)

    async def _seed_loop(self) -> None:
        """Join the seeds at start (retrying with back-off) and again whenever every peer has
        been lost (partition healing)."""
        backoff = 0.5
        lonely_since: float | None = None
        while True:
            now = self._now()
            alive = bool(self.table.alive())
            if not self._seeds_joined or (
                not alive
                and lonely_since is not None
                and now - lonely_since >= self.node.peer_timeout / 4
            ):
                try:
                    await self.join()
                    backoff = 0.5
                    lonely_since = None
                except JoinError as exc:
                    log.warning("%s; retrying in %.1f s", exc, backoff)
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
            if alive:
                lonely_since = None
            elif lonely_since is None:
                lonely_since = now
            await anyio.sleep(min(self.node.peer_timeout / 4, 5.0))


def _same(a: Peer, b: Peer) -> bool:
    return a.address == b.address and a.port == b.port


def _fmt(peer: Peer) -> str:
    return format_address(peer.address, peer.port)
