"""Joining through seeds: at start (retrying with back-off) and again whenever every member
has been lost. A seed's answer names the seed and its members, with their signed records
beside the 9-key dicts (2.5.0 seeds send the dicts alone); they are taken as a digest from a
member we dialed, by the :class:`~._service.Membership` that owns this joiner.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from .._validate import format_address
from ..errors import BAD_REQUEST, JoinError, RemoteError, SynapseError
from ..types import Peer
from ._gossip import MAX_DIGEST
from ._signing import PROOF_KEYS, MalformedProof, proof_in

if TYPE_CHECKING:
    from ._service import Membership

__all__ = ["SeedJoiner"]

log = logging.getLogger(__name__)


class SeedJoiner:
    """Joins the owner's configured seeds; :attr:`joined` the seeds that accepted us."""

    def __init__(self, membership: Membership) -> None:
        self._m = membership
        self.joined: set[tuple[str, int]] = set()

    async def join(self) -> None:
        """Join every seed now (concurrently); raise :class:`JoinError` if none answered."""
        m = self._m
        if not m.config.seeds:
            return
        reasons: dict[str, str] = {}
        joined = 0

        async def one(host: str, port: int) -> None:
            nonlocal joined
            try:
                await self.join_seed(host, port)
                joined += 1
            except (SynapseError, OSError, ValueError) as exc:
                reasons[format_address(host, port)] = str(exc) or type(exc).__name__

        async with anyio.create_task_group() as tg:
            for host, port in m.config.seeds:
                tg.start_soon(one, host, port)
        if not joined:
            raise JoinError(reasons)

    async def join_seed(self, host: str, port: int) -> None:
        """Join the seed at ``host:port`` and take its member list (as a digest from a
        member we dialed); ``RemoteError``/``ConnectError`` if it refuses or can't be
        reached."""
        m = self._m
        # Our own nodes take the signed record beside the peer dict; 2.5.0 nodes (no session)
        # would refuse the extra keyword, so they get the 9-key dict alone.
        ours = bool(await m.caller.session_info(host, port))
        proof = m._proof() if ours else None
        reply = await m.caller.call(
            host,
            port,
            "_synapse.join",
            [m._record().to_dict()],
            {"record": proof.to_wire()} if proof is not None else {},
            timeout=m.config.call_timeout,
        )
        if not isinstance(reply, dict) or not reply.get("accepted", False):
            raise RemoteError(BAD_REQUEST, f"seed {format_address(host, port)} refused the join")
        m.reported(reply.get("observed"))
        records = reply.get("records")
        records = records if isinstance(records, dict) else {}
        seed = Peer.from_dict(reply.get("self"))
        m.config.check_member(seed)
        where = format_address(host, port)
        try:
            seed_proof = proof_in(records.get(seed.id))
        except MalformedProof as exc:
            raise RemoteError(BAD_REQUEST, f"seed {where}: {exc}") from None
        if seed_proof is not None and not m.trust.check(seed, seed_proof):
            m.trust.note("bad_signature", f"seed {where} sent a badly signed record")
            raise RemoteError(BAD_REQUEST, f"seed {where}: its record has a bad signature")
        if seed_proof is None and not m.trust.allows_unsigned(seed.id):
            m.trust.note("unsigned", f"seed {where} sent no signed record")
            raise RemoteError(BAD_REQUEST, f"seed {where} sent no signed record of itself")
        self.joined.add((host, port))
        advertised = (seed.address, seed.port)
        if (
            advertised != (host, port)
            and seed_proof is not None
            and not any(p.id != seed.id and (p.address, p.port) == advertised
                        for p in m.records.values())
        ):  # fmt: skip
            # Reached at another address than it advertises (port forwarding, a multi-homed
            # host): our channel to host:port proved its id, so when its own address cannot
            # be connected to, it is dialed here (the check of its record below included).
            # Never for an address a member of ours holds: that member keeps it.
            m.caller.alias(advertised, (host, port), seed.id)
        if (seed.address, seed.port) == (host, port):
            legacy = m.caller.is_legacy(host, port)
            verdict = m.table.verified(seed, m._now(), legacy=legacy, proof=seed_proof)
            m._after(verdict, seed.id, seed, first_hand=False)
        elif seed_proof is not None:
            verdict = m.table.claim_signed(seed, seed_proof, m._now(), direct=False)
            m._after(verdict, seed.id, seed)
        else:
            m._claim(seed, direct=False)
        peers = reply.get("peers")
        if isinstance(peers, list):
            # The seed is the node we chose to dial: its member list is taken like a digest
            # from a verified peer (2.5.0 seeds send no age: heard now).
            digest = []
            for p in peers[: m.table.max_peers]:
                if isinstance(p, dict):
                    entry = dict(p, age=p.get("age", 0.0))
                    extra = records.get(p.get("id"))
                    if isinstance(extra, dict):
                        entry.update({k: extra[k] for k in PROOF_KEYS if k in extra})
                    digest.append(entry)
            # Read whole, in digests of MAX_DIGEST (what one digest read takes), up to the
            # table's size: past MAX_DIGEST members a joiner would otherwise miss the newest
            # ones (the list is oldest first) until the rounds' digests brought them.
            for start in range(0, len(digest), MAX_DIGEST):
                if start:
                    await anyio.lowlevel.checkpoint()  # (each chunk checks its signatures)
                m._apply_digest(digest[start : start + MAX_DIGEST], seed.id, trusted=True)
        if m.views is not None:
            m.views.seeded(seed.id)

    async def run(self) -> None:
        """Join the seeds at start (retrying with back-off) and again whenever every peer has
        been lost (partition healing)."""
        m = self._m
        backoff = 0.5
        lonely_since: float | None = None
        while True:
            now = m._now()
            alive = any(s.alive for s in m.table.peers.values())
            if not self.joined or (
                not alive
                and lonely_since is not None
                and now - lonely_since >= m.config.peer_timeout / 4
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
                # (look again: members may have come or gone while it joined)
                now = m._now()
                alive = any(s.alive for s in m.table.peers.values())
            if alive:  # (until a member is lost: then look again)
                lonely_since = None
                await m.member_lost()
                continue
            if lonely_since is None:
                lonely_since = now
            await anyio.sleep(min(m.config.peer_timeout / 4, 5.0))
