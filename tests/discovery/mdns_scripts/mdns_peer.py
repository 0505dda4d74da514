"""Our mDNS room in a test host: advertise and/or browse, JSON lines on stdout.

Run inside a network namespace (never on real interfaces). Reads JSON commands on stdin:
``{"op": "update", ...MdnsRecord fields}`` re-announces, ``{"op": "stop"}`` (or EOF) stops.
Prints ``{"event": "started"|"found"|"removed"|"updated"|"stopped", ...}``. Exits on its own
after ``--lifetime`` seconds so a lost test cannot leave it running. ``--list-swarms SECONDS``
runs :func:`browse_swarms` instead and prints ``{"event": "swarms", "peers": [...]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from synapse_p2p.discovery import MdnsDiscovery, MdnsRecord, browse_swarms
from synapse_p2p.types import Peer


def emit(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


def read_stdin(send: MemoryObjectSendStream[str], token: anyio.lowlevel.EventLoopToken) -> None:
    # A daemon thread (an abandoned worker thread could hold up interpreter exit).
    try:
        for line in sys.stdin:
            anyio.from_thread.run(send.send, line, token=token)
    except Exception:
        return
    finally:
        try:
            anyio.from_thread.run_sync(send.close, token=token)
        except Exception:
            pass


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    p.add_argument("--advertise", action="store_true")
    p.add_argument("--browse", action="store_true")
    p.add_argument("--node-id", default="0" * 64)
    p.add_argument("--name", default="")
    p.add_argument("--kind", default="node")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9999)
    p.add_argument("--swarm", default=None)
    p.add_argument("--team", default=None)
    p.add_argument("--capabilities", default="")
    p.add_argument("--filter-swarm", default=None)
    p.add_argument("--filter-team", default=None)
    p.add_argument("--interfaces", default=None, help="comma-separated names or addresses")
    p.add_argument("--lifetime", type=float, default=60.0)
    p.add_argument(
        "--callback-delay", type=float, default=0.0, help="block in on_found (a slow application)"
    )
    p.add_argument("--list-swarms", type=float, default=None, metavar="SECONDS")
    return p.parse_args()


async def main(args: argparse.Namespace) -> None:
    interfaces = args.interfaces.split(",") if args.interfaces else None
    if args.list_swarms is not None:
        peers = await browse_swarms(args.list_swarms, interfaces=interfaces)
        emit("swarms", peers=[peer.to_dict() for peer in peers])
        return
    record = MdnsRecord(
        node_id=args.node_id,
        address=args.address,
        port=args.port,
        name=args.name,
        kind=args.kind,
        swarm=args.swarm,
        team=args.team,
        capabilities=tuple(c for c in args.capabilities.split(",") if c),
    )

    def found(peer: Peer) -> None:
        if args.callback_delay:
            time.sleep(args.callback_delay)
        emit("found", peer=peer.to_dict())

    def removed(node_id: str) -> None:
        emit("removed", id=node_id)

    discovery = MdnsDiscovery(
        record=record,
        interfaces=interfaces,
        swarm=args.filter_swarm,
        team=args.filter_team,
        on_found=found,
        on_removed=removed,
        browse=args.browse,
        advertise=args.advertise,
    )
    send, lines = anyio.create_memory_object_stream[str](1)
    token = anyio.lowlevel.current_token()
    threading.Thread(target=read_stdin, args=(send, token), daemon=True).start()
    with anyio.move_on_after(args.lifetime), lines:
        async with anyio.create_task_group() as tg:
            await tg.start(discovery.run)
            emit("started", service=discovery.service_name, backend=args.backend)
            async for line in lines:
                command = json.loads(line)
                op = command.pop("op")
                if op == "stop":
                    break
                if op == "update":
                    if "capabilities" in command:
                        command["capabilities"] = tuple(command["capabilities"])
                    assert discovery.record is not None
                    await discovery.update(dataclasses.replace(discovery.record, **command))
                    emit("updated", service=discovery.service_name)
            tg.cancel_scope.cancel()
    emit("stopped", statistics=dataclasses.asdict(discovery.statistics()))


if __name__ == "__main__":
    arguments = parse()
    anyio.run(main, arguments, backend=arguments.backend)
