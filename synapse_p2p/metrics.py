"""Prometheus metrics of a node (``pip install 'synapse-p2p[metrics]'``).

Nothing is counted twice: a :class:`NodeCollector` reads the node's own counters
(``node.statistics()``, the scheduler's, and any teams you add) at each scrape, so metrics
cost nothing between scrapes. Serve them where you like::

    from synapse_p2p.metrics import MetricsServer

    node.start_service(MetricsServer(node, host="127.0.0.1", port=9464))

or put the collector in a registry of your own (``registry.register(NodeCollector(node))``)
and serve that registry with ``prometheus_client`` as your application does.

:class:`MetricsServer` is a small HTTP server on the node's event loop (trio or asyncio):
``GET /metrics`` answers the text exposition format, anything else 404. It binds loopback by
default; it is read-only and answers nothing but counters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, TaskStatus

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "synapse_p2p.metrics needs prometheus-client: pip install 'synapse-p2p[metrics]'"
    ) from exc

if TYPE_CHECKING:
    from .node import Node
    from .teams import Team

__all__ = ["MetricsServer", "NodeCollector"]

log = logging.getLogger(__name__)

_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_MAX_REQUEST = 8192


class NodeCollector(Collector):
    """Prometheus metrics read from a node at scrape time (prefix ``synapse_``).

    Pass ``teams`` to export their task states and counters too.
    """

    def __init__(self, node: Node, *, teams: Iterable[Team] = ()) -> None:
        self.node = node
        self.teams = list(teams)

    def collect(self) -> Iterator[Any]:
        node = self.node
        labels = ["node"]
        me = [node.name or node.node_id[:8]]
        stats = node.statistics()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"synapse_{name}", doc, labels=labels)
            family.add_metric(me, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"synapse_{name}", doc, labels=labels)
            family.add_metric(me, value)
            return family

        yield gauge("peers", "Verified members alive.", stats.peers)
        yield gauge("conversations", "Conversations held.", stats.conversations)
        yield gauge("broadcasts", "Broadcasts tracked.", stats.broadcasts)
        yield counter("gossip_sent", "Membership messages sent.", stats.gossip_sent)
        yield counter("gossip_received", "Membership messages received.", stats.gossip_received)
        yield counter("events_dropped", "Events dropped for slow consumers.", stats.hub_dropped)
        yield counter(
            "lifecycle_events_dropped", "@node.on events dropped.", stats.lifecycle_dropped
        )
        server = stats.server
        if server is not None:
            yield gauge("rpc_open_connections", "Inbound connections open.",
                        server.open_connections)  # fmt: skip
            yield counter("rpc_requests", "RPC requests received.", server.requests)
            yield gauge("rpc_in_flight", "RPC requests being handled.", server.in_flight)
            yield counter("rpc_error_responses", "RPC error responses sent.",
                          server.error_responses)  # fmt: skip
            yield counter("rpc_rejected_connections",
                          "Connections refused (connection limit or per-peer quota).",
                          server.rejected_connections)  # fmt: skip
        handshakes = stats.handshakes
        if handshakes is not None:
            yield counter("secure_handshakes", "Secure-channel handshakes completed.",
                          handshakes.secure)  # fmt: skip
            yield counter("plaintext_connections", "Plaintext (2.5.0) connections served.",
                          handshakes.plaintext)  # fmt: skip
            yield counter("handshake_failures",
                          "Handshakes that failed (wrong secret or key, timeout, plaintext "
                          "refused).", handshakes.failed)  # fmt: skip
            yield counter("handshake_refusals",
                          "Connections closed unread: over the handshake caps (per address "
                          "or in all).", handshakes.refused)  # fmt: skip
        pool = stats.pool
        if pool is not None:
            yield counter("rpc_calls", "RPC calls made to peers.", pool.calls)
            yield gauge("rpc_pool_connections", "Outbound connections open.",
                        pool.open_connections)  # fmt: skip
        delivery = stats.delivery
        yield gauge("delivery_queued", "Calls queued for peers.", delivery.queued)
        yield counter("delivery_sent", "Queued calls delivered.", delivery.sent)
        yield counter("delivery_failed", "Queued calls that failed.", delivery.failed)
        yield counter("delivery_dropped", "Queued calls dropped (full queue).", delivery.dropped)
        runs = CounterMetricFamily(
            "synapse_job_runs", "Periodic job runs.", labels=[*labels, "job"]
        )
        failures = CounterMetricFamily(
            "synapse_job_failures", "Periodic job runs that raised.", labels=[*labels, "job"]
        )
        for name, job in node.scheduler.statistics().jobs.items():
            runs.add_metric([*me, name], job.runs)
            failures.add_metric([*me, name], job.failures)
        yield runs
        yield failures
        if self.teams:
            states = GaugeMetricFamily(
                "synapse_team_tasks", "Team tasks by state.", labels=[*labels, "state"]
            )
            counts: dict[str, int] = {}
            grants = 0
            for team in self.teams:
                for task in team.tasks.values():
                    counts[task.status] = counts.get(task.status, 0) + 1
                grants += team.statistics().grants
            for state, count in sorted(counts.items()):
                states.add_metric([*me, state], count)
            yield states
            yield counter("team_grants", "Task attempts granted.", grants)


class MetricsServer:
    """``GET /metrics`` for one node, as a service of it (``node.start_service(...)``).

    ``port=0`` picks a free port; :attr:`port` is the bound one once running. Connections
    are served one request each and closed; a request larger than 8 KiB or slower than
    ``timeout`` seconds is dropped.
    """

    def __init__(
        self,
        node: Node,
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
        teams: Iterable[Team] = (),
        timeout: float = 5.0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node, teams=teams))
        self.host = host
        self.port = port
        self.timeout = timeout

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``started()`` once bound (``OSError`` if it cannot bind)."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            log.info("metrics on http://%s:%d/metrics", self.host, self.port)
            task_status.started()
            await listener.serve(self._handle)

    async def _handle(self, stream: ByteStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(self.timeout):
                    request = b""
                    while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
                        chunk = await stream.receive(4096)
                        request += chunk
                    line = request.split(b"\r\n", 1)[0].split()
                    if (
                        len(line) >= 2
                        and line[0] == b"GET"
                        and line[1].split(b"?")[0]
                        in (
                            b"/metrics",
                            b"/",
                        )
                    ):
                        body = generate_latest(self.registry)
                        await stream.send(_response(b"200 OK", _CONTENT_TYPE, body))
                    else:
                        await stream.send(
                            _response(b"404 Not Found", b"text/plain", b"not found\n")
                        )
            except (TimeoutError, OSError, anyio.EndOfStream, anyio.BrokenResourceError):
                pass


def _response(status: bytes, content_type: bytes, body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    return head + body
