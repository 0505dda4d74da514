"""The RPC layer: endpoint registry and dispatch, server, client and connection pool."""

from __future__ import annotations

from ._client import Client, ConnectionPool, Dialer, PlainDialer, PoolStatistics
from ._connection import MuxConnection
from ._endpoints import Allow, Connection, EndpointMetadata, EndpointRegistry, EndpointSpec
from ._server import RpcServer, ServerLimits, ServerStatistics
from ._session import PROTOCOL_VERSION, SESSION_ENDPOINT

__all__ = [
    "PROTOCOL_VERSION",
    "SESSION_ENDPOINT",
    "Allow",
    "Client",
    "Connection",
    "ConnectionPool",
    "Dialer",
    "EndpointMetadata",
    "EndpointRegistry",
    "EndpointSpec",
    "MuxConnection",
    "PlainDialer",
    "PoolStatistics",
    "RpcServer",
    "ServerLimits",
    "ServerStatistics",
]
