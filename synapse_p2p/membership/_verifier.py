"""Checking a claimed member before it counts: dial its address, see who answers there
(the secure session's proven id, or a 2.5.0 node's ``_synapse.info``) and, for a node that
signs, fetch its signed record (``_synapse.record``). At most ``limit`` checks run at once;
the candidates come from the :class:`~._table.PeerTable`'s queue, and each verdict goes back
to the :class:`~._service.Membership` that owns this verifier.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from .._spawn import start_soon
from .._validate import format_address
from ..errors import ProtocolError, SynapseError
from ..types import Peer
from ._signing import RECORD_ENDPOINT, MalformedProof, RecordProof, proof_in
from ._table import Candidate, same_address

if TYPE_CHECKING:
    from ._service import Membership

__all__ = ["AddressVerifier"]

log = logging.getLogger(__name__)


class AddressVerifier:
    """Verifies the owner's candidates while :meth:`attach` ed to a task group (the owner's):
    each check is a task of that group, started by :meth:`wake`; nothing waits for candidates
    meanwhile. Detaching when the group ends drops the checks in flight with it (their
    candidates are dropped with the table on the next run)."""

    def __init__(self, membership: Membership, limit: int) -> None:
        self._m = membership
        self.limit = limit
        self.busy: set[tuple[str, int]] = set()  # addresses being dialed
        self.checking: dict[str, Candidate] = {}  # signed candidates being dialed, by id
        self.dials = 0  # checks started
        self._tg: TaskGroup | None = None
        self._woken = False  # a pass over the candidates is due (one for a burst of wakes)

    def reset(self) -> None:
        self.busy.clear()
        self.checking.clear()
        self.dials = 0
        self._woken = False

    def attach(self, tg: TaskGroup | None) -> None:
        """Check candidates in ``tg`` from now on (``None``: the group ended, stop)."""
        self._tg = tg
        self._woken = False
        self.wake()

    def wake(self) -> None:
        """Candidates may be waiting: start checking them (``limit`` at once) in a moment."""
        if self._tg is not None and not self._woken:
            self._woken = True
            start_soon(self._tg, self._start_checks)

    async def _start_checks(self) -> None:
        self._woken = False
        # A group being cancelled (the node stopping) starts no more checks: without this,
        # each check cancelled on the way out would take the next candidate, up to all.
        await anyio.lowlevel.checkpoint_if_cancelled()
        m, tg = self._m, self._tg
        free = self.limit - len(self.busy)
        if tg is None or free <= 0:
            return  # (a check ending wakes us again)
        for candidate in m.table.next_candidates(m._now(), free, self.busy):
            start_soon(tg, self._verify, candidate)

    async def _verify(self, candidate: Candidate) -> None:
        m = self._m
        peer = candidate.peer
        proof = candidate.proof
        address = (peer.address, peer.port)
        self.dials += 1
        if proof is not None:
            self.checking[peer.id] = candidate
        try:
            answer = await self.identify(peer.address, peer.port)
            known = m.table.get(peer.id)
            back = known is not None and not known.alive and known.proof is not None
            if (
                answer is not None
                and answer[0] == peer.id
                and not answer[1]
                and (proof is None or back)
            ):
                fetched = await self.fetch_record(peer)
                if fetched is not None:
                    peer, proof = fetched
                elif back:
                    # An offline member is back only once it answers a call: a hung process
                    # still completes handshakes, and a session may outlive its node.
                    answer = None
            if (
                answer is not None
                and answer[0] == peer.id
                and proof is None
                and known is not None
                and known.alive
                and not same_address(known.peer, peer)
            ):
                # A live peer "moving": refuse while its current address still answers as it.
                current = await self.identify(known.peer.address, known.peer.port)
                if current is not None and current[0] == peer.id:
                    log.warning(
                        "refusing to move peer %s from %s to %s: it still answers at its address",
                        peer.id[:16],
                        _where(known.peer),
                        _where(peer),
                    )
                    answer = None
        finally:
            if self.checking.get(candidate.peer.id) is candidate:
                del self.checking[candidate.peer.id]
            self.busy.discard(address)
            self.wake()
        now = m._now()
        if answer is None or answer[0] != peer.id:
            m.table.verification_failed(address, now)
            return
        if proof is None and not m.trust.allows_unsigned(peer.id):
            m.trust.note(
                "unsigned",
                f"{_where(peer)} answers as {peer.id[:16]} but shows no signed record",
            )
            m.table.verification_failed(address, now)
            return
        legacy = answer[1]
        verdict = m.table.verified(peer, now, legacy=legacy, proof=proof)
        # News is pushed only when the peer announced itself to us (a join, a heartbeat or a
        # gossip from a member we did not know): others learned of it second-hand already.
        m._after(verdict, peer.id, peer, first_hand=candidate.direct)
        interval = m.config.heartbeat_interval
        if verdict == "joined" and legacy and interval is not None:
            await m._heartbeat(peer, interval)  # introduce ourselves

    async def fetch_record(self, claimed: Peer) -> tuple[Peer, RecordProof] | None:
        """The signed record served at ``claimed``'s address (``_synapse.record``), if it is
        ``claimed.id``'s, validly signed, and gives that address; else ``None``."""
        m = self._m
        try:
            with anyio.fail_after(min(m.config.call_timeout, 5.0)):
                data = await m.caller.call(claimed.address, claimed.port, RECORD_ENDPOINT, [], {})
            peer = Peer.from_dict(data)
            proof = proof_in(data)
        except (SynapseError, OSError, ProtocolError, MalformedProof) as exc:
            log.debug("no signed record at %s: %s", _where(claimed), exc)
            return None
        if proof is None or peer.id != claimed.id or not same_address(peer, claimed):
            return None
        if not m.config.admits(peer) or not m.trust.check(peer, proof):
            m.trust.note(
                "bad_signature",
                f"{_where(claimed)} served a bad peer record",
            )
            return None
        return peer, proof

    async def identify(self, host: str, port: int) -> tuple[str, bool] | None:
        """``(node_id, legacy)`` of whatever answers at ``host:port``, or ``None``."""
        m = self._m
        try:
            with anyio.fail_after(min(m.config.call_timeout, 5.0)):
                info = await m.caller.session_info(host, port)
                if info.get("node_id"):
                    return str(info["node_id"]), False
                details = await m.caller.call(host, port, "_synapse.info", [], {})
        except (SynapseError, OSError, TimeoutError) as exc:
            log.debug("could not verify %s:%s: %s", host, port, exc)
            return None
        if isinstance(details, dict) and isinstance(details.get("id"), str):
            return details["id"], True
        return None


def _where(peer: Peer) -> str:
    return format_address(peer.address, peer.port)
