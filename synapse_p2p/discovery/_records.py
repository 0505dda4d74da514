"""The mDNS record of a node and its DNS-SD encoding, sans-IO (no zeroconf, no sockets).

Wire format (compatible with synapse-p2p 2.5.0): service type ``_synapse._tcp.local.``,
instance ``<label>-<node_id[:8]>._synapse._tcp.local.`` (``label`` is the node name, or the id
prefix, with every character that is not alphanumeric or ``-`` replaced by ``-`` and the ends
stripped), one address (the advertised one) and the node's port, and the TXT keys ``id``,
``name``, ``kind``, ``swarm``, ``team``, ``host``, ``capabilities`` (comma-joined), UTF-8, with
the empty string for None. The zeroconf driver is :mod:`._mdns`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..types import NodeKind, Peer

__all__ = [
    "SERVICE_TYPE",
    "MdnsRecord",
    "instance_name",
    "peer_from_txt",
    "pick_address",
    "service_label",
    "txt_properties",
]

logger = logging.getLogger(__name__)

#: The DNS-SD service type every Synapse node advertises and browses.
SERVICE_TYPE = "_synapse._tcp.local."
#: Longest instance label (DNS labels are at most 63 bytes; ``-`` and the id prefix take 9).
_MAX_LABEL_BYTES = 63 - 9
#: A TXT entry is ``key=value`` with a one-byte length.
_MAX_TXT_ENTRY = 255


def _txt_fits(key: str, value: str) -> bool:
    return len(key) + 1 + len(value.encode()) <= _MAX_TXT_ENTRY


@dataclass(frozen=True, slots=True)
class MdnsRecord:
    """What a node advertises over mDNS.

    ``address`` is the advertised address: an IP literal (IPv4 for reference peers) or a host
    name, resolved to IPv4 when the service is registered. ``port`` is the node's bound port.
    Construction raises ``ValueError``/``TypeError`` naming the bad field.
    """

    node_id: str
    address: str
    port: int
    name: str = ""
    kind: str = "node"
    swarm: str | None = None
    team: str | None = None
    capabilities: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for key in ("node_id", "address", "name"):
            if not isinstance(getattr(self, key), str):
                raise TypeError(f"MdnsRecord.{key} must be a string")
        if not self.node_id:
            raise ValueError("MdnsRecord.node_id must not be empty")
        if not self.address:
            raise ValueError("MdnsRecord.address must not be empty")
        try:
            unspecified = ipaddress.ip_address(self.address).is_unspecified
        except ValueError:
            unspecified = False  # a host name, resolved at registration
        if unspecified:
            raise ValueError(f"MdnsRecord.address must be a reachable address, not {self.address}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError("MdnsRecord.port must be an int")
        if not 0 < self.port < 65536:
            raise ValueError(f"MdnsRecord.port must be in 1..65535, got {self.port}")
        object.__setattr__(self, "kind", str(NodeKind.from_value(self.kind).value))
        for key in ("swarm", "team"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"MdnsRecord.{key} must be a string or None")
        given: object = self.capabilities
        if isinstance(given, str) or not isinstance(given, Iterable):
            raise TypeError("MdnsRecord.capabilities must be a sequence of strings")
        capabilities = tuple(given)
        if not all(isinstance(c, str) for c in capabilities):
            raise TypeError("MdnsRecord.capabilities must contain strings")
        object.__setattr__(self, "capabilities", capabilities)
        for key in ("node_id", "swarm", "team"):
            if not _txt_fits(key, getattr(self, key) or ""):
                raise ValueError(f"MdnsRecord.{key} is too long for a TXT entry (255 bytes)")


def service_label(name: str, node_id: str) -> str:
    """The instance label: ``name`` (or ``node_id[:8]``) made DNS-safe as the reference does.

    Labels longer than 54 UTF-8 bytes (where the reference would fail to register) are cut so
    that the instance stays a valid 63-byte DNS label.
    """
    raw = name or node_id[:8]
    safe = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in raw).strip("-")
    if len(safe.encode()) > _MAX_LABEL_BYTES:
        safe = safe.encode()[:_MAX_LABEL_BYTES].decode(errors="ignore").rstrip("-")
    return safe or node_id[:8]


def instance_name(record: MdnsRecord) -> str:
    """``<label>-<node_id[:8]>._synapse._tcp.local.``"""
    return f"{service_label(record.name, record.node_id)}-{record.node_id[:8]}.{SERVICE_TYPE}"


def _fit(key: str, value: str) -> str:
    if _txt_fits(key, value):
        return value
    budget = _MAX_TXT_ENTRY - len(key) - 1
    logger.warning("mDNS TXT %r is longer than %d bytes; truncated", key, budget)
    return value.encode()[:budget].decode(errors="ignore")


def _fit_capabilities(capabilities: Iterable[str]) -> str:
    kept: list[str] = []
    names = list(capabilities)
    for name in names:
        if _txt_fits("capabilities", ",".join([*kept, name])):
            kept.append(name)
    if len(kept) < len(names):
        logger.warning(
            "mDNS TXT 'capabilities' holds 242 bytes; %d of %d capabilities not advertised",
            len(names) - len(kept),
            len(names),
        )
    return ",".join(kept)


def txt_properties(record: MdnsRecord, host: str) -> dict[bytes, bytes]:
    """The TXT map for ``record``: the reference's seven keys, UTF-8, ``""`` for None.

    ``name``, ``host`` and ``capabilities`` are shortened (whole capability names dropped) to fit
    the 255-byte TXT entry limit, with a warning.
    """
    values = {
        "id": record.node_id,
        "name": _fit("name", record.name),
        "kind": record.kind,
        "swarm": record.swarm or "",
        "team": record.team or "",
        "host": _fit("host", host),
        "capabilities": _fit_capabilities(record.capabilities),
    }
    return {key.encode(): value.encode() for key, value in values.items()}


def _text(properties: Mapping[bytes, bytes | None], key: bytes) -> str:
    value = properties.get(key)
    return "" if value is None else value.decode()  # UnicodeDecodeError: caller discards


def pick_address(addresses: Iterable[str]) -> str | None:
    """The address to dial among those a service advertises: the first usable IPv4 one, else
    the first usable IPv6 one (unspecified, multicast and link-local addresses are skipped)."""
    usable: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if not (ip.is_unspecified or ip.is_multicast or ip.is_link_local):
            usable.append(ip)
    usable.sort(key=lambda ip: ip.version)  # stable: IPv4 first, order kept otherwise
    return str(usable[0]) if usable else None


def peer_from_txt(
    properties: Mapping[bytes, bytes | None], addresses: Iterable[str], port: int | None
) -> Peer | None:
    """Build the :class:`Peer` a resolved service describes, or None to discard it.

    As the reference: empty ``swarm``/``team`` become None and ``kind`` defaults to ``"node"``;
    a record without ``id``, usable address or port is discarded. Also discarded here: non-UTF-8
    values, an unknown ``kind`` and port 0. Never raises for bad input.
    """
    try:
        peer_id = _text(properties, b"id")
        address = pick_address(addresses)
        if not peer_id or address is None or not port:
            return None
        return Peer(
            id=peer_id,
            address=address,
            port=port,
            swarm=_text(properties, b"swarm") or None,
            team=_text(properties, b"team") or None,
            name=_text(properties, b"name"),
            kind=NodeKind.from_value(_text(properties, b"kind") or "node"),
            capabilities=[c for c in _text(properties, b"capabilities").split(",") if c],
        )
    except ValueError:  # UnicodeDecodeError, invalid kind
        return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
