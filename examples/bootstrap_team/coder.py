"""The coder: joins the team through the seed in ``SYNAPSE_BOOTSTRAP`` and answers asks.

    SYNAPSE_BOOTSTRAP=127.0.0.1:9000 python examples/bootstrap_team/coder.py

runs until Ctrl+C.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.bootstrap_team.members import TIMING, bind_from_env, make_member, seed_from_env

if __name__ == "__main__":
    make_member("coder", seed_from_env(), bind=bind_from_env(), **TIMING).run()
