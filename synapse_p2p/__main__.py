"""``python -m synapse_p2p`` runs the ``sn`` command line."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
