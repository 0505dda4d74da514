"""Run inside a fresh network namespace only: serve an A2A endpoint with mDNS advertising,
browse ``_a2a._tcp`` with zeroconf, fetch the card from the advertised URL, print JSON.

mdns_a2a.py trio|asyncio
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import anyio
import anyio.to_thread
import httpx
from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

from synapse_p2p import Node
from synapse_p2p.a2a import SERVICE_TYPE, open_a2a_server


def browse(timeout: float) -> dict[str, Any]:
    found = threading.Event()
    names: list[str] = []

    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:  # fmt: skip
        if state_change is ServiceStateChange.Added:
            names.append(name)
            found.set()

    zc = Zeroconf(interfaces=["127.0.0.1"])
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        if not found.wait(timeout):
            return {}
        info = zc.get_service_info(SERVICE_TYPE, names[0], timeout=int(timeout * 1000))
        browser.cancel()
        assert info is not None
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        return {"name": names[0], "port": info.port, "addresses": info.parsed_addresses(),
                "properties": props}  # fmt: skip
    finally:
        zc.close()


async def main() -> None:
    async with Node(bind="127.0.0.1", swarm="lab", mdns=False) as node:
        async with open_a2a_server(node, port=0, mdns=True, name="lab gateway") as server:
            seen = await anyio.to_thread.run_sync(browse, 10.0)
            card: dict[str, Any] = {}
            if seen:
                url = seen["properties"]["url"] + seen["properties"]["path"]
                async with httpx.AsyncClient() as http:
                    card = (await http.get(url)).json()
            print(json.dumps({"server": server.url, "seen": seen, "card": card}), flush=True)


anyio.run(main, backend=sys.argv[1])
