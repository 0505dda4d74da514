"""The coder: advertises itself over mDNS and answers ``synapse.ask`` with a patch.

    python examples/local_mdns_swarm/coder.py [--bind 0.0.0.0] [--interface eth0]

runs until Ctrl+C.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.local_mdns_swarm.agents import argument_parser, make_coder, node_options

if __name__ == "__main__":
    args = argument_parser(__doc__).parse_args()
    make_coder(**node_options(args)).run(backend=args.backend)
