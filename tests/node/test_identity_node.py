"""A node's identity key: its id is the key's hash, and a key file keeps it across restarts."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from synapse_p2p import Identity, Node

pytestmark = pytest.mark.anyio


def test_the_node_id_is_the_hash_of_the_public_key() -> None:
    node = Node()
    assert node.node_id == hashlib.sha256(node.identity.public_key).hexdigest()
    assert node.verifiable
    assert Node().node_id != node.node_id  # a new key per run by default


async def test_a_key_file_keeps_the_id_across_restarts(anyio_backend: str, tmp_path: Path) -> None:
    path = tmp_path / "architect.key"
    first = Node(identity=path, bind="127.0.0.1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    async with first:
        pass
    second = Node(identity=str(path), bind="127.0.0.1")
    assert second.node_id == first.node_id
    async with second:
        assert second.self_peer().id == first.node_id


def test_identity_objects_and_unverified_ids() -> None:
    identity = Identity.generate()
    assert Node(identity=identity).node_id == identity.node_id
    chosen = Node(identity=identity, node_id="reviewer-1", secret=())
    assert chosen.node_id == "reviewer-1"
    assert not chosen.verifiable
    with pytest.raises(TypeError, match="identity must be"):
        Node(identity=42)  # type: ignore[arg-type]
