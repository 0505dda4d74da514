"""Signed conversation events: the signed encoding, signing, checking, and the replay rules.

Every event a node authors (messages, ACKs, replies, errors, progress, custom kinds, summaries,
every team event) carries its author's Ed25519 signature in ``metadata["sig"]``::

    {"v": 1, "key": <64 hex: the raw public key>, "sig": <128 hex>, "seq": <int >= 0>}

Hex strings, not bytes, because synapse-p2p 2.5.0 keeps events as JSON (bytes would not
survive its log). The signed message is the domain ``DOMAIN_EVENT`` (see
:mod:`synapse_p2p.identity`) followed by the canonical MsgPack encoding of the array::

    [1, conversation_id, event_id, kind, author_id, payload, parent_id, created_at,
     metadata without "sig", seq]

``created_at`` as a float64; maps with their keys sorted (string keys by code point, which is
UTF-8 byte order; other keys after them, by their own encoding), recursively; arrays and tuples
alike. A 2.5.0 node's decode and re-encode (MsgPack, or its JSON log) keeps every one of these
as it was, for JSON-compatible payloads. The author's id (``peer.id``) must be
``sha256(key)``; the rest of the peer record (name, address...) is a snapshot, not signed.

The checking rules (:meth:`EventTrust.check`): a bad or malformed signature, or a key that is
not the author's, is refused; an unsigned event is refused when its author id is verified (this
node's own id, an id that proved its key in a handshake, or one we accepted a signed event
from) or when a swarm secret is set; otherwise it is kept with ``verified=False``. An event
dated more than :data:`MAX_FUTURE` seconds ahead is refused.

Replay (:class:`EventTrust`): per author, the :data:`SEQ_WINDOW` highest sequence numbers
accepted are remembered (for :data:`MAX_AUTHORS` authors, least recently heard forgotten
first); a pruned conversation leaves a tombstone (:data:`MAX_TOMBSTONES`, oldest forgotten
first) refusing events no newer than its last one.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import msgpack

from ..errors import BAD_REQUEST, RemoteError
from ..identity import DOMAIN_EVENT, Identity, node_id_of, verify
from ..wire._messages import _default as wire_default

if TYPE_CHECKING:
    from .._config import NodeConfig
    from .._seams import LocalNode
    from ..secure import SecurityPolicy
    from ..types import ConversationEvent

__all__ = [
    "MAX_AUTHORS",
    "MAX_FUTURE",
    "MAX_TOMBSTONES",
    "SEQ_WINDOW",
    "SIG_FIELD",
    "EventRefused",
    "EventTrust",
    "claims_signature",
    "may_move",
    "sign_event",
    "signed_message",
    "verify_event",
]

log = logging.getLogger(__name__)

SIG_FIELD: Final = "sig"
VERSION: Final = 1
#: Seconds an event's ``created_at`` may be ahead of this node's wall clock.
MAX_FUTURE: Final = 300.0
#: Sequence numbers remembered per author (the highest ones).
SEQ_WINDOW: Final = 256
#: Authors whose sequence numbers (and signing keys) are remembered.
MAX_AUTHORS: Final = 1024
#: Pruned conversations remembered.
MAX_TOMBSTONES: Final = 4096
#: Signatures already checked (in this process), so an event seen twice is verified once.
CHECKED_REMEMBERED: Final = 16384
_WARN_EVERY: Final = 60.0


# -- the signed encoding ---------------------------------------------------------------------


_PLAIN = (str, int, float, bool, bytes, type(None), dict, list, tuple)


def _key_order(key: Any) -> tuple[int, Any]:
    if isinstance(key, str):
        return (0, key)
    return (1, canonical(key))


def canonical(value: Any) -> bytes:
    """The canonical MsgPack encoding of ``value``: maps with sorted keys (see the module
    docs), at any depth (no recursion: nesting is bounded only by the value's size).
    Dataclasses and enums are encoded as the wire encodes them (maps, values)."""
    packer = msgpack.Packer(use_bin_type=True)
    parts: list[bytes] = []
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if not isinstance(item, _PLAIN):
            item = wire_default(item)  # TypeError for what the wire cannot carry either
        if isinstance(item, dict):
            parts.append(packer.pack_map_header(len(item)))
            keys = sorted(item, key=_key_order)
            stack.append(iter([x for key in keys for x in (key, item[key])]))
        elif isinstance(item, list | tuple):
            parts.append(packer.pack_array_header(len(item)))
            stack.append(iter(item))
        else:
            parts.append(packer.pack(item))
    return b"".join(parts)


def signed_message(event: ConversationEvent, seq: int) -> bytes:
    """The bytes signed for ``event`` with sequence number ``seq`` (see the module docs)."""
    meta = {k: v for k, v in event.metadata.items() if k != SIG_FIELD}
    body = [
        VERSION,
        event.conversation_id,
        event.event_id,
        event.kind,
        event.peer.id,
        event.payload,
        event.parent_id,
        float(event.created_at),
        meta,
        seq,
    ]
    return canonical(body)


def sign_event(identity: Identity, event: ConversationEvent, seq: int) -> ConversationEvent:
    """``event`` signed by ``identity`` (its author), marked verified."""
    if event.peer.id != identity.node_id:
        raise ValueError("an event is signed by its author")
    message = signed_message(event, seq)
    signature = identity.sign(DOMAIN_EVENT, message)
    # Valid by construction: other nodes of this process need not verify it again.
    CHECKED.note_valid(identity.public_key, message, signature)
    sig = {"v": VERSION, "key": identity.public_key.hex(), "sig": signature.hex(), "seq": seq}
    return replace(event, metadata={**event.metadata, SIG_FIELD: sig}, verified=True)


@dataclass(frozen=True, slots=True)
class _Sig:
    key: bytes
    signature: bytes
    seq: int


def _parse(raw: Any) -> _Sig:
    """The signature field, or ``ValueError`` saying what is wrong with it."""
    if not isinstance(raw, dict) or raw.get("v") != VERSION:
        raise ValueError("unsupported signature (need a map with v=1)")
    key, signature, seq = raw.get("key"), raw.get("sig"), raw.get("seq")
    if not isinstance(key, str) or len(key) != 64 or not isinstance(signature, str):
        raise ValueError("malformed signature key")
    if len(signature) != 128:
        raise ValueError("malformed signature")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise ValueError("malformed signature sequence number")
    try:
        return _Sig(bytes.fromhex(key), bytes.fromhex(signature), seq)
    except ValueError:
        raise ValueError("signature key and value must be hex") from None


def _author_signature(event: ConversationEvent) -> _Sig | None:
    """The parsed signature of ``event`` if it is well formed and by its author's key."""
    raw = event.metadata.get(SIG_FIELD)
    if raw is None:
        return None
    try:
        sig = _parse(raw)
    except ValueError:
        return None
    return sig if node_id_of(sig.key) == event.peer.id else None


def claims_signature(event: ConversationEvent) -> bool:
    """Whether ``event`` carries a well-formed signature by its author's key (not checked:
    for events this node stored after checking them, e.g. read back from its own log)."""
    return _author_signature(event) is not None


def verify_event(event: ConversationEvent) -> bool:
    """Whether ``event`` is signed, correctly, by its author (no other rule applied)."""
    sig = _author_signature(event)
    if sig is None:
        return False
    return verify(sig.key, DOMAIN_EVENT, signed_message(event, sig.seq), sig.signature)


class CheckedSignatures:
    """Signatures found valid, by the digest of (key, message, signature): the memo of a
    pure function, shared by every node of the process (a node running several ``Node``s, a
    test, a simulation, checks each event once). Bounded: the oldest are forgotten first."""

    def __init__(self, capacity: int = CHECKED_REMEMBERED) -> None:
        self.capacity = capacity
        self._valid: OrderedDict[bytes, None] = OrderedDict()

    def verify(self, key: bytes, message: bytes, signature: bytes) -> bool:
        digest = hashlib.sha256(key + signature + message).digest()
        if digest in self._valid:
            return True
        if not verify(key, DOMAIN_EVENT, message, signature):
            return False
        self._note(digest)
        return True

    def note_valid(self, key: bytes, message: bytes, signature: bytes) -> None:
        """Remember a signature known to be valid (one this process just made)."""
        self._note(hashlib.sha256(key + signature + message).digest())

    def _note(self, digest: bytes) -> None:
        if self.capacity > 0:
            self._valid[digest] = None
            while len(self._valid) > self.capacity:
                self._valid.popitem(last=False)


#: The process's memo of checked event signatures.
CHECKED = CheckedSignatures()


def may_move(event: ConversationEvent, holder_verified: bool) -> bool:
    """The one rule for state held by a party (a task's assignee or architect, an ask's
    reply slot): an unverified event never changes what a verified party holds."""
    return event.verified or not holder_verified


# -- checking and replay -----------------------------------------------------------------------


class EventRefused(RemoteError):
    """An event failed the signature or replay rules (``bad_request`` for its sender)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(BAD_REQUEST, message)
        self.reason = reason


@dataclass
class _Window:
    """The highest :data:`SEQ_WINDOW` sequence numbers accepted from one author."""

    key: bytes
    seqs: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)

    def add(self, seq: int) -> None:
        if seq in self.seqs:
            return
        if len(self.seqs) >= SEQ_WINDOW:
            if seq < self.heap[0]:
                return  # older than the window: nothing to remember it by
            self.seqs.discard(heapq.heappushpop(self.heap, seq))
        else:
            heapq.heappush(self.heap, seq)
        self.seqs.add(seq)


class EventTrust:
    """Signs this node's events and checks everyone else's; see the module documentation.

    ``policy`` says which ids proved their key in a handshake. Counters of refused and
    dropped events are in :attr:`dropped` (by reason); each is logged at DEBUG, with one
    WARNING per reason per minute.
    """

    def __init__(self, config: NodeConfig, local: LocalNode, policy: SecurityPolicy) -> None:
        self.config = config
        self.local = local
        self.policy = policy
        self.dropped: Counter[str] = Counter()
        self._seq = 0
        self._authors: OrderedDict[str, _Window] = OrderedDict()
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        self._warned: dict[str, float] = {}

    # -- signing --------------------------------------------------------------------------

    def next_seq(self) -> int:
        """A sequence number above every earlier one, across restarts too (microseconds of
        the wall clock, or one more than the last if the clock has not moved)."""
        self._seq = max(self._seq + 1, int(self.config.wall_clock() * 1_000_000))
        return self._seq

    def sign(self, event: ConversationEvent) -> ConversationEvent:
        """This node's ``event``, signed (``verified``), or as it is for an unverified node."""
        identity = self.local.identity
        if identity is None:
            return event
        signed = sign_event(identity, event, self.next_seq())
        self._window(identity.node_id, identity.public_key)
        return signed

    # -- checking ---------------------------------------------------------------------------

    def author_verified(self, author: str) -> bool:
        """Whether ``author`` is an id whose events must be signed."""
        identity = self.local.identity
        if identity is not None and author == identity.node_id:
            return True
        return author in self._authors or self.policy.seen_verified(author)

    def check(self, event: ConversationEvent) -> ConversationEvent:
        """``event`` with ``verified`` set, or :class:`EventRefused` (counted and logged)."""
        if event.created_at > self.config.wall_clock() + MAX_FUTURE:
            self.refuse("future", event, f"created_at is more than {MAX_FUTURE:.0f} s ahead")
        raw = event.metadata.get(SIG_FIELD)
        author = event.peer.id
        if raw is None:
            if self.author_verified(author):
                self.refuse("unsigned", event, "unsigned event under a verified author's id")
            if self.config.secured:
                self.refuse("unsigned", event, "unsigned event (this swarm requires signatures)")
            return event
        try:
            sig = _parse(raw)
        except ValueError as exc:
            self.refuse("malformed", event, str(exc))
        known = self._authors.get(author)
        if (known is None or known.key != sig.key) and node_id_of(sig.key) != author:
            self.refuse("wrong_key", event, "the signing key is not the author's")
        message = signed_message(event, sig.seq)
        if not CHECKED.verify(sig.key, message, sig.signature):
            self.refuse("bad_signature", event, "bad event signature")
        return replace(event, verified=True)

    def refuse(self, reason: str, event: ConversationEvent, message: str) -> Any:
        """Count, log and raise :class:`EventRefused`."""
        self.note_drop(reason, event, message)
        raise EventRefused(reason, f"event {event.event_id[:16]} refused: {message}")

    def note_drop(
        self, reason: str, event: ConversationEvent, message: str, *, warn: bool = True
    ) -> None:
        """Count and log an event this node does not keep (``warn``: worth one WARNING a
        minute per reason; otherwise DEBUG only)."""
        self.dropped[reason] += 1
        text = "dropping event %s of %s by %s: %s"
        args = (event.event_id[:16], event.conversation_id[:16], event.peer.id[:16], message)
        now = time.monotonic()
        if warn and now - self._warned.get(reason, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[reason] = now
            log.warning(text + " (%d %s so far; more at DEBUG)", *args, self.dropped[reason],
                        reason)  # fmt: skip
        else:
            log.debug(text, *args)

    # -- replay ---------------------------------------------------------------------------

    def _window(self, author: str, key: bytes) -> _Window:
        window = self._authors.get(author)
        if window is None or window.key != key:
            window = self._authors[author] = _Window(key)
        self._authors.move_to_end(author)
        while len(self._authors) > MAX_AUTHORS:
            self._authors.popitem(last=False)
        return window

    def replayed(self, event: ConversationEvent) -> bool:
        """Whether ``event`` (checked) is one already accepted, by its sequence number, or
        belongs to a pruned conversation (and is no newer than its last event)."""
        stamp = self._tombstones.get(event.conversation_id)
        if stamp is not None and event.created_at <= stamp:
            self.note_drop("pruned", event, "its conversation was pruned", warn=False)
            return True
        if not event.verified:
            return False
        window = self._authors.get(event.peer.id)
        seq = event.metadata[SIG_FIELD]["seq"]
        if window is not None and seq in window.seqs:
            self.dropped["duplicate"] += 1
            return True
        return False

    def accepted(self, event: ConversationEvent) -> None:
        """``event`` (checked) was stored or found stored: remember its sequence number."""
        if event.verified:
            raw = event.metadata[SIG_FIELD]
            self._window(event.peer.id, bytes.fromhex(raw["key"])).add(raw["seq"])

    def bury(self, conversation_id: str, last: float | None) -> None:
        """The conversation was pruned: refuse its events up to ``last`` (its newest)."""
        if last is None:
            return
        self._tombstones[conversation_id] = last
        self._tombstones.move_to_end(conversation_id)
        while len(self._tombstones) > MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)
