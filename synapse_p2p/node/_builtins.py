"""The built-in endpoints every node serves (not listed by ``_synapse.methods``)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..errors import BAD_REQUEST, INTERNAL_ERROR, RemoteError

if TYPE_CHECKING:
    from ..rpc import Connection
    from ._node import Node

__all__ = ["register_builtins"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _check_context(context: Any) -> dict[str, Any]:
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise RemoteError(BAD_REQUEST, f"context must be a map, got {type(context).__name__}")
    return context


def register_builtins(node: Node) -> None:
    def builtin(name: str) -> Callable[[F], F]:
        decorator: Callable[[F], F] = node.endpoint(name, publish=False)
        return decorator

    @builtin("_synapse.ping")
    async def ping() -> str:
        return "pong"

    @builtin("_synapse.info")
    async def info() -> dict[str, Any]:
        return node.node_info()

    @builtin("_synapse.methods")
    async def methods() -> list[dict[str, Any]]:
        return [
            {"name": meta.name, "publish": True, "description": meta.description}
            for meta in node.endpoint_metadata.values()
            if meta.publish
        ]

    @builtin("_synapse.endpoints")
    async def endpoints() -> list[dict[str, Any]]:
        """Our extension of ``_synapse.methods`` (whose entries keep 2.5.0's exact shape):
        the published endpoints with their parameters."""
        return [
            {
                "name": spec.name,
                "description": spec.metadata.description,
                "parameters": _parameters(spec.signature),
            }
            for spec in node._registry
            if spec.metadata.publish
        ]

    @builtin("_synapse.stats")
    async def stats() -> dict[str, Any]:
        """Our extension: the node's counters (``node.statistics()``) and its periodic jobs."""
        snapshot: dict[str, Any] = _plain(
            {
                "node": dataclasses.asdict(node.statistics()),
                "scheduler": {
                    name: dataclasses.asdict(job)
                    for name, job in node.scheduler.statistics().jobs.items()
                },
            }
        )
        return snapshot

    @builtin("_synapse.peers")
    async def peers() -> list[dict[str, Any]]:
        return [peer.to_dict() for peer in list(node.peers.values())]

    @builtin("_synapse.artifacts")
    async def artifacts() -> list[dict[str, Any]]:
        return [a.descriptor().to_dict() for a in list(node.artifact_directory.values())]

    @builtin("_synapse.artifact.get")
    async def artifact_get(name: str) -> dict[str, Any]:
        artifact = node.artifact_directory.get(name) if isinstance(name, str) else None
        if artifact is None:
            raise RemoteError(BAD_REQUEST, f"unknown artifact: {name}")
        return artifact.to_dict()

    @builtin("_node.info")
    async def node_info() -> dict[str, Any]:
        return {
            "name": node.name,
            "role": node.role,
            "description": node.description,
            "capabilities": [c.name for c in node.capabilities],
        }

    @builtin("_node.capabilities")
    async def capabilities() -> list[dict[str, Any]]:
        return [c.to_dict() for c in node.capabilities]

    @builtin("_node.ask")
    async def node_ask(
        task: str, context: dict[str, Any] | None = None, lease: float | None = None
    ) -> Any:
        # ``lease`` (our extension, never sent to 2.5.0 nodes): the caller gives up after that
        # many seconds, so the handler is cancelled then instead of running on unseen.
        context = _check_context(context)
        if lease is None:
            return await node._run_ask(task, context)
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease < 1e6:
            raise RemoteError(BAD_REQUEST, "lease must be a positive number of seconds")
        try:
            with anyio.fail_after(lease):
                return await node._run_ask(task, context)
        except TimeoutError:
            raise RemoteError(
                INTERNAL_ERROR, f"the ask handler was cancelled at the end of its {lease:g} s lease"
            ) from None

    @builtin("synapse.ask")
    async def swarm_ask(
        task: str,
        context: dict[str, Any] | None = None,
        broadcast: Any = None,
        connection: Connection | None = None,
    ) -> Any:
        context = _check_context(context)
        if broadcast is None:
            return await node._run_ask(task, context)
        return await node._deferred_ask(task, context, broadcast, connection)


_INJECTED = ("rpc", "connection")


def _parameters(signature: inspect.Signature) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for param in signature.parameters.values():
        if param.name in _INJECTED:
            continue
        entry: dict[str, Any] = {"name": param.name, "kind": param.kind.name.lower()}
        if param.annotation is not inspect.Parameter.empty:
            annotation = param.annotation
            entry["type"] = (
                annotation
                if isinstance(annotation, str)
                else getattr(annotation, "__name__", str(annotation))
            )
        if param.default is not inspect.Parameter.empty:
            entry["default"] = _plain(param.default)
        out.append(entry)
    return out


def _plain(value: Any) -> Any:
    """``value`` with only msgpack-friendly types (datetimes as ISO strings, others repr)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return repr(value)


def no_ask_handler() -> RemoteError:
    return RemoteError(INTERNAL_ERROR, "node has no ask handler")
