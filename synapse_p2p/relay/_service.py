"""The relay's side: reservations, circuits and the splice between two ends.

:meth:`RelayService.handle` serves one relay connection whose secure handshake is done (the
caller's node id verified; with a swarm secret only members get this far). Its first control
message decides what the connection is:

* ``{"op": "reserve"}``: a reservation. The node stays reachable through this relay while
  the connection lives and it sends ``reserve`` again within ``reservation_ttl`` seconds
  (each is answered ``{"ok": true, "ttl": ...}``). Circuits for it are announced on this
  connection: ``{"op": "incoming", "circuit": ID, "from": NODE_ID}``. A new reservation by
  the same node replaces the old one (its connection is closed).
* ``{"op": "connect", "to": NODE_ID}``: a circuit to a reserved node. The relay announces it
  and waits up to ``accept_timeout`` for the node to take it; then answers ``{"ok": true}``
  and splices the two connections.
* ``{"op": "accept", "circuit": ID}``: the reserved node taking a circuit announced to it
  (only that node may: the id is checked against the verified caller).

Refusals are ``{"ok": false, "code": ..., "error": ...}`` and close the connection; nothing
else on the relay is affected.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteStream

from ..errors import ConnectionLost, ProtocolError
from ._circuit import ControlStream
from ._protocol import DATA, END, ERROR, READY, RelayLimits, error_reply, frame

__all__ = ["RelayService", "RelayStatistics"]

log = logging.getLogger(__name__)

#: Seconds a circuit closed by the relay keeps reading its ends after the ``X`` frame, and
#: how many reads at most (see :func:`_linger`).
LINGER = 0.5
LINGER_READS = 1024

_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
#: How long a new relay connection has to send its first control message.
_FIRST_MESSAGE_TIMEOUT = 10.0
_RECEIVE = 256 * 1024


@dataclass(frozen=True, slots=True)
class RelayStatistics:
    """A snapshot of a relay: ``reservations`` and ``circuits`` now, ``circuits_total``
    opened, ``refused`` requests, ``bytes_relayed`` (both directions, all circuits)."""

    reservations: int
    circuits: int
    circuits_total: int
    refused: int
    bytes_relayed: int


@dataclass(eq=False)
class _Reservation:
    node_id: str
    control: ControlStream
    expires: float
    gone: anyio.Event = field(default_factory=anyio.Event)


@dataclass(eq=False)
class _Pending:
    origin: str
    target: str
    accepted: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    stream: ByteStream | None = None
    first: bytes = b""
    taken: bool = False


class _Closing(Exception):
    """Ends a splice: ``code``/``error`` go to both ends."""

    def __init__(self, code: str, error: str) -> None:
        super().__init__(error)
        self.code = code
        self.error = error


class RelayService:
    """Reservations and circuits of one relay, under ``limits``; see the module
    documentation."""

    def __init__(self, limits: RelayLimits | None = None) -> None:
        self.limits = limits or RelayLimits()
        self._reservations: dict[str, _Reservation] = {}
        self._pending: dict[str, _Pending] = {}
        self._per_peer: dict[str, int] = {}
        self._circuits = 0
        self._circuits_total = 0
        self._refused = 0
        self._bytes = 0

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            len(self._reservations),
            self._circuits,
            self._circuits_total,
            self._refused,
            self._bytes,
        )

    def reserved(self) -> list[str]:
        """The node ids reserved now."""
        return list(self._reservations)

    async def handle(self, stream: ByteStream, node_id: str) -> None:
        """Serve one relay connection from ``node_id`` until it ends (it is closed then).
        Errors in the peer's input are answered and logged, never raised; cancellation
        closes the connection (and a circuit it carries)."""
        control = ControlStream(stream)
        try:
            try:
                with anyio.fail_after(_FIRST_MESSAGE_TIMEOUT):
                    message = await control.receive()
            except TimeoutError:
                return
            except ProtocolError as exc:
                await self._refuse(control, "bad_request", str(exc))
                return
            op = message.get("op")
            if op == "reserve":
                await self._reservation(control, node_id)
            elif op == "connect":
                await self._connect(control, node_id, message.get("to"))
            elif op == "accept":
                await self._accept(control, node_id, message.get("circuit"))
            else:
                await self._refuse(control, "bad_request", f"unknown relay request {op!r}")
        except ConnectionLost:
            pass
        finally:
            await control.aclose()

    async def _refuse(self, control: ControlStream, code: str, error: str) -> None:
        self._refused += 1
        log.debug("relay: refused (%s): %s", code, error)
        try:
            with anyio.move_on_after(1):
                await control.send(error_reply(code, error))
        except ConnectionLost:
            pass

    # -- reservations -------------------------------------------------------------------------

    async def _reservation(self, control: ControlStream, node_id: str) -> None:
        limits = self.limits
        old = self._reservations.get(node_id)
        if old is None and len(self._reservations) >= limits.max_reservations:
            await self._refuse(
                control,
                "reservations_full",
                f"this relay holds its maximum of {limits.max_reservations} reservations",
            )
            return
        if old is not None:  # the node reconnected: the new connection wins
            old.gone.set()
            await old.control.aclose()
        ttl = limits.reservation_ttl
        reservation = _Reservation(node_id, control, anyio.current_time() + ttl)
        self._reservations[node_id] = reservation
        log.info("relay: %s reserved", node_id[:8])
        try:
            await control.send({"ok": True, "ttl": ttl})
            while True:
                with anyio.move_on_at(reservation.expires):
                    message = await control.receive()
                    if message.get("op") != "reserve":
                        await self._refuse(control, "bad_request", "expected a reserve request")
                        return
                    reservation.expires = anyio.current_time() + ttl
                    await control.send({"ok": True, "ttl": ttl})
                    continue
                log.info("relay: reservation of %s expired", node_id[:8])
                return
        except (ConnectionLost, ProtocolError):
            pass
        finally:
            reservation.gone.set()
            if self._reservations.get(node_id) is reservation:
                del self._reservations[node_id]
                log.info("relay: reservation of %s ended", node_id[:8])

    # -- circuits -----------------------------------------------------------------------------

    async def _connect(self, control: ControlStream, origin: str, target: Any) -> None:
        limits = self.limits
        if not isinstance(target, str) or not target or len(target) > 256:
            await self._refuse(control, "bad_request", "connect needs 'to': a node id")
            return
        if target == origin:
            await self._refuse(control, "bad_request", "a node cannot open a circuit to itself")
            return
        reservation = self._reservations.get(target)
        if reservation is None:
            await self._refuse(
                control, "unknown_target", f"no reservation for node {target[:16]} on this relay"
            )
            return
        if self._circuits >= limits.max_circuits:
            await self._refuse(
                control,
                "too_many_circuits",
                f"this relay carries its maximum of {limits.max_circuits} circuits",
            )
            return
        for party in (origin, target):
            if self._per_peer.get(party, 0) >= limits.max_circuits_per_peer:
                who = "you take" if party == origin else "the target takes"
                await self._refuse(
                    control,
                    "too_many_circuits",
                    f"{who} part in the maximum of {limits.max_circuits_per_peer} circuits "
                    "per node on this relay",
                )
                return
        self._circuits += 1
        self._circuits_total += 1
        for party in (origin, target):
            self._per_peer[party] = self._per_peer.get(party, 0) + 1
        circuit = secrets.token_hex(12)
        pending = _Pending(origin, target)
        self._pending[circuit] = pending
        try:
            try:
                await reservation.control.send(
                    {"op": "incoming", "circuit": circuit, "from": origin}
                )
            except ConnectionLost:
                pass
            with anyio.move_on_after(limits.accept_timeout):
                await pending.accepted.wait()
            if pending.stream is None:
                await self._refuse(
                    control,
                    "target_unreachable",
                    f"node {target[:16]} did not take the circuit within "
                    f"{limits.accept_timeout:g} s",
                )
                return
            await control.send({"ok": True})
            leg = control.raw()
            log.debug("relay: circuit %s from %s to %s", circuit, origin[:8], target[:8])
            await self._splice(leg, b"", pending.stream, pending.first)
        finally:
            self._pending.pop(circuit, None)
            pending.done.set()
            self._circuits -= 1
            for party in (origin, target):
                left = self._per_peer.get(party, 1) - 1
                if left > 0:
                    self._per_peer[party] = left
                else:
                    self._per_peer.pop(party, None)

    async def _accept(self, control: ControlStream, node_id: str, circuit: Any) -> None:
        pending = self._pending.get(circuit) if isinstance(circuit, str) else None
        if pending is None or pending.target != node_id or pending.taken:
            await self._refuse(control, "bad_request", "no such circuit for this node")
            return
        pending.taken = True
        await control.send({"ok": True})
        leg = control.raw()
        try:
            with anyio.fail_after(self.limits.accept_timeout):
                first = await leg.receive()
        except (TimeoutError, anyio.EndOfStream, *_STREAM_ERRORS):
            return
        if first[:1] != READY:
            log.debug("relay: %s took a circuit without the ready byte", node_id[:8])
            return
        pending.stream = leg
        pending.first = first[1:]
        pending.accepted.set()
        await pending.done.wait()  # the asker's task splices and closes both

    async def _splice(self, a: ByteStream, a_first: bytes, b: ByteStream, b_first: bytes) -> None:
        """Copy both ways until both ends have finished or a limit is reached; then close
        both (after an ``X`` frame saying why, if a limit or a broken end stopped it)."""
        limits = self.limits
        closing: _Closing | None = None
        total = [0]

        async def pump(source: ByteStream, first: bytes, sink: ByteStream) -> None:
            data = first
            # The lean TCP streams write without yielding when the socket takes it all: a
            # small message crosses the relay with no task switch (one in 64 yields anyway).
            nowait = getattr(sink, "send_nowait", None)
            streak = 0
            while True:
                if data:
                    size = len(data)
                    if limits.max_circuit_bytes is not None and (
                        total[0] + size > limits.max_circuit_bytes
                    ):
                        raise _Closing(
                            "byte_limit",
                            f"the circuit reached the relay's limit of "
                            f"{limits.max_circuit_bytes} bytes",
                        )
                    total[0] += size
                    self._bytes += size
                    chunk = frame(DATA, data)
                    try:
                        sent = nowait(chunk) if nowait is not None and streak < 64 else 0
                        if sent < len(chunk):
                            streak = 0
                            await sink.send(chunk[sent:] if sent else chunk)
                        else:
                            streak += 1
                    except _STREAM_ERRORS:
                        raise _Closing(
                            "peer_gone", "the other end of the circuit is gone"
                        ) from None
                try:
                    data = await source.receive(_RECEIVE)
                except anyio.EndOfStream:
                    try:
                        await sink.send(frame(END))
                    except _STREAM_ERRORS:
                        pass
                    return
                except _STREAM_ERRORS:
                    raise _Closing("peer_gone", "the other end of the circuit is gone") from None

        try:
            with anyio.CancelScope() as timer:
                if limits.max_circuit_seconds is not None:
                    timer.deadline = anyio.current_time() + limits.max_circuit_seconds
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(pump, a, a_first, b)
                        tg.start_soon(pump, b, b_first, a)
                except* _Closing as group:
                    first = group.exceptions[0]
                    assert isinstance(first, _Closing)
                    closing = first
            if timer.cancelled_caught:
                closing = _Closing(
                    "time_limit",
                    f"the circuit reached the relay's limit of {limits.max_circuit_seconds:g} s",
                )
        finally:
            with anyio.CancelScope(shield=True):
                if closing is not None:
                    log.info("relay: circuit closed: %s", closing.error)
                    why = frame(
                        ERROR, json.dumps({"code": closing.code, "error": closing.error}).encode()
                    )
                    async with anyio.create_task_group() as tg:
                        for end in (a, b):
                            tg.start_soon(_linger, end, why)
                for end in (a, b):
                    with anyio.move_on_after(1):
                        try:
                            await end.aclose()
                        except _STREAM_ERRORS:
                            pass


async def _linger(end: ByteStream, why: bytes) -> None:
    """Send the ``X`` frame, finish sending, and read (and drop) what the end still sends
    for a moment: closing with unread bytes would reset the connection, and the end would
    lose the frame that says why."""
    with anyio.move_on_after(LINGER):
        try:
            await end.send(why)
            await end.send_eof()
            for _ in range(LINGER_READS):
                await end.receive(_RECEIVE)
        except (*_STREAM_ERRORS, anyio.EndOfStream):
            pass
