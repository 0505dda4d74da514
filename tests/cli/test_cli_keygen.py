"""``sn keygen``: secrets and identity key files."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from click.testing import CliRunner

from synapse_p2p import Identity
from synapse_p2p.cli import cli


def test_a_new_secret_each_time() -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["keygen"]).output.strip()
    second = runner.invoke(cli, ["keygen"]).output.strip()
    assert first != second
    assert len(base64.urlsafe_b64decode(first + "=")) == 32


def test_an_identity_key_file_is_created_once_and_read_after(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    runner = CliRunner()
    created = runner.invoke(cli, ["keygen", "--identity", str(path), "--json"])
    assert created.exit_code == 0, created.output
    record = json.loads(created.output)
    assert record["created"] is True
    assert record["node_id"] == Identity.load(path).node_id
    again = runner.invoke(cli, ["keygen", "--identity", str(path)])
    assert again.output.strip() == record["node_id"]
    os.chmod(path, 0o644)
    refused = runner.invoke(cli, ["keygen", "--identity", str(path)])
    assert refused.exit_code == 1
    assert "chmod 600" in refused.output
