"""The dashboard's model of a swarm, sans-IO: node events in, JSON-ready deltas out.

:class:`DashboardState` is fed what the observer node reports (peers joining, heartbeats,
going offline, conversation events) together with ``now`` (the driver's monotonic clock) and
keeps what the page shows: peers, conversations with a bounded timeline each, asks and their
progress, team tasks by state, and who talks to whom. Nothing here does I/O or reads a clock.

:meth:`DashboardState.snapshot` is the whole picture for a page that connects;
:meth:`DashboardState.drain` returns what changed since the previous drain (or ``None``), so the
server sends one coalesced delta per interval however many events arrived. Every collection is
bounded: the oldest conversation (and its ask or task) is forgotten first, timelines keep their
last events, and peers offline for long are dropped.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from ..teams import TaskFold
from ..types import ConversationEvent, NodeKind, Peer
from ._board import apply_task_event
from ._text import clip, describe_event

__all__ = ["DashboardState", "Limits", "describe_event"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of a :class:`DashboardState` (all counts)."""

    conversations: int = 300
    events_per_conversation: int = 200
    peers: int = 2000
    links: int = 1000
    flows_per_delta: int = 60
    events_per_delta: int = 2000
    offline_retention: float = 600.0


def _shown(peer: Peer) -> tuple[Any, ...]:
    """What a page shows of a peer record, but its ``last_seen`` (``verified`` included,
    which ``Peer`` equality leaves out)."""
    return (peer.name, peer.address, peer.port, peer.kind, peer.capabilities, peer.verified)


@dataclass(slots=True)
class _Peer:
    peer: Peer
    heard: float
    status: str = "alive"  # alive, suspect, offline
    offline_since: float = math.nan
    role: str | None = None
    description: str | None = None
    last_seen: float = 0.0  # wall clock, from the peer record

    def view(self) -> dict[str, Any]:
        peer = self.peer
        return {
            "id": peer.id,
            "name": clip(peer.name, 80),
            "address": f"{peer.address}:{peer.port}",
            "kind": peer.kind.value if isinstance(peer.kind, NodeKind) else str(peer.kind),
            "role": self.role,
            "capabilities": [clip(c, 60) for c in peer.capabilities[:20]],
            "status": self.status,
            "verified": peer.verified,  # proved its identity key (handshake or signed record)
            "path": "direct",  # (relays do not exist yet: every peer is dialed directly)
            "last_seen": self.last_seen,
        }


@dataclass(slots=True)
class _Conversation:
    cid: str
    kind: str = "conversation"  # ask, message, task, conversation
    title: str = ""
    started_by: str = ""
    started_at: float = 0.0
    last_at: float = 0.0
    count: int = 0
    events: deque[dict[str, Any]] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.cid,
            "kind": self.kind,
            "title": self.title,
            "started_by": self.started_by,
            "started_at": self.started_at,
            "last_at": self.last_at,
            "count": self.count,
        }


#: How many peer ids of each group (ACKed, replied...) an ask's view lists; counts are exact.
ASK_IDS_SHOWN = 50


@dataclass(slots=True)
class _Ask:
    cid: str
    title: str = ""
    origin: str = ""
    kind: str = "ask"
    acked: dict[str, None] = field(default_factory=dict)  # insertion-ordered sets
    replied: dict[str, None] = field(default_factory=dict)
    errors: dict[str, None] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        working = [p for p in self.acked if p not in self.replied and p not in self.errors]
        groups = {
            "acked": list(self.acked),
            "replied": list(self.replied),
            "errors": list(self.errors),
            "working": working,
        }
        return {
            "id": self.cid,
            "title": self.title,
            "origin": self.origin,
            "kind": self.kind,
            **{key: ids[:ASK_IDS_SHOWN] for key, ids in groups.items()},
            "counts": {key: len(ids) for key, ids in groups.items()},
        }


