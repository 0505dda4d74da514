"""Register many Synapse services at once with plain zeroconf (run inside a netns only).

``bulk_advertiser.py ADDRESS COUNT`` registers COUNT services (ids ``f"{i:064x}"``, port
``5000 + i``, swarm ``bulk``, our TXT encoding, no probing, all announced together), prints
``{"event": "started"}``, and sends goodbyes for all of them on stdin EOF. Used to push more
events through the browser than its hand-off stream holds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

from zeroconf.asyncio import AsyncZeroconf

from synapse_p2p.discovery._mdns import MdnsRecord, service_info


async def main() -> None:
    address, count = sys.argv[1], int(sys.argv[2])
    aiozc = AsyncZeroconf(interfaces=[address])
    try:
        announcements = []
        for i in range(count):
            record = MdnsRecord(
                node_id=f"{i:064x}", address=address, port=5000 + i, name=f"bulk {i}", swarm="bulk"
            )
            info = service_info(record, host=socket.gethostname())
            announcements.append(
                await aiozc.async_register_service(info, cooperating_responders=True)
            )
        await asyncio.gather(*announcements)
        print(json.dumps({"event": "started"}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await aiozc.async_close()  # goodbyes for every service
    print(json.dumps({"event": "stopped"}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
