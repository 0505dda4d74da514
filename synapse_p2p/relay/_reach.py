"""Whether this node can be dialed: ``node.reachability``, learned from dial-backs.

**The dial-back** (``_synapse.dialback``, our extension, never sent to 2.5.0 peers): a node
asks a member to dial its advertised ``address:port``. The member dials it over its plain
transport (never through a relay route it may hold for that address), runs the secure
handshake expecting the caller's node id (proved on the caller's own channel; a caller
without one is refused), closes, and answers ``{"ok": bool, "error": str, "observed": ip}``,
where ``error`` only says the caller was not reached (never why: refused, silent or another
service, which would make the endpoint a port scanner for anyone who can connect).
A member runs at most :data:`DIALBACK_CONCURRENCY` dial-backs at once, one per caller, and
one per target address every :data:`DIALBACK_TARGET_INTERVAL` seconds whoever asks (fresh
keys do not make it dial one address more often); past that the caller gets ``overloaded``.
The dial is the one the membership's verifier makes to any claimed address.

**The rule** (:class:`Verdicts`, sans-IO): each member's latest answer counts, for the
address and port asked about.

* ``"public"``: at least one member dialed the address successfully;
* ``"private"``: no success, and failures from at least two distinct members, or from the
  only member there is (a node with a single seed and nobody else);
* ``"unknown"``: otherwise (no member yet, or answers still missing).

A change of the advertised address or port starts over. :class:`Reachability` asks up to
:data:`ASK` members (random, not 2.5.0, those it holds a connection to first) while the
verdict is unknown (after ``retry`` seconds, doubling up to ``retry_max``, 60 s). Once it is
known it checks again every ``recheck`` seconds (300 s): one member first, and up to
:data:`ASK` others only if that answer does not confirm the verdict (a failure while public,
a success while private changes it at once, no answer). Each ask costs the member's dial, a
handshake at both ends (and one more to reach a member it is not connected to): a swarm of N
nodes makes about ``N / recheck`` dials a second once settled. A new advertised address is
asked about at once (membership calls :meth:`Reachability.moved`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .._random import SHARED
from .._validate import format_address
from ..errors import BAD_REQUEST, OVERLOADED, ProtocolError, RemoteError, SynapseError
from ..identity import Identity
from ..secure import Keyring, secure_connect
from ..transport import Transport
from ..types import Peer

if TYPE_CHECKING:
    from .._seams import LocalNode, PeerCaller
    from ..rpc import Connection, EndpointRegistry

__all__ = ["DIALBACK_ENDPOINT", "Reachability", "ReachabilityState", "Verdicts"]

log = logging.getLogger(__name__)

DIALBACK_ENDPOINT = "_synapse.dialback"
#: Dial-backs one node runs at once for others.
DIALBACK_CONCURRENCY = 4
#: Seconds between two dial-backs of one target address, whoever asks.
DIALBACK_TARGET_INTERVAL = 5.0
#: Members asked per round.
ASK = 3
#: By default, seconds between two checks of the advertised address while waiting for the
#: next round, besides :meth:`Reachability.moved` (a node's membership calls it whenever it
#: changes the address, and turns the checks off).
MOVE_CHECK = 5.0

ReachabilityState = Literal["public", "private", "unknown"]


class Verdicts:
    """The members' dial-back answers and the rule of the module documentation."""

    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None
        self.answers: dict[str, bool] = {}  # member id -> its latest dial-back worked

    def record(self, target: tuple[str, int], member: str, ok: bool) -> None:
        if target != self.target:
            self.target = target
            self.answers = {}
        self.answers[member] = ok

    def keep(self, members: Mapping[str, Any]) -> None:
        """Forget the answers of members no longer in ``members``."""
        if any(i not in members for i in self.answers):
            self.answers = {i: ok for i, ok in self.answers.items() if i in members}

    def state(self, target: tuple[str, int], members: int) -> ReachabilityState:
        """The verdict for ``target`` with ``members`` members known now."""
        if target != self.target or not self.answers:
            return "unknown"
        if any(self.answers.values()):
            return "public"
        if len(self.answers) >= 2 or (members <= 1 and len(self.answers) >= 1):
            return "private"
        return "unknown"


