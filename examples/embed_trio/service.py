"""A synapse-p2p node inside an existing trio service.

    python examples/embed_trio/service.py                # the demo: does its work, then stops
    python examples/embed_trio/service.py --seconds 30   # serve for 30 s (Ctrl+C stops earlier)
    python examples/embed_trio/service.py --seconds 0 --port 9999 --health-port 8080
                                                         # serve until Ctrl+C

The service already has a nursery and tasks of its own: a worker that takes jobs from a memory
channel, and a plain TCP health check (send ``health``, get ``ok ...``; anything else is echoed).
The node joins that nursery with ``await nursery.start(node.serve)``, which returns once its
port is bound, and its endpoints hand work to the service's worker. All of them share one
cancel scope: cancelling the nursery (the demo's end, Ctrl+C, or any task crashing) stops the
worker, the health server and the node together, and every socket is closed on the way out.
"""

from __future__ import annotations

import argparse
import math
import signal
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from synapse_p2p import Client, Node


@dataclass
class Job:
    numbers: list[float]
    done: trio.Event = field(default_factory=trio.Event)
    result: float = math.nan


class Service:
    """The existing application: a job queue, a worker and a health check."""

    def __init__(self) -> None:
        self.send_job, self.receive_job = trio.open_memory_channel[Job](100)
        self.processed = 0

    async def worker(self) -> None:
        async for job in self.receive_job:
            await trio.sleep(0.01)  # the real work
            job.result = sum(job.numbers)
            self.processed += 1
            job.done.set()

    async def health(self, stream: trio.SocketStream) -> None:
        async with stream:
            async for data in stream:
                if data.strip() == b"health":
                    await stream.send_all(f"ok processed={self.processed}\n".encode())
                else:
                    await stream.send_all(data)

    async def submit(self, numbers: list[float]) -> float:
        """Queue a job for the worker and wait for its result."""
        job = Job(numbers)
        await self.send_job.send(job)
        await job.done.wait()
        return job.result


def make_node(service: Service, port: int = 0) -> Node:
    """The node: two endpoints in front of the service."""
    node = Node(name="summing-service", bind="127.0.0.1", port=port)

    @node.endpoint("app.sum", description="Sum numbers on the service's worker")
    async def app_sum(numbers: list[float]) -> float:
        return await service.submit(numbers)

    @node.endpoint("app.stats", description="Jobs processed so far")
    async def app_stats() -> dict[str, Any]:
        return {"processed": service.processed}

    return node


async def stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            print(f"{signal.Signals(signum).name}: stopping")
            scope.cancel()
            return


async def demo(node: Node, health_port: int) -> None:
    """What a user of the service does: calls through the node and checks the health port."""
    async with Client("127.0.0.1", node.port) as client:
        async with trio.open_nursery() as calls:  # ten concurrent calls, one connection
            results: list[float] = []

            async def call(i: int) -> None:
                results.append(await client.call("app.sum", list(range(i + 1))))

            for i in range(10):
                calls.start_soon(call, i)
        print(f"10 jobs through the node: results sum to {sum(results):g}")
        print("app.stats over the node:", await client.call("app.stats"))
    stream = await trio.open_tcp_stream("127.0.0.1", health_port)
    async with stream:
        await stream.send_all(b"health\n")
        print("health check over plain TCP:", (await stream.receive_some()).decode().strip())


async def is_closed(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return True
    await stream.aclose()
    return False


async def main(seconds: float | None, port: int = 0, health_port: int = 0) -> None:
    service = Service()
    node = make_node(service, port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_on_signal, nursery.cancel_scope)
        nursery.start_soon(service.worker)
        serve_health = partial(trio.serve_tcp, service.health, health_port, host="127.0.0.1")
        listeners = await nursery.start(serve_health)
        health_port = listeners[0].socket.getsockname()[1]
        await nursery.start(node.serve)  # returns once the node's port is bound
        print(f"service up: node on 127.0.0.1:{node.port}, health check on 127.0.0.1:{health_port}")
        node_port = node.port  # reset to the requested port (0) once the node stops
        if seconds is None:
            await demo(node, health_port)
            nursery.cancel_scope.cancel()
        elif seconds > 0:
            nursery.cancel_scope.deadline = trio.current_time() + seconds
    closed = await is_closed(node_port) and await is_closed(health_port)
    print(f"service stopped: node and health ports closed: {closed}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="serve for this long instead of running the demo (0: until Ctrl+C)",
    )
    parser.add_argument("--port", type=int, default=0, help="the node's port (default: any)")
    parser.add_argument("--health-port", type=int, default=0, help="health check port")
    args = parser.parse_args()
    trio.run(main, args.seconds, args.port, args.health_port)
