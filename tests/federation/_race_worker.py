"""A separate process hammering a Redis registry (used by test_redis.py).

Usage: python _race_worker.py URL PREFIX MODE SECONDS [AGENT_ID ...]
MODE is ``heartbeat`` (heartbeat every id in turn) or ``prune`` (prune with a 5 s timeout,
about every 0.5 ms).
It prints ``ready`` once connected and ``done <operations>`` when the key ``<PREFIX>:stop``
appears or SECONDS have passed.
"""

from __future__ import annotations

import sys
import time

from synapse_p2p.federation import RedisAgentRegistry, UnknownAgentError


def main() -> None:
    url, prefix, mode, seconds, *ids = sys.argv[1:]
    registry = RedisAgentRegistry(url, prefix=prefix)
    stop_key = f"{prefix}:stop"
    print("ready", flush=True)
    deadline = time.monotonic() + float(seconds)
    operations = 0
    while time.monotonic() < deadline:
        if operations % 20 == 0 and registry.redis.exists(stop_key):
            break
        if mode == "heartbeat":
            for agent_id in ids:
                try:
                    registry.heartbeat(agent_id)
                except UnknownAgentError:
                    pass
                operations += 1
        else:
            registry.prune_stale(stale_timeout=5)
            operations += 1
            time.sleep(0.0005)
    print(f"done {operations}", flush=True)
    registry.close()


if __name__ == "__main__":
    main()