def serve_dialback(
    registry: EndpointRegistry,
    *,
    transport: Callable[[], Transport],
    identity: Identity,
    keyring: Keyring,
    timeout: float,
) -> None:
    """Serve ``_synapse.dialback`` on ``registry``: dial the caller at the address it gives,
    over ``transport()`` (the plain one), and say whether its node id answered there."""
    limiter = anyio.Semaphore(DIALBACK_CONCURRENCY)
    busy: set[str] = set()  # callers with a dial-back running
    dialed: dict[tuple[str, int], float] = {}  # target -> when it was last dialed

    async def dialback(
        address: Any, port: Any, connection: Connection | None = None
    ) -> dict[str, Any]:
        caller = connection.node_id if connection is not None else None
        if caller is None:
            raise RemoteError(BAD_REQUEST, "a dial-back needs the caller's secure channel")
        if not isinstance(address, str) or not 0 < len(address) <= 256:
            raise RemoteError(BAD_REQUEST, "dial-back: 'address' must be a host name or IP")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RemoteError(BAD_REQUEST, "dial-back: 'port' must be an int in 1..65535")
        assert connection is not None
        ip, target, now = connection.ip, (address, port), anyio.current_time()
        for old, at in list(dialed.items()):
            if now - at >= DIALBACK_TARGET_INTERVAL:
                del dialed[old]
        if caller in busy or limiter.value == 0 or target in dialed:
            raise RemoteError(OVERLOADED, "dial-back: busy, ask again later")
        busy.add(caller)
        dialed[target] = now
        try:
            async with limiter:
                error = await _dial(transport(), address, port, caller, identity, keyring, timeout)
        finally:
            busy.discard(caller)
        if error:
            log.debug("dial-back of %s for %s failed: %s", format_address(*target), caller, error)
        return {"ok": not error, "error": "not reached" if error else "", "observed": ip}

    registry.add(dialback, DIALBACK_ENDPOINT, publish=False)


async def _dial(
    transport: Transport,
    host: str,
    port: int,
    node_id: str,
    identity: Identity,
    keyring: Keyring,
    timeout: float,
) -> str:
    """Dial ``host:port`` and check ``node_id`` answers there: ``""``, or why not."""
    try:
        with anyio.fail_after(timeout):
            stream = await transport.connect(host, port, timeout=timeout)
            try:
                secure, _ = await secure_connect(
                    stream, identity, secret=keyring, expected_node_id=node_id, timeout=timeout
                )
                await secure.aclose()
            except BaseException:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await stream.aclose()
                raise
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (SynapseError, OSError, anyio.BrokenResourceError) as exc:
        return str(exc) or type(exc).__name__
    return ""


