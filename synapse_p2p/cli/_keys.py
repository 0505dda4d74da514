"""``sn keygen``: a new swarm secret, or a node's identity key file and its node id."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from ..errors import IdentityError
from ..identity import Identity
from ._common import Failure, json_text

__all__ = ["keygen_command"]


@click.command("keygen")
@click.option("--identity", "identity_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="PATH",
              help="Create this key file (mode 0600) if missing; print its node id.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keygen_command(identity_path: Path | None, as_json: bool) -> None:
    """Print a new random swarm secret, or with --identity, a node's key and its node id.

    A swarm secret is 32 random bytes, printed URL-safe base64; every node of a secured swarm
    holds it (Node(secret=...) or the SYNAPSE_SECRET environment variable). An identity key
    file holds a node's Ed25519 key: Node(identity=PATH) keeps the same node id across
    restarts. An existing key file is read, never replaced.

    \b
    Examples:
      sn keygen
      sn keygen --identity architect.key
    """
    if identity_path is None:
        secret = secrets.token_urlsafe(32)
        click.echo(json_text({"secret": secret}, indent=None) if as_json else secret)
        return
    existed = identity_path.exists()
    try:
        identity = Identity.load_or_create(identity_path)
    except (IdentityError, OSError) as exc:
        raise Failure(str(exc)) from None
    if as_json:
        record = {"path": str(identity_path), "node_id": identity.node_id, "created": not existed}
        click.echo(json_text(record, indent=None))
        return
    click.echo(identity.node_id)
    if not existed:
        click.echo(f"created {identity_path} (keep it private: it is this node's identity)",
                   err=True)  # fmt: skip
