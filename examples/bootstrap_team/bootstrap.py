"""The seed: a ``NodeKind.BOOTSTRAP`` node that logs who joins, heartbeats and goes offline.

    SYNAPSE_BOOTSTRAP=127.0.0.1:9000 python examples/bootstrap_team/bootstrap.py

listens on the port of ``SYNAPSE_BOOTSTRAP`` (default 9000) until Ctrl+C.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.bootstrap_team.members import (
    TIMING,
    bind_from_env,
    make_bootstrap,
    port_of,
    seed_from_env,
)


def log(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    make_bootstrap(port_of(seed_from_env()), bind=bind_from_env(), say=log, **TIMING).run()
