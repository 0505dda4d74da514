"""Prometheus metrics of a node, scraped over HTTP on loopback (both backends)."""

from __future__ import annotations

import re

import anyio
import pytest

from synapse_p2p import every
from synapse_p2p.testing import open_swarm

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from synapse_p2p.metrics import MetricsServer

pytestmark = pytest.mark.anyio


async def http_get(port: int, path: str) -> tuple[str, str]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        with anyio.fail_after(10):
            try:
                while True:
                    data += await stream.receive()
            except anyio.EndOfStream:
                pass
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.split("\r\n")[0], body


async def test_metrics_are_served_and_follow_the_node(anyio_backend: str) -> None:
    async with open_swarm(2, transport="tcp") as swarm:
        node = swarm[0]

        @node.periodic(every(3600), name="report")
        async def report() -> None:
            pass

        server = MetricsServer(node, port=0)
        node.start_service(server)
        with anyio.fail_after(10):
            while server.port == 0:
                await anyio.sleep(0.01)
        status, body = await http_get(server.port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        assert 'synapse_peers{node="node0"} 1.0' in body
        assert "synapse_rpc_requests_total" in body
        assert "synapse_delivery_dropped_total" in body
        assert "synapse_handshake_refusals_total" in body  # quota refusals
        # the swarm's nodes connected to this one over the secure channel
        handshakes = re.search(r'synapse_secure_handshakes_total\{node="node0"\} (\S+)', body)
        assert handshakes is not None
        assert float(handshakes.group(1)) >= 1
        b = await node.broadcast("anything")
        assert b.nonce
        _, body = await http_get(server.port, "/metrics")
        assert 'synapse_conversations{node="node0"} 1.0' in body
        status, _ = await http_get(server.port, "/secret")
        assert status == "HTTP/1.1 404 Not Found"
        node.stop_service(server)