class Reachability:
    """This node's reachability (:attr:`state`); :meth:`run` asks members to dial back.

    ``members``: membership's live members; ``legacy(id)``: a 2.5.0 member (not asked);
    ``local``: this node's record (its advertised address and port); ``caller``: calls.
    ``move_check``: seconds between two looks at ``local``'s address between rounds
    (``math.inf``: only when :meth:`moved` is called).
    """

    def __init__(
        self,
        local: LocalNode,
        members: Mapping[str, Peer],
        legacy: Callable[[str], bool],
        caller: PeerCaller,
        *,
        retry: float = 2.0,
        retry_max: float = 60.0,
        recheck: float = 300.0,
        timeout: float = 5.0,
        move_check: float = MOVE_CHECK,
        rng: random.Random | None = None,
    ) -> None:
        self.local = local
        self.members = members
        self.legacy = legacy
        self.caller = caller
        self.retry = retry
        self.retry_max = retry_max
        self.recheck = recheck
        self.timeout = timeout
        self.move_check = move_check
        self.verdicts = Verdicts()
        self._rng = rng or SHARED
        self._state: ReachabilityState = "unknown"
        #: Called when :attr:`state` changes.
        self.on_change: Callable[[ReachabilityState], None] | None = None
        self.changed = anyio.Event()
        self._moved = anyio.Event()

    def moved(self) -> None:
        """The node advertises another address: ask again at once (:meth:`run` also looks
        every ``move_check`` seconds)."""
        self._moved.set()

    @property
    def state(self) -> ReachabilityState:
        return self._state

    def _target(self) -> tuple[str, int]:
        return self.local.address, self.local.port

    def _askable(self) -> list[Peer]:
        return [p for p in self.members.values() if not self.legacy(p.id)]

    def _update(self) -> None:
        askable = sum(1 for i in self.members if not self.legacy(i))
        state = self.verdicts.state(self._target(), askable)
        if state == self._state:
            return
        log.info(
            "reachability: %s (dial-backs of %s: %s)",
            state,
            format_address(*self._target()),
            ", ".join(
                f"{k[:8]} {'ok' if v else 'failed'}" for k, v in self.verdicts.answers.items()
            )
            or "none",
        )
        self._state = state
        self.changed.set()
        self.changed = anyio.Event()
        if self.on_change is not None:
            self.on_change(state)

    async def ask(self, member: Peer) -> bool | None:
        """Ask ``member`` to dial us back; its answer (``None``: it could not say)."""
        target = self._target()
        try:
            reply = await self.caller.call(
                member.address,
                member.port,
                DIALBACK_ENDPOINT,
                [target[0], target[1]],
                {},
                timeout=self.timeout * 2,
            )
        except (SynapseError, OSError, ProtocolError, RuntimeError) as exc:  # (stopping)
            log.debug("dial-back from %s: %s", member.id[:8], exc)
            return None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            return None
        ok: bool = reply["ok"]
        if not ok:
            log.debug("dial-back from %s failed: %s", member.id[:8], reply.get("error"))
        self.verdicts.record(target, member.id, ok)
        self._update()
        return ok

    def _pick(self, count: int) -> list[Peer]:
        """Up to ``count`` members to ask, at random: those a call reaches without a new
        connection first."""
        members = self._askable()
        self._rng.shuffle(members)
        connected = [p for p in members if self.caller.connected(p.address, p.port)]
        if len(connected) >= count:
            return connected[:count]
        chosen = {p.id for p in connected}
        return (connected + [p for p in members if p.id not in chosen])[:count]

    async def round(self, exclude: str | None = None) -> None:
        """Ask up to :data:`ASK` members at once (not ``exclude``)."""
        self.verdicts.keep(self.members)  # (the answers of members gone count no more)
        members = [p for p in self._pick(ASK + 1) if p.id != exclude][:ASK]
        async with anyio.create_task_group() as tg:
            for member in members:
                tg.start_soon(self.ask, member)
        self._update()

    async def confirm(self) -> None:
        """With a verdict known: ask one member, and others only if its answer does not
        confirm the verdict. A contradiction starts the answers over from that one (an
        older success must not keep a node public that no member reaches any more)."""
        self.verdicts.keep(self.members)
        members = self._pick(1)
        if not members:
            return
        ok = await self.ask(members[0])
        if ok is not None and self._state == ("public" if ok else "private"):
            return
        if ok is not None:
            self.verdicts.answers = {members[0].id: ok}
        await self.round(exclude=members[0].id)

    async def run(self) -> None:
        """Ask members until cancelled (see the module documentation)."""
        # Fresh events: one an earlier run waited on belongs to that run's event loop. The
        # old one is set too, so a waiter that took it already looks again (at the new one).
        changed, self.changed = self.changed, anyio.Event()
        changed.set()
        self._moved = anyio.Event()
        retry = self.retry
        while True:
            asked = any(not self.legacy(i) for i in self.members)
            if asked:
                if self._state == "unknown" or self.verdicts.target != self._target():
                    await self.round()
                else:
                    await self.confirm()
            if not asked:
                wait = self.retry  # nobody to ask yet
            elif self._state == "unknown":
                wait, retry = retry, min(retry * 2, self.retry_max)  # members that cannot say
            else:
                wait, retry = self.recheck, self.retry
            target = self._target()
            deadline = anyio.current_time() + wait
            while anyio.current_time() < deadline and self._target() == target:
                # until the next round, or a new address (then ask again at once)
                with anyio.move_on_after(min(self.move_check, deadline - anyio.current_time())):
                    await self._moved.wait()
                self._moved = anyio.Event()
