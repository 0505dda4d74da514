"""The address a node advertises, learned from how its peers reach it, sans-IO.

A node bound to every interface with ``advertise="auto"`` (the default) picks the address of
its default route. On a host with no default route (a lab network, a namespace, an isolated
segment) there is none, and it falls back to 127.0.0.1: peers that join it through its real
address then verify 127.0.0.1, fail, and never list it, and its own record sends every peer
to 127.0.0.1. So, while it advertises a loopback address, a node takes a better one from its
peers, as libp2p's identify does:

* **Seen locally**: a peer from a non-loopback address called us on our local IP
  ``local_ip`` (the server side of the connection): that IP reaches us.
* **Reported**: a seed we joined says it saw our call come from ``observed``; it is taken if
  it is one of this host's own addresses (a bind test: a NAT's outside address is not).

A node given an explicit ``advertise=``, or bound to one address, never changes it. Only the
first learned address is taken (later observations do not move it back and forth).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

__all__ = ["AddressLearner", "is_host_address"]

_WILDCARDS = frozenset({"0.0.0.0", "::", "", "*"})


def _routable(ip: str) -> bool:
    """A unicast address other than loopback, wildcard, link-local or multicast."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return not (
        address.is_loopback
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
    )


def is_host_address(ip: str) -> bool:
    """Whether ``ip`` is one of this host's addresses (it can be bound)."""
    try:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((ip, 0))
    except OSError:
        return False
    return True


class AddressLearner:
    """Decides when to replace a loopback advertised address; see the module documentation.

    ``enabled``: the advertised address was auto-detected on a wildcard bind. The methods
    return the address to advertise from now on, or ``None`` to keep the current one.
    """

    def __init__(
        self, *, advertise: str | None, bind: str, is_local: Callable[[str], bool] = is_host_address
    ) -> None:
        self.enabled = advertise in (None, "auto") and bind in _WILDCARDS
        self._is_local = is_local
        self.learned: str | None = None

    def _wants(self, current: str) -> bool:
        if not self.enabled or self.learned is not None:
            return False
        try:
            return ipaddress.ip_address(current).is_loopback
        except ValueError:
            return not current

    def seen_locally(self, current: str, local_ip: str, remote_ip: str) -> str | None:
        """A peer at ``remote_ip`` reached us on our ``local_ip``."""
        if self._wants(current) and _routable(local_ip) and _routable(remote_ip):
            self.learned = local_ip
            return local_ip
        return None

    def reported(self, current: str, observed: object) -> str | None:
        """A seed saw our call come from ``observed`` (taken only if it is ours)."""
        if not isinstance(observed, str) or not self._wants(current):
            return None
        if _routable(observed) and self._is_local(observed):
            self.learned = observed
            return observed
        return None
