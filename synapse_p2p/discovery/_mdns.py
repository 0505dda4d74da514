"""mDNS discovery: advertise this node and find the others on the LAN through zeroconf.

The record and its DNS-SD encoding (the wire format, compatible with synapse-p2p 2.5.0) are
sans-IO, in :mod:`._records`; this module is the zeroconf driver.

Threading: zeroconf's synchronous API runs in its own threads (``Zeroconf(use_asyncio=False)``
starts zeroconf's event-loop thread and ``ServiceBrowser`` its own callback thread). Starting,
registering, updating and closing run through :func:`anyio.to_thread.run_sync`; services are
resolved (1 s timeout, as the reference) on the browser's thread, and the result is handed to the
event loop through a bounded memory object stream (``send_nowait`` through
:func:`anyio.from_thread.run_sync`; when the stream is full the browser thread waits in
:func:`anyio.from_thread.run`: backpressure, nothing dropped). The task running
:meth:`MdnsDiscovery.run` applies the events and calls the callbacks, on the event loop thread.

Addresses: a discovered peer's address is the address it advertises (the first IPv4 one, else
the first usable IPv6 one). Unlike the reference we never substitute ``127.0.0.1`` when the TXT
``host`` equals our hostname: two machines may share a hostname, and a node's advertised address
is reachable from its own machine anyway.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import ifaddr
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from zeroconf import Error as ZeroconfError
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from .._config import accepts
from ..errors import MdnsError
from ..types import Peer
from ._records import (
    SERVICE_TYPE,
    MdnsRecord,
    _is_ip,
    instance_name,
    peer_from_txt,
    txt_properties,
)

__all__ = [
    "SERVICE_TYPE",
    "MdnsDiscovery",
    "MdnsError",
    "MdnsRecord",
    "MdnsStatistics",
    "browse_swarms",
]

logger = logging.getLogger(__name__)

#: How long the browser thread waits for a discovered service to resolve (as the reference).
RESOLVE_TIMEOUT_MS = 1000
_EVENT_BUFFER = 32
_CLOSE_GRACE = 5.0

FoundCallback = Callable[[Peer], None]
RemovedCallback = Callable[[str], None]


# -- zeroconf adapters -----------------------------------------------------------------------


def service_info(
    record: MdnsRecord,
    *,
    host: str,
    address: str | None = None,
    name: str | None = None,
    server: str | None = None,
) -> ServiceInfo:
    """The zeroconf ``ServiceInfo`` advertising ``record``.

    ``address`` overrides ``record.address`` (which must then be an IP literal, else
    ``ValueError``). ``name`` and ``server`` default to :func:`instance_name` and (as the
    reference, which gives no server) the instance name chosen at registration; an update passes
    those of the registered service, since zeroconf may have renamed it.
    """
    address = address or record.address
    ipaddress.ip_address(address)  # ValueError for a host name
    return ServiceInfo(
        SERVICE_TYPE,
        name or instance_name(record),
        port=record.port,
        properties=txt_properties(record, host),
        server=server,
        parsed_addresses=[address],
    )


def peer_from_service(info: ServiceInfo) -> Peer | None:
    """:func:`peer_from_txt` on a resolved zeroconf ``ServiceInfo``."""
    return peer_from_txt(info.properties or {}, info.parsed_addresses(), info.port)


def _same(a: Peer, b: Peer) -> bool:
    return a.to_dict() | {"last_seen": 0} == b.to_dict() | {"last_seen": 0}


def resolve_interfaces(interfaces: Iterable[str]) -> list[str]:
    """Map interface names to their IPv4 addresses for zeroconf; IP literals pass through.

    Blocking (lists the host's interfaces): call it from a worker thread. Raises
    :class:`MdnsError` for a name that is not an interface with an IPv4 address.
    """
    adapters = ifaddr.get_adapters()
    result: list[str] = []
    for entry in interfaces:
        if _is_ip(entry):
            result.append(entry)
            continue
        found = [
            str(ip.ip)
            for adapter in adapters
            if entry in (adapter.name, adapter.nice_name)
            for ip in adapter.ips
            if ip.is_IPv4
        ]
        if not found:
            raise MdnsError(f"mDNS interface {entry!r} not found or has no IPv4 address")
        result.extend(found)
    return list(dict.fromkeys(result))


# -- the driver ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MdnsStatistics:
    """Counters of one :class:`MdnsDiscovery` since it was created."""

    #: ``on_found`` deliveries (new peers and changed data).
    found: int
    #: ``on_removed`` deliveries.
    removed: int
    #: Resolved services dropped: not a usable record, our own id, other swarm/team, table full.
    ignored: int
    #: Services that did not resolve within the timeout.
    unresolved: int
    #: Times zeroconf's browser thread waited because the hand-off stream was full.
    handoff_waits: int


@dataclass(frozen=True, slots=True)
class _Seen:
    name: str
    peer: Peer | None  # None: resolved but not a usable Synapse record


@dataclass(frozen=True, slots=True)
class _Gone:
    name: str


class MdnsDiscovery:
    """Advertise a node and browse for the others over mDNS; run it with :meth:`run`.

    ``record`` is the :class:`MdnsRecord` to advertise, or a callable returning it (read when
    :meth:`run` starts, and by :meth:`update` with no argument), so a node can pass a function
    of its bound port. ``interfaces`` lists interface names or IP addresses (None: every
    interface, zeroconf's ``InterfaceChoice.All``). Discovered peers are filtered by ``swarm`` and
    ``team`` with the reference's rule (None accepts any) and our own id is dropped.
    ``on_found(peer)`` is called for each new peer and again whenever its data change;
    ``on_removed(node_id)`` when its service goes away (goodbye or expiry) or stops matching the
    filter. Callbacks run on the event loop thread, inside :meth:`run`; an exception they raise
    is logged and ignored. At most ``max_peers`` peers are tracked (beyond that new ones are
    ignored, with a warning).
    """

    def __init__(
        self,
        *,
        record: MdnsRecord | Callable[[], MdnsRecord] | None = None,
        interfaces: list[str] | None = None,
        swarm: str | None = None,
        team: str | None = None,
        on_found: FoundCallback | None = None,
        on_removed: RemovedCallback | None = None,
        browse: bool = True,
        advertise: bool = True,
        max_peers: int = 1024,
    ) -> None:
        if not (browse or advertise):
            raise ValueError("MdnsDiscovery needs browse=True or advertise=True")
        if advertise and record is None:
            raise ValueError("MdnsDiscovery(advertise=True) needs a record")
        if record is not None and not (isinstance(record, MdnsRecord) or callable(record)):
            raise TypeError("record must be an MdnsRecord or a callable returning one")
        if interfaces is not None:
            given: object = interfaces
            if not isinstance(given, list) or not all(isinstance(i, str) for i in given):
                raise TypeError("interfaces must be a list of interface names or IP addresses")
            if not interfaces:
                raise ValueError("interfaces must not be empty (None means every interface)")
        if isinstance(max_peers, bool) or not isinstance(max_peers, int) or max_peers < 1:
            raise ValueError("max_peers must be a positive int")
        self._source = record
        self._record = record if isinstance(record, MdnsRecord) else None
        self.interfaces = list(interfaces) if interfaces is not None else None
        self.swarm = swarm
        self.team = team
        self.on_found = on_found
        self.on_removed = on_removed
        self.browse = browse
        self.advertise = advertise
        self.max_peers = max_peers
        #: Peers currently seen, by node id (read-only view for callers).
        self.discovered: dict[str, Peer] = {}
        self._names: dict[str, str] = {}  # instance name -> node id
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None  # as registered (name after any rename)
        self._advertising = False  # run() has made its first registration
        self._host = ""
        self._lock = anyio.Lock()
        self._running = False
        self._closing = threading.Event()
        self._warned_full = False
        self._found = self._removed = self._ignored = 0
        self._unresolved = self._handoff_waits = 0  # written by zeroconf's browser thread only

    @property
    def record(self) -> MdnsRecord | None:
        """The record currently advertised (or to be advertised)."""
        return self._record

    def statistics(self) -> MdnsStatistics:
        """A snapshot of this discovery's counters."""
        return MdnsStatistics(
            found=self._found,
            removed=self._removed,
            ignored=self._ignored,
            unresolved=self._unresolved,
            handoff_waits=self._handoff_waits,
        )

    @property
    def service_name(self) -> str | None:
        """The registered instance name (zeroconf may have renamed it), None if unregistered."""
        return self._info.name if self._info is not None else None

    def _current_record(self) -> MdnsRecord | None:
        if self._source is None or isinstance(self._source, MdnsRecord):
            return self._source
        record = self._source()
        if not isinstance(record, MdnsRecord):
            raise TypeError(f"record callable returned {type(record).__name__}, not MdnsRecord")
        return record

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start zeroconf, browse, register, then deliver discoveries until cancelled.

        ``task_status.started()`` fires once the service is registered (probing takes about
        1.5 s) and the browser runs; callbacks may fire before that. Raises :class:`MdnsError`
        if zeroconf cannot start or register (nothing is left running), ``RuntimeError`` if
        already running. On cancellation (also during start-up, which finishes its current
        zeroconf call first) the service is unregistered (goodbye packets) and zeroconf closed,
        shielded and bounded by 5 s; ``discovered`` is cleared without calling ``on_removed``.
        """
        if self._running:
            raise RuntimeError("MdnsDiscovery is already running")
        self._running = True
        self._closing.clear()
        token = anyio.lowlevel.current_token()
        send, receive = anyio.create_memory_object_stream[_Seen | _Gone](_EVENT_BUFFER)
        browser: ServiceBrowser | None = None

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            self._on_change(zeroconf, service_type, name, state_change, send, token)

        try:
            record = self._current_record()
            self._record = record
            self._host = socket.gethostname()
            self._zc = zc = await anyio.to_thread.run_sync(self._open_zeroconf, self.interfaces)
            if self.browse:
                # Browse first so discovery overlaps with probing; until _deliver runs, the
                # browser thread waits on the (bounded) stream.
                browser = await anyio.to_thread.run_sync(self._open_browser, zc, on_change)
            if self.advertise:
                async with self._lock:  # an update() meanwhile waits, then re-announces
                    record = self._record  # update() may have replaced it since
                    self._advertising = True
                    if record is not None:
                        self._info = await anyio.to_thread.run_sync(self._register, zc, record)
                        logger.info("mDNS advertising %s port %d", self._info.name, record.port)
            task_status.started()
            await self._deliver(receive)
        finally:
            self._closing.set()
            receive.close()  # a browser thread blocked on a full stream gets BrokenResourceError
            send.close()
            with anyio.move_on_after(_CLOSE_GRACE, shield=True) as scope:
                async with self._lock:
                    await anyio.to_thread.run_sync(self._close, browser, abandon_on_cancel=True)
            if scope.cancelled_caught:
                logger.warning("mDNS shutdown did not finish within %.0f s", _CLOSE_GRACE)
            self._zc = None
            self._info = None
            self._advertising = False
            self.discovered.clear()
            self._names.clear()
            self._running = False

    async def update(self, record: MdnsRecord | None = None) -> None:
        """Advertise ``record`` (or re-read the record callable when None) if it changed.

        A changed name re-registers under the new instance name; other changes re-announce the
        service (browsers see ``Updated``). When not running (or not advertising) the record is
        only stored. Raises :class:`MdnsError` if zeroconf fails; the previous record then stays
        current, and a later call retries. Cancellation waits for the current zeroconf call (at
        most about 1.5 s) and leaves whichever record it registered advertised.
        """
        async with self._lock:
            if record is not None:
                if not isinstance(record, MdnsRecord):
                    raise TypeError("record must be an MdnsRecord")
                self._source = record
            new = self._current_record()
            old, self._record = self._record, new
            zc, info = self._zc, self._info
            if zc is None or new is None or not self._advertising or self._closing.is_set():
                return
            try:
                if info is None:  # an earlier re-registration failed half-way
                    self._info = await anyio.to_thread.run_sync(self._register, zc, new)
                elif old is not None and new != old:
                    await anyio.to_thread.run_sync(self._reregister, zc, info, old, new)
                else:
                    return
            except MdnsError:
                self._record = old
                raise
            logger.info("mDNS re-announced %s", self.service_name)

    # -- worker-thread side (zeroconf's blocking API) -----------------------------------------

    def _open_zeroconf(self, interfaces: list[str] | None) -> Zeroconf:
        try:
            if interfaces is None:
                return Zeroconf(use_asyncio=False)
            return Zeroconf(interfaces=resolve_interfaces(interfaces), use_asyncio=False)
        except (ZeroconfError, OSError) as exc:
            if isinstance(exc, MdnsError):
                raise
            raise MdnsError(f"mDNS could not start: {exc}") from exc

    def _open_browser(self, zc: Zeroconf, handler: Callable[..., None]) -> ServiceBrowser:
        try:
            return ServiceBrowser(zc, SERVICE_TYPE, handlers=[handler], delay=0)
        except (ZeroconfError, RuntimeError) as exc:
            raise MdnsError(f"mDNS could not browse: {exc}") from exc

    def _build_info(self, record: MdnsRecord, like: ServiceInfo | None = None) -> ServiceInfo:
        address = record.address
        if not _is_ip(address):
            try:
                found = socket.getaddrinfo(address, None, socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:
                raise MdnsError(f"mDNS cannot resolve advertised address {address!r}") from exc
            address = str(found[0][4][0])
        if like is None:
            return service_info(record, host=self._host, address=address)
        return service_info(
            record, host=self._host, address=address, name=like.name, server=like.server
        )

    def _register(self, zc: Zeroconf, record: MdnsRecord) -> ServiceInfo:
        info = self._build_info(record)
        try:
            zc.register_service(info, allow_name_change=True)
        except ZeroconfError as exc:
            raise MdnsError(f"mDNS could not register {info.name}: {exc}") from exc
        return info

    def _reregister(
        self, zc: Zeroconf, info: ServiceInfo, old: MdnsRecord, new: MdnsRecord
    ) -> None:
        # Called with self._lock held, so _close() does not run meanwhile.
        if instance_name(old) == instance_name(new):
            updated = self._build_info(new, like=info)
            try:
                zc.update_service(updated)
            except ZeroconfError as exc:
                raise MdnsError(f"mDNS could not update {info.name}: {exc}") from exc
            self._info = updated
            return
        try:
            zc.unregister_service(info)
        except ZeroconfError as exc:
            raise MdnsError(f"mDNS could not unregister {info.name}: {exc}") from exc
        self._info = None
        self._info = self._register(zc, new)

    def _close(self, browser: ServiceBrowser | None) -> None:
        zc = self._zc
        try:
            if browser is not None:
                browser.cancel()
        finally:
            if zc is not None:
                # close() unregisters every service and waits for the three goodbye packets
                # (zc.unregister_service() would return before they are sent).
                try:
                    zc.close()
                except (ZeroconfError, RuntimeError) as exc:
                    logger.debug("mDNS close failed: %r", exc)

    def _on_change(
        self,
        zc: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
        send: MemoryObjectSendStream[_Seen | _Gone],
        token: anyio.lowlevel.EventLoopToken,
    ) -> None:
        # Runs on zeroconf's browser thread, which must survive anything that goes wrong here.
        try:
            self._hand_off(zc, service_type, name, state_change, send, token)
        except Exception:
            logger.exception("mDNS failed to handle %s %s", state_change, name)

    def _hand_off(
        self,
        zc: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
        send: MemoryObjectSendStream[_Seen | _Gone],
        token: anyio.lowlevel.EventLoopToken,
    ) -> None:
        if self._closing.is_set():
            return
        event: _Seen | _Gone
        if state_change is ServiceStateChange.Removed:
            event = _Gone(name)
        else:
            try:
                info = zc.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
            except ZeroconfError as exc:  # shutting down
                logger.debug("mDNS could not resolve %s: %r", name, exc)
                return
            if info is None:
                logger.debug("mDNS service %s did not resolve", name)
                self._unresolved += 1
                return
            event = _Seen(name, peer_from_service(info))
        if self._closing.is_set():
            return
        try:
            try:
                anyio.from_thread.run_sync(send.send_nowait, event, token=token)
            except anyio.WouldBlock:
                self._handoff_waits += 1
                anyio.from_thread.run(send.send, event, token=token)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
            pass  # run() is finishing

    # -- event-loop side ------------------------------------------------------------------------

    async def _deliver(self, receive: MemoryObjectReceiveStream[_Seen | _Gone]) -> None:
        async with receive:
            async for event in receive:
                if isinstance(event, _Gone):
                    self._forget(event.name)
                else:
                    self._seen(event.name, event.peer)

    def _seen(self, name: str, peer: Peer | None) -> None:
        own = self._record.node_id if self._record is not None else None
        reason = None
        if peer is None:
            reason = "not a usable Synapse record"
        elif peer.id == own:
            reason = "our own service"
        elif not accepts(peer, swarm=self.swarm, team=self.team):
            reason = f"swarm {peer.swarm!r} team {peer.team!r}"
        elif peer.id not in self.discovered and len(self.discovered) >= self.max_peers:
            reason = "peer table full"
            if not self._warned_full:
                logger.warning("mDNS tracks at most %d peers; ignoring new ones", self.max_peers)
                self._warned_full = True
        if reason is not None or peer is None:
            logger.debug("mDNS ignoring %s: %s", name, reason)
            self._ignored += 1
            self._forget(name)  # it may have matched before an update
            return
        if self._names.get(name, peer.id) != peer.id:
            self._forget(name)
        self._names[name] = peer.id
        known = self.discovered.get(peer.id)
        if known is not None and _same(known, peer):
            self.discovered[peer.id] = replace(known, last_seen=peer.last_seen)
            return
        self.discovered[peer.id] = peer
        self._found += 1
        logger.debug("mDNS found %s at %s:%d", peer.id[:8], peer.address, peer.port)
        if self.on_found is not None:
            try:
                self.on_found(replace(peer, capabilities=list(peer.capabilities)))
            except Exception:
                logger.exception("mDNS on_found callback failed")

    def _forget(self, name: str) -> None:
        node_id = self._names.pop(name, None)
        if node_id is None or node_id in self._names.values():
            return
        self.discovered.pop(node_id, None)
        self._warned_full = False
        self._removed += 1
        logger.debug("mDNS lost %s", node_id[:8])
        if self.on_removed is not None:
            try:
                self.on_removed(node_id)
            except Exception:
                logger.exception("mDNS on_removed callback failed")


async def browse_swarms(seconds: float = 3.0, *, interfaces: list[str] | None = None) -> list[Peer]:
    """Browse mDNS for ``seconds`` without advertising and return every Synapse node seen and
    not gone (any swarm or team), sorted by swarm, team, name and id; for ``sn list-swarms``.

    Raises :class:`MdnsError` if zeroconf cannot start. Cancellation closes zeroconf (bounded).
    """
    seen: dict[str, Peer] = {}

    def found(peer: Peer) -> None:
        seen[peer.id] = peer

    def removed(node_id: str) -> None:
        seen.pop(node_id, None)

    discovery = MdnsDiscovery(
        advertise=False, interfaces=interfaces, on_found=found, on_removed=removed
    )
    with anyio.move_on_after(seconds):
        await discovery.run()
    return sorted(seen.values(), key=lambda p: (p.swarm or "", p.team or "", p.name, p.id))
