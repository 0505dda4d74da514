"""Who may say what about a member: the rules for peer records, sans-IO.

* **Direct claims** (a join, a heartbeat, the sender of a gossip message, a goodbye) name the
  caller's own id. They are believed only if the secure channel proved that id
  (``connection.node_id`` equals it) or they carry a valid record signed by it; only the
  former is *first-hand* (proof of life, a trusted gossip sender, a goodbye): a signed record
  over another channel or plaintext may be a replayed copy, so it is only news to verify by
  dialing. Otherwise:
  with a swarm secret they are refused; without one they are taken as an *unverified* member
  (synapse-p2p 2.5.0 peers sign nothing; a node with a ``node_id=`` of its own proves another
  id on its channel), unless the id was ever seen verified (on a channel,
  :class:`~synapse_p2p.secure.SecurityPolicy`, or by a valid signature here): then refused. An
  id seen on a channel is refused from anywhere but its own channel, even signed (no replay of
  its record). A bad signature is always refused.
* **Third-party entries** (gossip digests, a seed's peer list) are weighed in
  :func:`._gossip.read_digest` with :meth:`TrustGate.check` and :meth:`TrustGate.allows_unsigned`.

Every refusal is a ``RemoteError(bad_request)`` to the sender (direct) or a skipped entry
(third party), counted in :attr:`TrustGate.refused` and logged at most once per
``log_every`` seconds per kind.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._bounded import put_newest
from ..errors import BAD_REQUEST, RemoteError
from ._signing import SHARED_MEMO, MalformedProof, RecordProof, RecordVerifier, proof_in

if TYPE_CHECKING:
    from ..rpc import Connection
    from ..secure import SecurityPolicy
    from ..types import Peer

__all__ = ["Evidence", "TrustGate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Evidence:
    """How a direct claim proved its id: a checked ``proof`` and/or its ``channel``.

    ``first_hand``: the claimant itself is calling (its own channel, or an in-process call
    with no connection). A valid signature alone proves a record's content, not who sent it
    (anyone can replay a copy): without ``first_hand`` a claim is news to verify by dialing,
    never proof of life or a trusted sender.
    """

    proof: RecordProof | None
    channel: bool
    first_hand: bool = False

    @property
    def proven(self) -> bool:
        return self.channel or self.proof is not None


class TrustGate:
    """The rules of the module documentation, with their counters."""

    def __init__(
        self,
        *,
        secured: bool,
        policy: SecurityPolicy,
        clock: Callable[[], float],
        remember: int = 65536,
        log_every: float = 10.0,
    ) -> None:
        self.secured = secured
        self.policy = policy
        self.verifier = RecordVerifier(memo=SHARED_MEMO)
        self._clock = clock
        #: Ids seen with a good signature, oldest first (a plain dict: a third of the
        #: memory per member of an ``OrderedDict``; a hit moves its id last). Past
        #: ``remember`` ids the oldest eighth is forgotten.
        self._signers: dict[str, None] = {}
        self._remember = remember
        self._log_every = log_every
        self._logged: dict[str, float] = {}
        self._quiet: Counter[str] = Counter()
        #: Called with every record whose signature checks (see ``Membership.watch_records``).
        self.on_checked: Callable[[Peer, RecordProof], None] | None = None
        #: Refusals by kind (``bad_signature``, ``unsigned``, ``wrong_caller``, ``plaintext``,
        #: ``third_party``), direct and third-party together.
        self.refused: Counter[str] = Counter()

    # -- what we know -------------------------------------------------------------------------

    def seen(self, node_id: str) -> bool:
        """True if ``node_id`` ever proved its key (its channel, or a valid signature)."""
        return node_id in self._signers or self.policy.seen_verified(node_id)

    def allows_unsigned(self, node_id: str) -> bool:
        """Whether an unsigned, unproven record of ``node_id`` may be used at all."""
        return not self.secured and not self.seen(node_id)

    def check(self, peer: Peer, proof: RecordProof) -> bool:
        """True if ``proof`` is ``peer.id``'s valid signature over ``peer`` (cached)."""
        if not self.verifier.check(peer, proof):
            return False
        if self.on_checked is not None:
            self.on_checked(peer, proof)
        put_newest(self._signers, peer.id, None, self._remember)
        return True

    # -- direct claims ------------------------------------------------------------------------

    def direct(
        self, peer: Peer, carrier: Any, connection: Connection | None, what: str
    ) -> Evidence:
        """The evidence for a direct claim of ``peer`` (its proof read from map ``carrier``),
        or ``RemoteError(bad_request)`` saying why it is refused."""
        channel_id = connection.node_id if connection is not None else None
        own_channel = channel_id is not None and channel_id == peer.id
        if channel_id is not None and not own_channel and self.secured:
            self.refuse(
                "wrong_caller",
                f"{what} claims node {peer.id[:16]} but the caller proved it is node "
                f"{channel_id[:16]}",
            )
        try:
            proof = proof_in(carrier)
        except MalformedProof as exc:
            self.refuse("bad_signature", f"{what} from {peer.id[:16]}: {exc}")
        if proof is not None and not self.check(peer, proof):
            self.refuse(
                "bad_signature",
                f"{what}: the peer record of {peer.id[:16]} is not signed by that node's key",
            )
        if own_channel:
            return Evidence(proof, True, True)
        if self.policy.seen_verified(peer.id):
            if channel_id is None:
                kind, source = "plaintext", "a plaintext connection"
            else:
                kind, source = "wrong_caller", f"node {channel_id[:16]}"
            self.refuse(
                kind,
                f"{what}: node {peer.id[:16]} proved its id on a secure channel; a claim of its "
                f"id from {source} is refused",
            )
        if proof is None:
            if self.secured:
                self.refuse(
                    "unsigned",
                    f"{what}: this swarm has a secret; node {peer.id[:16]} must prove its id "
                    "(secure channel or a signed peer record)",
                )
            if peer.id in self._signers:
                self.refuse(
                    "unsigned",
                    f"{what}: node {peer.id[:16]} signs its peer records; an unsigned one is "
                    "refused",
                )
        return Evidence(proof, False, connection is None)

    # -- refusals -----------------------------------------------------------------------------

    def refuse(self, kind: str, message: str) -> Any:
        """Count and log (rate-limited) a refused direct claim, then raise it."""
        self.note(kind, message)
        raise RemoteError(BAD_REQUEST, message)

    def note(self, kind: str, message: str) -> None:
        """Count and log (rate-limited) a refusal."""
        self.refused[kind] += 1
        now = self._clock()
        if now - self._logged.get(kind, -math.inf) < self._log_every:
            self._quiet[kind] += 1
            return
        self._logged[kind] = now
        quiet = self._quiet.pop(kind, 0)
        more = f" (and {quiet} more like it)" if quiet else ""
        log.warning("refused peer record: %s%s", message, more)
