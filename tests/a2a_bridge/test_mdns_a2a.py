"""The A2A endpoint advertised over mDNS as ``_a2a._tcp``: only inside a network namespace
the test creates (multicast on its own ``lo``), never on this machine's interfaces. Skipped,
with the reason printed, where namespaces are unavailable."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("a2a", reason="the a2a extra is not installed")

from tests.discovery.mdns_scripts.netns import Netns, NetnsUnavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "scripts" / "mdns_a2a.py"


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_endpoint_is_advertised_as_a2a_tcp(backend: str) -> None:
    try:
        ns = Netns("sna2a", multicast=True)
    except NetnsUnavailable as exc:
        print(f"A2A mDNS test skipped: {exc}")
        pytest.skip(f"network namespaces unavailable: {exc}")
    with ns:
        done = ns.run([sys.executable, str(SCRIPT), backend], timeout=60,
                      env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    seen = result["seen"]
    assert seen, "no _a2a._tcp service was found"
    assert seen["name"].endswith("._a2a._tcp.local.")
    assert seen["properties"]["url"] == result["server"]
    assert seen["properties"]["path"] == "/.well-known/agent-card.json"
    assert seen["addresses"] == ["127.0.0.1"]
    assert result["card"]["name"] == "lab gateway"
