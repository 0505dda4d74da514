"""synapse-p2p 2.5.0's own mDNS encoding and parsing, without any network (reference interpreter).

Reads JSON on stdin: ``{"nodes": [...], "services": [...]}``. For each node (name, node_id,
port, address, kind, swarm, team, capabilities) prints the ServiceInfo the reference would
register; for each service (properties as strings, addresses, port) the Peer it would build.
"""

import json
import sys
from types import SimpleNamespace

from synapse_p2p.mdns import SERVICE_TYPE, MdnsDiscovery
from zeroconf.asyncio import AsyncServiceInfo

from synapse_p2p.types import NodeKind


def encode(spec):
    node = SimpleNamespace(
        name=spec["name"],
        node_id=spec["node_id"],
        port=spec["port"],
        address=spec["address"],
        kind=NodeKind.from_value(spec["kind"]),
        swarm=spec["swarm"],
        team=spec["team"],
        capabilities=[SimpleNamespace(name=c) for c in spec["capabilities"]],
    )
    info = MdnsDiscovery(node)._service_info()
    return {
        "name": info.name,
        "type": info.type,
        "port": info.port,
        "addresses": info.parsed_addresses(),
        "properties": {k.decode(): v.decode() for k, v in info.properties.items()},
    }


def parse(spec):
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        spec["name"],
        port=spec["port"],
        properties={k.encode(): v.encode() for k, v in spec["properties"].items()},
        parsed_addresses=spec["addresses"],
    )
    peer = MdnsDiscovery(SimpleNamespace())._peer_from_service(info)
    return None if peer is None else {k: v for k, v in peer.to_dict().items() if k != "last_seen"}


request = json.load(sys.stdin)
json.dump(
    {
        "nodes": [encode(spec) for spec in request["nodes"]],
        "services": [parse(spec) for spec in request["services"]],
    },
    sys.stdout,
)
