"""Signed peer records, sans-IO: the canonical encoding, signing and cached verification.

A node signs its own peer record (the 9-key peer dict without ``last_seen``) with its identity
key under :data:`~synapse_p2p.identity.DOMAIN_PEER_RECORD`. The proof travels as three keys,
``seq`` (int), ``key`` (the 32-byte Ed25519 public key, msgpack bin) and ``sig`` (64 bytes,
bin): inline in the maps only our nodes read (gossip ``from``, digest entries), and beside the
9-key dict where synapse-p2p 2.5.0 may read it (2.5.0 refuses a peer dict with an unknown key).

The signed bytes are the msgpack encoding, shortest forms (what every conforming encoder
writes by default), of the array::

    [1, id, address, port, swarm, team, name, kind, [capability, ...], seq]

rebuilt from the parsed values on both sides, so a record survives any re-encoding on the way.
A record with extras (:class:`~synapse_p2p._record_extras.RecordExtras`: the relays a node is
reserved on, whether it serves as a relay) carries them as more keys beside ``seq``/``key``/
``sig`` and signs ``[2, id, ..., seq, [relay, [[host, port, relay_id], ...]]]`` instead; a
record without them is signed as above, so the extras can neither be added to nor removed
from a record by anyone but its node.
``seq`` is the signing time in wall-clock milliseconds, made strictly increasing: a restarted
node's records are newer than its old ones. A record is re-signed when its content changes and
every ``refresh`` seconds (a fresh record is how third parties prove a member is still alive).
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from .._bounded import put_newest, touch
from .._record_extras import RecordExtras, extras_from_wire
from ..identity import DOMAIN_PEER_RECORD, Identity, verify
from ..types import Peer

__all__ = [
    "MAX_SEQ",
    "PROOF_KEYS",
    "RECORD_ENDPOINT",
    "SHARED_MEMO",
    "RecordProof",
    "RecordSigner",
    "RecordVerifier",
    "SignatureMemo",
    "proof_in",
    "signed_bytes",
]

RECORD_VERSION = 1
RECORD_VERSION_EXTRAS = 2
_NO_EXTRAS = RecordExtras()
MAX_SEQ = 2**63 - 1


#: Our extension: a node's own record with its signature (never called on 2.5.0 peers).
RECORD_ENDPOINT = "_synapse.record"


@dataclass(frozen=True, slots=True, weakref_slot=True)
class RecordProof:
    """A node's signature over its record: ``seq``, its public ``key`` and ``sig``, and the
    ``extras`` the signature covers beside the peer dict (relays: see the module
    documentation)."""

    seq: int
    key: bytes
    sig: bytes
    extras: RecordExtras = _NO_EXTRAS

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"seq": self.seq, "key": self.key, "sig": self.sig}
        if self.extras:
            wire.update(self.extras.to_wire())
        return wire


class MalformedProof(ValueError):
    """The ``seq``/``key``/``sig`` keys are present but not a well-formed proof."""


def proof_in(data: Any) -> RecordProof | None:
    """The proof carried in map ``data`` (``None`` if it has no ``sig`` key).

    Raises :class:`MalformedProof` (a ``ValueError``) for a ``sig`` with a bad ``seq`` or
    ``key``, a signature of the wrong size, or malformed extras (``relays``, ``relay``).
    """
    if type(data) is not dict or "sig" not in data:
        return None
    seq, key, sig = data.get("seq"), data.get("key"), data.get("sig")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise MalformedProof("peer record 'seq' must be an int in 0..2**63-1")
    if type(key) is not bytes or len(key) != 32:
        raise MalformedProof("peer record 'key' must be 32 bytes")
    if type(sig) is not bytes or len(sig) != 64:
        raise MalformedProof("peer record 'sig' must be 64 bytes")
    if "relays" not in data and "relay" not in data:
        proof = RecordProof(seq, key, sig)
    else:
        try:
            extras = extras_from_wire(data)
        except ValueError as exc:
            raise MalformedProof(str(exc)) from None
        proof = RecordProof(seq, key, sig, extras)
    return _shared(proof) if len(_NODES) > 1 else proof


#: Proofs decoded in this process, by signature, while some node still holds them: the nodes
#: of one process that hold a member's record share one proof (its key and signature bytes)
#: instead of a copy each, as they share the record's strings. Only while two nodes or more
#: run in the process (:func:`node_running`): for one, an entry costs more than it saves.
_DECODED: weakref.WeakValueDictionary[bytes, RecordProof] = weakref.WeakValueDictionary()
#: The nodes running in this process (their membership's ``id``).
_NODES: set[int] = set()


def node_running(owner: object, running: bool) -> None:
    """``owner`` (a node's membership) starts (``running``) or stops running."""
    if running:
        _NODES.add(id(owner))
    else:
        _NODES.discard(id(owner))


def _shared(proof: RecordProof) -> RecordProof:
    """The equal proof already decoded in this process, if one is held, else ``proof`` (kept
    for the next). Only an equal one: the same signature with another ``seq``, key or extras
    (a copied signature on other content, which fails its check) is never swapped."""
    held = _DECODED.get(proof.sig)
    if held is None:
        _DECODED[proof.sig] = proof
        return proof
    return held if held == proof else proof


#: The peers of signed records held in this process, by signature, while some node still holds
#: them: the nodes of one process that hold a member's record share one ``Peer`` (and its
#: capabilities list) instead of one each. Only while two nodes or more run in the process.
_HELD: weakref.WeakValueDictionary[bytes, Peer] = weakref.WeakValueDictionary()


def held_peer(peer: Peer, proof: RecordProof, seen: float | None = None) -> Peer:
    """The ``Peer`` another node of this process holds for ``proof`` if it is ``peer`` but
    for ``last_seen`` (the same content, equally verified), else ``peer`` with ``last_seen``
    ``seen`` (if given: when this node took the record), kept for the next. ``node.peers``
    shows each node's own ``last_seen`` (see :mod:`._members`)."""
    if len(_NODES) < 2:
        return peer if seen is None else replace(peer, last_seen=seen)
    held = _HELD.get(proof.sig)
    if held is not None and held.verified == peer.verified and _content(held) == _content(peer):
        return held
    if seen is not None:
        peer = replace(peer, last_seen=seen)
    _HELD[proof.sig] = peer
    return peer


#: The keys a proof travels as (to copy a proof from one map into another).
PROOF_KEYS = ("seq", "key", "sig", "relays", "relay")


def signed_bytes(peer: Peer, seq: int, extras: RecordExtras = _NO_EXTRAS) -> bytes:
    """The canonical bytes a record signature covers (see the module documentation)."""
    content = [
        RECORD_VERSION_EXTRAS if extras else RECORD_VERSION,
        peer.id,
        peer.address,
        peer.port,
        peer.swarm,
        peer.team,
        peer.name,
        peer.kind.value,
        list(peer.capabilities),
        seq,
    ]
    if extras:
        content.append(extras.signed())
    return msgpack.packb(content, use_bin_type=True)  # type: ignore[no-any-return]


def _content(peer: Peer) -> tuple[Any, ...]:
    return (
        peer.id,
        peer.address,
        peer.port,
        peer.swarm,
        peer.team,
        peer.name,
        peer.kind,
        tuple(peer.capabilities),
    )


class RecordSigner:
    """Signs this node's record once per change, and again every ``refresh`` seconds.

    ``wall_clock`` gives epoch seconds (``seq`` is milliseconds of it, strictly increasing);
    :meth:`proof` takes the caller's monotonic ``now`` to decide on a refresh.
    """

    def __init__(
        self, identity: Identity, *, wall_clock: Callable[[], float], refresh: float
    ) -> None:
        self.identity = identity
        self.wall_clock = wall_clock
        self.refresh = refresh
        self.signed = 0  # signatures made (statistics)
        self._content: tuple[Any, ...] | None = None
        self._proof: RecordProof | None = None
        self._at = 0.0

    def renew(self) -> None:
        """Sign a new record (a higher ``seq``) at the next :meth:`proof`, whatever its age:
        to refute a notice that this node is dead."""
        self._content = None

    def proof(self, peer: Peer, now: float, extras: RecordExtras = _NO_EXTRAS) -> RecordProof:
        """The proof for ``peer`` (this node's current record) with ``extras``, signing a new
        one if the content changed or the last one is older than ``refresh``."""
        content = (*_content(peer), extras)
        proof = self._proof
        if proof is not None and content == self._content and now - self._at < self.refresh:
            return proof
        last = -1 if proof is None else proof.seq
        seq = min(max(last + 1, int(self.wall_clock() * 1000)), MAX_SEQ)
        sig = self.identity.sign(DOMAIN_PEER_RECORD, signed_bytes(peer, seq, extras))
        self._proof = RecordProof(seq, self.identity.public_key, sig, extras)
        self._content = content
        self._at = now
        self.signed += 1
        return self._proof


class SignatureMemo:
    """Signatures found good: a bounded map (least recently used first out, an eighth at a
    time: see :mod:`synapse_p2p._bounded`) from a record's 64-byte signature to a 16-byte
    BLAKE2b digest of the signer's key and the signed bytes. A hit on the signature with
    another digest is a copied signature on changed content (or under another key). Finding
    other bytes with the digest of signed ones takes a second preimage of a 128-bit hash,
    and would still need the signer's signature over the first ones.

    One memo may serve every node of a process (:data:`SHARED_MEMO`): whether a signature
    checks is a property of the key, the bytes and the signature alone, so a record signed
    once and read by many nodes of one process is checked once, and held once."""

    def __init__(self, size: int) -> None:
        self._good: dict[bytes, bytes] = {}  # (see synapse_p2p._bounded)
        self.size = size

    def __len__(self) -> int:
        return len(self._good)

    def get(self, sig: bytes) -> bytes | None:
        """The digest remembered for ``sig`` (now the most recently used, once the memo holds
        more than an eighth of its size), or ``None``. Nodes running in other threads may
        share the memo (see :mod:`synapse_p2p._bounded`)."""
        return touch(self._good, sig, self.size)

    def put(self, sig: bytes, digest: bytes) -> None:
        """Remember that ``sig`` checked over the bytes of ``digest``."""
        put_newest(self._good, sig, digest, self.size)


#: The memo the nodes of this process share (:class:`~._trust.TrustGate`): about 170 bytes
#: a record (the signature, the digest, the entry), 1.4 MiB at most.
SHARED_MEMO = SignatureMemo(8192)


class RecordVerifier:
    """Checks record signatures, each distinct record once: a :class:`SignatureMemo` of the
    good ones (``cache_size`` of its own, or ``memo``, shared), keyed by the signature; a hit
    still compares the key and the signed bytes, through their digest, so a copied signature
    on changed content, or under another key, fails."""

    def __init__(self, cache_size: int = 4096, *, memo: SignatureMemo | None = None) -> None:
        self._memo = memo if memo is not None else SignatureMemo(cache_size)
        self.checked = 0  # signatures verified (cache misses)
        self.failed = 0

    def check(self, peer: Peer, proof: RecordProof) -> bool:
        """True if ``proof`` is ``peer.id``'s valid signature over ``peer`` at ``proof.seq``."""
        if len(proof.key) != 32:  # an Ed25519 public key (the wire allows no other)
            self.failed += 1
            return False
        message = signed_bytes(peer, proof.seq, proof.extras)
        digest = hashlib.blake2b(message, digest_size=16, key=proof.key).digest()
        cached = self._memo.get(proof.sig)
        if cached is not None:
            if cached == digest:
                return True
            self.failed += 1
            return False
        self.checked += 1
        if hashlib.sha256(proof.key).hexdigest() != peer.id or not verify(
            proof.key, DOMAIN_PEER_RECORD, message, proof.sig
        ):
            self.failed += 1
            return False
        self._memo.put(proof.sig, digest)
        return True
