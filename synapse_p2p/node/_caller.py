"""Calls to peers over the node's connection pool: the :class:`PeerCaller` services use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..rpc import ConnectionPool

__all__ = ["PoolCaller"]


class PoolCaller:
    """A :class:`~synapse_p2p._seams.PeerCaller` over the pool of the running node.

    The node sets :attr:`pool` while it runs; calls made when it is not running raise
    ``RuntimeError("the node is not running")``. ``timeout=None`` means the node's
    ``call_timeout``.
    """

    def __init__(self, call_timeout: float) -> None:
        self.call_timeout = call_timeout
        self.pool: ConnectionPool | None = None

    def require_pool(self) -> ConnectionPool:
        if self.pool is None:
            raise RuntimeError("the node is not running")
        return self.pool

    async def call(
        self,
        host: str,
        port: int,
        endpoint: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> Any:
        return await self.require_pool().call(
            host,
            port,
            endpoint,
            args,
            kwargs,
            timeout=self.call_timeout if timeout is None else timeout,
        )

    async def session_info(self, host: str, port: int) -> Mapping[str, Any]:
        return await self.require_pool().session_info(host, port)

    def is_legacy(self, host: str, port: int) -> bool:
        return self.pool is not None and self.pool.is_legacy(host, port)

    def connected(self, host: str, port: int) -> bool:
        return self.pool is not None and self.pool.connected(host, port)

    def retain(self, addresses: Iterable[tuple[str, int]] | None) -> None:
        if self.pool is not None:
            self.pool.retain(addresses)

    def alias(self, address: tuple[str, int], via: tuple[str, int], node_id: str) -> bool:
        pool = self.pool
        if pool is None or pool.proven_id(*via) != node_id:
            return False
        pool.alias(address, via, node_id)
        return True
