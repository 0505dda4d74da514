"""synapse-p2p nodes inside an existing asyncio application.

    python examples/embed_asyncio/app.py                        # the demo, then it exits
    python examples/embed_asyncio/app.py --serve --port 9999    # then serves until Ctrl+C

The application is plain asyncio (``asyncio.run(main())``): an order queue with a consumer task
and a small status server made with ``asyncio.start_server``. Two nodes join it, started the two
ways a node runs inside someone else's event loop:

* ``orders``: ``async with Node(...)``; its ``orders.place`` endpoint puts work on the app's
  ``asyncio.Queue`` and waits for the consumer to finish it;
* ``auditor``: ``await task_group.start(node.serve)`` in an anyio task group (anyio runs on the
  asyncio loop as it is); it answers ``synapse.ask`` with ``@node.ask``.

A client places orders through ``orders``, then ``orders`` asks the swarm (the auditor) to check
the day's orders. Then (with ``--serve``) the app keeps running until Ctrl+C or SIGTERM.
Everything is stopped and every socket closed before the program exits.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from dataclasses import dataclass, field
from typing import Any

import anyio

from synapse_p2p import Client, Node

PRICES = {"widget": 2.5, "gadget": 12.0, "gizmo": 7.25}


@dataclass
class Order:
    item: str
    quantity: int
    filled: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Shop:
    """The existing application: orders go through a queue to one consumer."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Order] = asyncio.Queue()
        self.book: list[dict[str, Any]] = []

    async def consume(self) -> None:
        while True:
            order = await self.queue.get()
            await asyncio.sleep(0.01)  # the real work
            line = {"item": order.item, "quantity": order.quantity,
                    "total": PRICES.get(order.item, 0.0) * order.quantity}  # fmt: skip
            self.book.append(line)
            order.filled.set_result(line)
            self.queue.task_done()

    async def status(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The status server: one line per connection."""
        writer.write(f"orders={len(self.book)} queued={self.queue.qsize()}\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()


def audit(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """The auditor's stand-in model: flag unknown items and large orders."""
    flags = [
        f"{o['item']} x{o['quantity']}: " + ("unknown item" if o["total"] == 0 else "large order")
        for o in orders
        if o["total"] == 0 or o["quantity"] >= 100
    ]
    return {"orders": len(orders), "total": sum(o["total"] for o in orders), "flags": flags}


def make_auditor() -> Node:
    node = Node(name="auditor", bind="127.0.0.1")

    @node.ask
    async def answer(task: str, context: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # plain asyncio works inside handlers
        return audit(context["orders"])

    return node


def make_orders_node(shop: Shop, seed: str, port: int = 0) -> Node:
    node = Node(name="orders", bind="127.0.0.1", port=port, seeds=[seed])

    @node.endpoint("orders.place", description="Queue an order and wait until it is filled")
    async def place(item: str, quantity: int) -> dict[str, Any]:
        order = Order(item, quantity)
        await shop.queue.put(order)
        return await order.filled

    return node


async def until_stopped() -> None:
    """Wait for Ctrl+C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    print("stopping")


async def main(serve: bool = False, port: int = 0) -> None:
    shop = Shop()
    consumer = asyncio.create_task(shop.consume())
    server = await asyncio.start_server(shop.status, "127.0.0.1", 0)
    status_port = server.sockets[0].getsockname()[1]
    print(f"app up: status server on 127.0.0.1:{status_port}")

    auditor = make_auditor()
    async with anyio.create_task_group() as tg:
        await tg.start(auditor.serve)  # returns once the auditor's port is bound
        print(f"auditor node on 127.0.0.1:{auditor.port}")
        async with make_orders_node(shop, f"127.0.0.1:{auditor.port}", port) as orders:
            await orders.join()  # the node joins its seeds by itself; this waits until it has
            print(f"orders node on 127.0.0.1:{orders.port}, peers: {list_names(orders)}")
            ports = [status_port, auditor.port, orders.port]  # node.port is 0 again once stopped

            async with Client("127.0.0.1", orders.port) as client:
                placed = await asyncio.gather(
                    client.call("orders.place", "widget", 4),
                    client.call("orders.place", "gadget", 120),
                    client.call("orders.place", "sprocket", 2),
                )
            for line in placed:
                print(f"  placed {line['item']} x{line['quantity']}: {line['total']:.2f}")

            reader, writer = await asyncio.open_connection("127.0.0.1", status_port)
            print("status server says:", (await reader.readline()).decode().strip())
            writer.close()
            await writer.wait_closed()

            broadcast = await orders.broadcast(
                "synapse.ask", "Audit today's orders", context={"orders": shop.book}
            )
            async for reply in orders.iter_replies(broadcast, timeout=10):
                report = reply.result
                print(f"{reply.peer.name}: {report['orders']} orders, total {report['total']:.2f}")
                for flag in report["flags"]:
                    print(f"  flagged: {flag}")
            if serve:
                print(f"serving until Ctrl+C: orders.place on 127.0.0.1:{orders.port}")
                await until_stopped()
        tg.cancel_scope.cancel()  # stops the auditor

    server.close()
    await server.wait_closed()
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    closed = [await is_closed(port) for port in ports]
    print(
        f"app stopped: consumer cancelled, status, auditor and orders ports closed: {all(closed)}"
    )


async def is_closed(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


def list_names(node: Node) -> str:
    return ", ".join(sorted(peer.name for peer in node.peers.values()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="keep serving after the demo")
    parser.add_argument("--port", type=int, default=0, help="the orders node's port")
    args = parser.parse_args()
    asyncio.run(main(args.serve, args.port))
