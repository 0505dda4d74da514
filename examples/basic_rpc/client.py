"""Call the calculator node started by ``python node.py``."""

import os

import anyio

from synapse_p2p import Client


async def main() -> None:
    port = int(os.environ.get("SYNAPSE_PORT", "9999"))
    result = await Client("127.0.0.1", port).call("sum", 1, 2)
    print(f"sum(1, 2) = {result}")


if __name__ == "__main__":
    anyio.run(main)
