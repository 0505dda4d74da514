"""A calculator node: one endpoint, ``sum``. Run it, then ``python client.py``."""

import os

from synapse_p2p import Node

node = Node(name="calculator", bind="127.0.0.1", port=int(os.environ.get("SYNAPSE_PORT", "9999")))


@node.endpoint("sum", description="Add two numbers")
async def sum_numbers(a: int, b: int) -> int:
    return a + b


if __name__ == "__main__":
    node.run()