class DashboardState:
    """What the dashboard shows; see the module documentation.

    ``self_id`` is the observer's node id (it is drawn at the centre and never listed as a
    peer). ``suspect_after``: a peer not heard from for this long (seconds of ``now``) is
    shown as suspect until it is heard again or reported offline.
    """

    def __init__(
        self, self_id: str, *, suspect_after: float = 10.0, limits: Limits | None = None
    ) -> None:
        self.self_id = self_id
        self.suspect_after = suspect_after
        self.limits = limits or Limits()
        self.peers: dict[str, _Peer] = {}
        self.conversations: OrderedDict[str, _Conversation] = OrderedDict()
        self.asks: dict[str, _Ask] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self._folds: dict[str, TaskFold] = {}
        self.links: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.events_seen = 0
        self._changed_peers: set[str] = set()
        self._removed_peers: set[str] = set()
        self._changed_conversations: set[str] = set()
        self._removed_conversations: set[str] = set()
        self._new_events: deque[dict[str, Any]] = deque(maxlen=self.limits.events_per_delta)
        self._changed_links: set[tuple[str, str]] = set()
        self._removed_links: set[tuple[str, str]] = set()
        self._seen: dict[str, float] = {}  # peers whose last_seen alone changed
        self._flows: list[dict[str, Any]] = []
        self._forgotten: OrderedDict[str, None] = OrderedDict()  # recently pushed out

    # -- peers ------------------------------------------------------------------------------

    def peer_seen(self, peer: Peer, now: float) -> None:
        """``peer`` joined or sent a heartbeat: it is alive.

        A heartbeat that changes nothing shown but the peer's ``last_seen`` is sent to pages
        as a small ``seen`` entry, not as the peer's whole view (so a page does not redraw its
        peers for every heartbeat of a large swarm)."""
        if peer.id == self.self_id:
            return
        entry = self.peers.get(peer.id)
        if entry is None:
            if len(self.peers) >= self.limits.peers and not self._forget_one_peer():
                return
            entry = self.peers[peer.id] = _Peer(peer=peer, heard=now)
            self._removed_peers.discard(peer.id)
            self._changed_peers.add(peer.id)
        if entry.status != "alive" or _shown(entry.peer) != _shown(peer):
            self._changed_peers.add(peer.id)
        elif entry.last_seen != peer.last_seen:
            self._seen[peer.id] = peer.last_seen
        entry.peer, entry.heard, entry.status = peer, max(entry.heard, now), "alive"
        entry.last_seen = peer.last_seen

    def peer_heard(self, peer_id: str, heard: float, last_seen: float | None = None) -> None:
        """The node has evidence that the peer was alive at ``heard`` (the ``now`` clock):
        first hand or through gossip, and ``last_seen`` (wall clock) as ``node.peers`` has it
        now. In a large swarm a peer rarely calls the observer itself, so this, not its
        heartbeats alone, keeps it from being shown as suspect, and its "last seen" moving."""
        entry = self.peers.get(peer_id)
        if entry is None or entry.status == "offline":
            return
        entry.heard = max(entry.heard, heard)
        if last_seen is not None and last_seen > entry.last_seen:
            entry.last_seen = self._seen[peer_id] = last_seen

    def peer_offline(self, peer: Peer, now: float) -> None:
        """``peer`` was declared offline by the node."""
        entry = self.peers.get(peer.id)
        if entry is None or entry.status == "offline":
            return
        entry.status, entry.offline_since = "offline", now
        self._changed_peers.add(peer.id)

    def peer_info(self, peer_id: str, info: Any) -> None:
        """The peer's ``_node.info`` answer (its role and description), fetched by the driver."""
        entry = self.peers.get(peer_id)
        if entry is None or not isinstance(info, dict):
            return
        role = info.get("role")
        entry.role = clip(role, 80) if isinstance(role, str) else ""
        self._changed_peers.add(peer_id)

    def tick(self, now: float) -> None:
        """Age the peers: alive -> suspect when silent (and back once heard again), offline
        ones forgotten after a while."""
        for pid, entry in list(self.peers.items()):
            if entry.status == "offline":
                if now - entry.offline_since > self.limits.offline_retention:
                    self._drop_peer(pid)
                continue
            status = "suspect" if now - entry.heard > self.suspect_after else "alive"
            if status != entry.status:
                entry.status = status
                self._changed_peers.add(pid)

    def _drop_peer(self, pid: str) -> None:
        del self.peers[pid]
        self._changed_peers.discard(pid)
        self._seen.pop(pid, None)
        self._removed_peers.add(pid)

    def _forget_one_peer(self) -> bool:
        offline = [p for p, e in self.peers.items() if e.status == "offline"]
        if not offline:
            return False
        self._drop_peer(min(offline, key=lambda p: self.peers[p].offline_since))
        return True

    # -- conversations -----------------------------------------------------------------------

    def event(self, event: ConversationEvent) -> None:
        """A conversation event (any kind, from any peer; a duplicate is ignored)."""
        cid = event.conversation_id
        conv = self.conversations.get(cid)
        if conv is None:
            if cid in self._forgotten:
                return  # a late event of a conversation pushed out: not a new one
            conv = self._open_conversation(cid)
        elif event.event_id in conv.seen:
            return
        self.events_seen += 1
        row = describe_event(event)
        conv.seen.add(event.event_id)
        conv.events.append(row)
        while len(conv.events) > self.limits.events_per_conversation:
            conv.seen.discard(conv.events.popleft()["id"])
        conv.count += 1
        at = row["at"]
        conv.last_at = max(conv.last_at, at)
        if conv.count == 1 or (at and at < conv.started_at):
            conv.started_at = at
        if event.kind == "message" or (event.kind == "task.offer" and not conv.title):
            conv.kind = "task" if event.kind == "task.offer" else row["label"]
            conv.title, conv.started_by = row["text"], event.peer.id
        elif conv.kind == "conversation" and event.kind.startswith("task."):
            conv.kind = "task"
        if not conv.started_by:
            conv.started_by = event.peer.id
        self.conversations.move_to_end(cid)
        self._changed_conversations.add(cid)
        self._new_events.append(row)
        if conv.kind in ("ask", "message"):
            self._ask_row(conv, row)
        if event.kind.startswith("task."):
            apply_task_event(self.tasks, self._folds, event, self._link)

    def compacted(self, summary: ConversationEvent) -> None:
        """The node compacted a conversation: its summary joins the timeline."""
        self.event(summary)

    def pruned(self, cid: str) -> None:
        """The node forgot a conversation (retention): so does the dashboard."""
        if cid in self.conversations:
            self._forget_conversation(cid)

    def _open_conversation(self, cid: str) -> _Conversation:
        while len(self.conversations) >= self.limits.conversations:
            self._forget_conversation(next(iter(self.conversations)))
        conv = self.conversations[cid] = _Conversation(cid)
        self._removed_conversations.discard(cid)
        return conv

    def _forget_conversation(self, cid: str) -> None:
        del self.conversations[cid]
        self._forgotten[cid] = None
        while len(self._forgotten) > 4 * self.limits.conversations:
            self._forgotten.popitem(last=False)
        self.asks.pop(cid, None)
        self.tasks.pop(cid, None)
        self._folds.pop(cid, None)
        self._changed_conversations.discard(cid)
        self._removed_conversations.add(cid)

    def timeline(self, cid: str) -> list[dict[str, Any]] | None:
        """The kept events of one conversation, oldest first (None if unknown)."""
        conv = self.conversations.get(cid)
        return None if conv is None else sorted(conv.events, key=lambda r: (r["at"], r["id"]))

    # -- asks -------------------------------------------------------------------------------

    def _ask_row(self, conv: _Conversation, row: dict[str, Any]) -> None:
        ask = self.asks.get(conv.cid)
        rows = [row]
        if ask is None:  # ACKs and replies may have come before the ask itself
            ask = self.asks[conv.cid] = _Ask(conv.cid)
            rows = list(conv.events)
        ask.title, ask.origin, ask.kind = conv.title, conv.started_by, conv.kind
        for item in rows:
            who = item["peer"]
            group = {"ack": ask.acked, "reply": ask.replied, "error": ask.errors}.get(item["kind"])
            if group is not None and who not in group and len(group) < self.limits.peers:
                group[who] = None
                if ask.origin and ask.origin != who:
                    self._link(ask.origin, who, item["kind"], conv.cid)

    def _link(self, source: str, target: str, kind: str, cid: str) -> None:
        key = (source, target) if source < target else (target, source)
        self.links[key] = self.links.get(key, 0) + 1
        self.links.move_to_end(key)
        self._removed_links.discard(key)
        while len(self.links) > self.limits.links:
            oldest = self.links.popitem(last=False)[0]
            self._changed_links.discard(oldest)
            self._removed_links.add(oldest)  # pages drop it too
        self._changed_links.add(key)
        if len(self._flows) < self.limits.flows_per_delta:
            self._flows.append({"from": source, "to": target, "kind": kind, "cid": cid})

    # -- output -----------------------------------------------------------------------------

    def _link_view(self, key: tuple[str, str]) -> dict[str, Any]:
        return {"a": key[0], "b": key[1], "count": self.links.get(key, 0)}

    def snapshot(self) -> dict[str, Any]:
        """Everything, for a page that just connected (conversations oldest first)."""
        return {
            "type": "snapshot",
            "self": self.self_id,
            "peers": [e.view() for e in self.peers.values()],
            "conversations": [c.view() for c in self.conversations.values()],
            "asks": [a.view() for a in self.asks.values()],
            "tasks": list(self.tasks.values()),
            "links": [self._link_view(k) for k in self.links],
            "events_seen": self.events_seen,
        }

    def drain(self) -> dict[str, Any] | None:
        """What changed since the last drain, or None when nothing did."""
        if not (
            self._changed_peers
            or self._removed_peers
            or self._changed_conversations
            or self._removed_conversations
            or self._changed_links
            or self._removed_links
            or self._seen
        ):
            return None
        changed = self._changed_conversations
        delta = {
            "type": "delta",
            "peers": [self.peers[p].view() for p in self._changed_peers if p in self.peers],
            "peers_removed": sorted(self._removed_peers),
            "seen": {p: t for p, t in self._seen.items() if p not in self._changed_peers},
            "conversations": [self.conversations[c].view() for c in changed],
            "conversations_removed": sorted(self._removed_conversations),
            "asks": [self.asks[c].view() for c in changed if c in self.asks],
            "tasks": [self.tasks[c] for c in changed if c in self.tasks],
            "events": list(self._new_events),
            "links": [self._link_view(k) for k in self._changed_links if k in self.links],
            "links_removed": [list(k) for k in sorted(self._removed_links)],
            "flows": self._flows,
            "events_seen": self.events_seen,
        }
        self._changed_peers, self._removed_peers, self._seen = set(), set(), {}
        self._changed_conversations, self._removed_conversations = set(), set()
        self._new_events.clear()
        self._changed_links, self._removed_links, self._flows = set(), set(), []
        return delta
