"""Both halves of basic_rpc in one process: a node on a free loopback port and a client.

python examples/basic_rpc/run.py [--backend asyncio]
"""

import sys

import anyio

from synapse_p2p import Client, Node


async def main() -> None:
    node = Node(name="calculator", bind="127.0.0.1", port=0)

    @node.endpoint("sum", description="Add two numbers")
    async def sum_numbers(a: int, b: int) -> int:
        return a + b

    async with node:
        print(f"node {node.name!r} listening on {node.address}:{node.port}")
        # One call, one connection (works against any synapse-p2p node):
        print("sum(1, 2) =", await Client("127.0.0.1", node.port).call("sum", 1, 2))
        # One persistent connection, many concurrent calls:
        async with Client("127.0.0.1", node.port) as client:
            results: list[int] = []

            async def add(i: int) -> None:
                results.append(await client.call("sum", i, i))

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(add, i)
            print(f"100 concurrent calls over one connection, total = {sum(results)}")
            print("published methods:", await client.call("_synapse.methods"))
    print("node stopped")


if __name__ == "__main__":
    backend = "asyncio" if "--backend" in sys.argv and "asyncio" in sys.argv else "trio"
    anyio.run(main, backend=backend)
