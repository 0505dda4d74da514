"""The reserved node's side: staying reachable through relays, and taking circuits.

:class:`Reservations` keeps one reservation per relay for as long as it runs: it connects,
reserves, renews every third of the relay's ``ttl``, and when the connection breaks or a
renewal goes unanswered (the relay restarted, died, refused) it connects again after a short
backoff (0.2 s doubling up to ``max_backoff``; a refusal waits ``max_backoff``). Each circuit
announced on a reservation is taken on a fresh connection to the relay and handed to
``serve`` (the node's ``RpcServer.serve_stream``: the end-to-end secure handshake and RPC run
there unchanged).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream, TaskGroup, TaskStatus

from .._validate import format_address
from ..errors import ConnectionLost, ProtocolError, RelayRefused, SynapseError
from ..identity import Identity
from ..secure import Keyring
from ..transport import Transport
from ._circuit import CircuitStream
from ._dial import open_relay
from ._protocol import READY

__all__ = ["ReservationState", "Reservations"]

log = logging.getLogger(__name__)

Serve = Callable[[ByteStream], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ReservationState:
    """One relay as seen by a reserved node: ``relay`` address, the relay's ``relay_node_id``
    (``None`` before the first reservation), ``reserved`` now, ``expires`` (the clock of the
    event loop), ``last_error`` (why the last attempt failed, ``""`` if none), ``circuits``
    taken so far."""

    relay: tuple[str, int]
    relay_node_id: str | None
    reserved: bool
    expires: float
    last_error: str
    circuits: int


class _Relay:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.node_id: str | None = None
        self.reserved = False
        self.expires = 0.0
        self.last_error = ""
        self.circuits = 0
        self.changed = anyio.Event()
        self.scope: anyio.CancelScope | None = None

    def state(self) -> ReservationState:
        return ReservationState(
            self.address, self.node_id, self.reserved, self.expires, self.last_error, self.circuits
        )

    def set(self, reserved: bool, error: str = "") -> None:
        self.reserved = reserved
        self.last_error = error
        self.changed.set()
        self.changed = anyio.Event()


class Reservations:
    """Reservations on ``relays`` (see the module documentation)."""

    def __init__(
        self,
        relays: Iterable[tuple[str, int]],
        *,
        transport: Transport,
        identity: Identity,
        keyring: Keyring,
        connect_timeout: float = 5.0,
        max_backoff: float = 2.0,
        max_circuits: int = 256,
    ) -> None:
        self._relays = [_Relay(address) for address in relays]
        self.transport = transport
        self.identity = identity
        self.keyring = keyring
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        #: Circuits taken and open at once, over all relays; announcements past it are
        #: ignored (the asker gets ``target_unreachable``), so no relay can make this node
        #: open connections without bound.
        self.max_circuits = max_circuits
        self._open = 0
        #: Called whenever a reservation is gained or lost.
        self.on_change: Callable[[], None] | None = None
        self._changed = anyio.Event()
        self._running: tuple[Serve, TaskGroup] | None = None

    def _set(self, relay: _Relay, reserved: bool, error: str = "") -> None:
        changed = relay.reserved != reserved
        relay.set(reserved, error)
        self._changed.set()
        self._changed = anyio.Event()
        if changed and self.on_change is not None:
            self.on_change()

    def states(self) -> list[ReservationState]:
        return [relay.state() for relay in self._relays]

    def add(self, address: tuple[str, int]) -> bool:
        """Keep a reservation on ``address`` too (from now, or when :meth:`run` starts);
        False if it is kept already."""
        if any(relay.address == address for relay in self._relays):
            return False
        relay = _Relay(address)
        self._relays.append(relay)
        if self._running is not None:
            self._start(relay, *self._running)
        return True

    def remove(self, address: tuple[str, int]) -> None:
        """Stop keeping the reservation on ``address`` (circuits taken through it go on)."""
        for relay in list(self._relays):
            if relay.address == address:
                self._relays.remove(relay)
                if relay.scope is not None:
                    relay.scope.cancel()
                self._set(relay, False, "no longer kept")

    async def wait_reserved(self, count: int | None = None) -> None:
        """Wait until ``count`` relays (default: all kept now) hold a reservation."""
        want = len(self._relays) if count is None else count
        while sum(relay.reserved for relay in self._relays) < want:
            await self._changed.wait()

    async def run(
        self, serve: Serve, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep every reservation until cancelled; circuits are served in tasks of this one
        (cancelled with it)."""
        async with anyio.create_task_group() as tg:
            with self.kept_in(tg, serve):
                task_status.started()
                await anyio.sleep_forever()  # relays may be added later

    @contextmanager
    def kept_in(self, tg: TaskGroup, serve: Serve) -> Iterator[None]:
        """Keep every reservation (and those added later) in tasks of ``tg`` while the block
        runs, circuits served there too: :meth:`run` without a task of its own, for an owner
        that has a task group already. Cancelling ``tg`` ends them; after the block, relays
        added are kept only from the next :meth:`run` or block."""
        self._running = (serve, tg)
        # Fresh events: one an earlier run waited on belongs to that run's event loop. The
        # old ones are set too, so a waiter that took one already looks again.
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        try:
            for relay in self._relays:
                changed, relay.changed = relay.changed, anyio.Event()
                changed.set()
                self._start(relay, serve, tg)
            yield
        finally:
            self._running = None

    def _start(self, relay: _Relay, serve: Serve, tg: TaskGroup) -> None:
        async def keep() -> None:
            with anyio.CancelScope() as scope:
                relay.scope = scope
                await self._keep(relay, serve, tg)

        tg.start_soon(keep)

    async def _keep(self, relay: _Relay, serve: Serve, tg: TaskGroup) -> None:
        backoff = 0.2
        where = format_address(*relay.address)
        while True:
            try:
                await self._reserve(relay, serve, tg)
                error = "the relay closed the reservation"
            except RelayRefused as exc:
                error = str(exc)
                backoff = self.max_backoff
            except (SynapseError, OSError, anyio.BrokenResourceError) as exc:
                error = str(exc) or type(exc).__name__
            if relay.reserved:
                log.info("reservation on relay %s lost: %s", where, error)
                backoff = 0.2
            else:
                log.debug("no reservation on relay %s: %s", where, error)
            self._set(relay, False, error)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _reserve(self, relay: _Relay, serve: Serve, tg: TaskGroup) -> None:
        where = format_address(*relay.address)
        control, relay_id = await open_relay(
            self.transport, relay.address, self.identity, self.keyring, timeout=self.connect_timeout
        )
        try:
            await control.send({"op": "reserve"})
            with anyio.fail_after(self.connect_timeout):
                reply = await control.receive()
            ttl = self._reserved(reply, where)
            relay.expires = anyio.current_time() + ttl
            relay.node_id = relay_id  # (known once it reserved us)
            self._set(relay, True)
            log.info("reserved on relay %s (renewed every %g s)", where, ttl / 3)
            renew_at = anyio.current_time() + ttl / 3
            answered = True
            while True:
                if anyio.current_time() >= renew_at:
                    if not answered:
                        raise ConnectionLost("the relay did not answer a renewal")
                    await control.send({"op": "reserve"})
                    answered = False
                    renew_at = anyio.current_time() + min(ttl / 3, self.connect_timeout)
                with anyio.move_on_after(max(0.0, renew_at - anyio.current_time())):
                    message = await control.receive()
                    if message.get("op") == "incoming":
                        circuit = message.get("circuit")
                        if not isinstance(circuit, str):
                            continue
                        if self._open >= self.max_circuits:
                            log.warning(
                                "relay %s: ignoring a circuit (%d open, the limit)",
                                where,
                                self._open,
                            )
                            continue
                        self._open += 1
                        tg.start_soon(self._take, relay, circuit, serve)
                    else:
                        ttl = self._reserved(message, where)
                        relay.expires = anyio.current_time() + ttl
                        answered = True
                        renew_at = anyio.current_time() + ttl / 3
        except (TimeoutError, ProtocolError) as exc:
            raise ConnectionLost(f"relay {where}: {exc or 'no answer'}") from None
        finally:
            await control.aclose()

    def _reserved(self, reply: dict[str, object], where: str) -> float:
        if reply.get("ok") is not True:
            code = str(reply.get("code") or "bad_request")
            raise RelayRefused(code, f"relay {where} refused the reservation: {reply.get('error')}")
        ttl = reply.get("ttl")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 1 <= ttl <= 86400:
            raise ProtocolError(f"relay {where} answered a bad ttl {ttl!r}")
        return float(ttl)

    async def _take(self, relay: _Relay, circuit: str, serve: Serve) -> None:
        """Take an announced circuit and serve it; failures are logged, never raised."""
        try:
            await self._serve_circuit(relay, circuit, serve)
        finally:
            self._open -= 1

    async def _serve_circuit(self, relay: _Relay, circuit: str, serve: Serve) -> None:
        where = format_address(*relay.address)
        try:
            control, relay_id = await open_relay(
                self.transport,
                relay.address,
                self.identity,
                self.keyring,
                timeout=self.connect_timeout,
                relay_node_id=relay.node_id,
            )
        except (SynapseError, OSError) as exc:
            log.info("could not take a circuit on relay %s: %s", where, exc)
            return
        try:
            await control.send({"op": "accept", "circuit": circuit})
            with anyio.fail_after(self.connect_timeout):
                reply = await control.receive()
            if reply.get("ok") is not True:
                log.info("relay %s refused a circuit: %s", where, reply.get("error"))
                await control.aclose()
                return
            leg = control.raw()
            await leg.send(READY)
        except BaseException as exc:
            await control.aclose()
            if isinstance(exc, TimeoutError | SynapseError | anyio.BrokenResourceError | OSError):
                log.info("could not take a circuit on relay %s: %s", where, exc or "timed out")
                return
            raise
        relay.circuits += 1
        await serve(CircuitStream(leg, relay_id))
