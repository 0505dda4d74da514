"""Discovery: finding the other nodes of a swarm (mDNS on the LAN)."""

from __future__ import annotations

from ._mdns import SERVICE_TYPE, MdnsDiscovery, MdnsError, MdnsRecord, MdnsStatistics, browse_swarms

__all__ = [
    "SERVICE_TYPE",
    "MdnsDiscovery",
    "MdnsError",
    "MdnsRecord",
    "MdnsStatistics",
    "browse_swarms",
]
