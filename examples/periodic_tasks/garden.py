"""A garden node that wakes up on an interval, a cron expression and the actual sun.

* every 10 minutes: read the soil moisture sensor, and tell the swarm when the soil is dry;
* at 07:00 London time: water the beds if they need it;
* at sunrise in London: ask the swarm for its status (as in the project README).

Run it with ``python examples/periodic_tasks/garden.py`` (Ctrl+C to stop), then ask it::

    python -c "import trio; from synapse_p2p import Client; \\
        print(trio.run(Client('127.0.0.1', 9999).call, 'garden.status'))"
"""

from __future__ import annotations

import logging
import random
from typing import Any

from synapse_p2p import Node, cron, every, solar

DRY = 0.25  # volumetric water content below which the beds need water

node = Node(name="garden", port=9999, description="Soil moisture sensor and sprinkler")
garden: dict[str, Any] = {"moisture": 0.6, "waterings": 0, "readings": 0}


def read_sensor() -> float:
    """Stands in for the real probe: the soil dries a little between readings."""
    moisture: float = garden["moisture"]
    return max(0.0, moisture - random.uniform(0.0, 0.01))


@node.periodic(every(minutes=10))
async def read_moisture() -> None:
    garden["moisture"] = read_sensor()
    garden["readings"] += 1
    if garden["moisture"] < DRY:
        await node.broadcast("garden.dry", round(garden["moisture"], 3))


@node.periodic(cron("0 7 * * *", tz="Europe/London"))
async def water() -> None:
    if garden["moisture"] < 2 * DRY:
        garden["moisture"] = 0.8  # open the valve for a while
        garden["waterings"] += 1


@node.periodic(solar("sunrise", latitude=51.5, longitude=-0.1, tz="Europe/London"))
async def morning_check() -> None:
    await node.broadcast("garden.status")


@node.endpoint("garden.status", description="Soil moisture and how often the beds were watered")
async def status() -> dict[str, Any]:
    return dict(garden)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    node.run()
