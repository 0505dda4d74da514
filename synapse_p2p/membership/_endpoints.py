"""The membership endpoints a node serves: ``_synapse.join``, ``_synapse.heartbeat`` (both as
synapse-p2p 2.5.0 speaks them, with our signed record beside the 9-key dict), and our own
``_synapse.gossip``, ``_synapse.leave`` and ``_synapse.record``. Every direct claim goes
through :meth:`~._service.Membership.direct` (the rules of :mod:`._trust`): a refused one is a
``RemoteError(bad_request)`` to the caller and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BAD_REQUEST, RemoteError
from ..types import Peer
from ._signing import RECORD_ENDPOINT
from ._table import same_address

if TYPE_CHECKING:
    from ..rpc import Connection, EndpointRegistry
    from ._service import Membership

__all__ = [
    "GOSSIP_ENDPOINT",
    "GOSSIP_VERSION",
    "GRAFT_VERSION",
    "LEAVE_ENDPOINT",
    "PARTIAL_VERSION",
    "SLIM_VERSION",
    "SUMMARY_VERSION",
    "register",
]

GOSSIP_ENDPOINT = "_synapse.gossip"
#: Our extension: a node stopping cleanly says goodbye (never sent to 2.5.0 peers).
LEAVE_ENDPOINT = "_synapse.leave"
#: 2: a round's digest may be compact (``compact``: ``[id, seq, age]`` entries), answered
#: with full entries of what the caller lacks (or holds older), compact ones of the rest, and
#: the ids of the records the caller holds newer (``want``: in full in its next gossip to us).
#: 3: a compact digest with ``partial: true`` lists only the members that joined lately at the
#: sender: it is answered about those, and about the members that joined lately here. It is
#: sent only to a member whose answers say ``v`` 3 or more: a node of an earlier version
#: would take every member left out as missing and answer with them in full.
#: 4: a probe (an empty push) may name its caller by id and ``seq`` only (``from: {id,
#: seq}``), with ``have``: the ``seq`` of our record the caller holds. It is taken as contact
#: if it comes on the caller's own secure channel and names the record held here; else it is
#: answered ``full: true`` (the caller probes again with its whole record). Our own record
#: rides the answer only if ``have`` is not its ``seq``. Such a probe is sent only to a member
#: whose answer to a push said ``slim: true`` (it reads them, and our channel proves us).
#: 5: a push may carry ``graft: true``: its sender, whose link that fed it news is gone, asks
#: to be pushed news again (an earlier version ignores it, and lets the link lapse later).
#: 6: a whole compact digest may carry ``same: true``: if the caller holds every record we
#: hold, by the ``seq`` we name, and nothing newer, the answer is ``same: true`` (and our
#: record) instead of compact entries naming its records back to it. The caller asks so only
#: when no member of its ages by silence (the entries' ages would be news of life to it); an
#: earlier version ignores the key and answers in full.
#: 7: a round's digest may be a summary of the records the caller holds, the callee's aside
#: (``summary: [count, sum]``, see ``PeerTable.summary``; no ``compact``): answered ``same:
#: true`` if we hold the same records of the same members (the caller's aside) and no record
#: reached us lately, else ``differ: true`` (the caller sends its whole compact digest at
#: once). Sent only to a member whose answers say ``v`` 7 or more: an earlier version would
#: read it as a full digest that lists nobody, and answer with every member in full.
GOSSIP_VERSION = 7
#: The first version that answers ``partial`` digests.
PARTIAL_VERSION = 3
#: The first version that takes probes by id (``slim`` in its answers).
SLIM_VERSION = 4
#: The first version that takes ``graft: true``.
GRAFT_VERSION = 5
#: The first version that reads summaries.
SUMMARY_VERSION = 7


def register(m: Membership, registry: EndpointRegistry) -> None:
    """Serve ``m``'s endpoints on ``registry`` (unpublished: members call them)."""
    check = m.config.check_member

    async def join(
        peer: Any, record: Any = None, connection: Connection | None = None
    ) -> dict[str, Any]:
        incoming = Peer.from_dict(peer)
        check(incoming)
        m.messages_received += 1
        m.direct(incoming, peer if record is None else record, connection, "join")
        m.observed(connection)  # before our record goes into the answer
        peers = [p.to_dict() for p in m.peers.values() if p.id != incoming.id]
        peers.append(incoming.to_dict())
        ids = [m.local.node_id, *(p["id"] for p in peers)]
        return {
            "accepted": True,
            "self": m._record().to_dict(),
            "peers": peers,
            "records": m._proofs(ids),  # beside the dicts: 2.5.0 ignores this key
            # where the call came from, so a joiner with no route learns its address
            **({"observed": connection.ip} if connection is not None else {}),
        }

    async def heartbeat(
        peer: Any, record: Any = None, connection: Connection | None = None
    ) -> dict[str, Any]:
        incoming = Peer.from_dict(peer)
        check(incoming)
        m.messages_received += 1
        m.direct(incoming, peer if record is None else record, connection, "heartbeat")
        m.observed(connection)
        return {"ok": True, "self": m.local.info()}

    async def gossip(message: Any, connection: Connection | None = None) -> dict[str, Any]:
        if not isinstance(message, dict):
            raise RemoteError(BAD_REQUEST, "gossip message must be a map")
        caller = message.get("from")
        if isinstance(caller, dict) and "address" not in caller and message.get("push") is True:
            m.messages_received += 1
            return m.probed(caller, message, connection)  # a probe by id (version 4)
        sender = Peer.from_dict(caller)
        check(sender)
        m.messages_received += 1
        evidence = m.direct(sender, message.get("from"), connection, "gossip")
        m.observed(connection)
        known = m.table.get(sender.id)
        trusted = (
            evidence.first_hand
            and known is not None
            and known.alive
            and same_address(known.peer, sender)
        )
        push = message.get("push") is True
        entries = message.get("members")
        duplicate = False
        if push:
            refused, duplicate = m.take_push(entries, sender.id, trusted=trusted)
        else:
            refused = m._apply_digest(entries, sender.id, trusted=trusted)
        if trusted and "dead" in message:  # death notices: only a member's word counts
            m._take_deaths(message["dead"], sender.id)
        if trusted and "suspect" in message:  # suspicions: ditto
            m._take_suspicions(message["suspect"], sender.id)
        compact = message.get("compact")
        same = message.get("same") is True and message.get("partial") is not True
        reading = (
            None
            if compact is None
            else m._apply_compact(compact, sender.id, trusted=trusted, same=same)
        )
        if refused:  # an honest node relays only records it checked
            raise RemoteError(
                BAD_REQUEST,
                f"gossip: {refused} member record(s) with a bad signature were refused "
                "(the rest was taken)",
            )
        # Our own record too: gossip partners keep the freshest proof of our life. A push
        # (news only) is answered without a digest: news floods, it is not a push-pull.
        if push:
            if trusted and message.get("graft") is True:
                m.graft(sender.id)  # it lost a link that fed it news: push to it again
            answer = {"v": GOSSIP_VERSION, "self": m._signed_record()}
            if connection is not None and connection.node_id == sender.id:
                answer["slim"] = True  # its channel proves it: it may probe us by id
            if (
                duplicate
                and trusted
                and "dead" not in message
                and "suspect" not in message
                and "revived" not in message
                and m.prune(sender.id)
            ):
                # Nothing new: another neighbor's push brought us all of it first (news on
                # a tree, see membership.LAZY_ROUNDS). The sender stops pushing news to us
                # for a while.
                answer["lazy"] = True
            return answer
        if reading is None and "summary" in message:  # (version 7: the records held, summed)
            held = m.summary_answer(sender.id, message["summary"])
            if held is None:
                raise RemoteError(BAD_REQUEST, "gossip: malformed summary")
            return {"v": GOSSIP_VERSION, "same" if held else "differ": True,
                    "self": m._signed_record()}  # fmt: skip
        if reading is None:  # a full digest (a node of an earlier version): ours, in full
            return {"v": GOSSIP_VERSION, "members": m._digest(), "self": m._signed_record()}
        # A compact digest names records by seq: we answer with the records the caller lacks
        # (or holds older) in full, the others compact, and say which of the caller's we want:
        # they come in full in its next gossip to us (no third message).
        partial = message.get("partial") is True  # the members that joined lately only
        if same and m.in_step(reading, sender.id):
            # It holds what we hold: our answer would only name its records back to it (and
            # give it news of life of the members we heard from later).
            answer = {"v": GOSSIP_VERSION, "same": True, "self": m._signed_record()}
            if reading.fresher:
                answer["compact"] = reading.fresher
            return answer
        members, rest, older = m._answer_compact(reading.listed, sender.id, partial=partial)
        if older or (members and not partial):
            m.graft(sender.id)  # it lacked records: news goes to it again
        answer = {"v": GOSSIP_VERSION, "members": members, "compact": rest}
        answer["self"] = m._signed_record()
        if reading.want:
            answer["want"] = reading.want
        return answer

    async def leave(peer: Any, connection: Connection | None = None) -> dict[str, Any]:
        leaving = Peer.from_dict(peer)
        state = m.table.get(leaving.id)
        if state is None:
            return {"ok": True}
        evidence = m.trust.direct(leaving, peer, connection, "leave")
        # Only from the member itself, on its own channel (2.5.0 never says goodbye): a copy
        # of its record sent from its address, or over another channel, is not a goodbye.
        if evidence.first_hand and state.peer.port == leaving.port:
            m._gone(leaving.id)
        return {"ok": True}

    async def record() -> dict[str, Any]:
        return m._signed_record()

    registry.add(record, RECORD_ENDPOINT, publish=False)

    registry.add(leave, LEAVE_ENDPOINT, publish=False)
    registry.add(join, "_synapse.join", publish=False)
    registry.add(heartbeat, "_synapse.heartbeat", publish=False)
    registry.add(gossip, GOSSIP_ENDPOINT, publish=False)
