"""Endpoint registry and request dispatch.

An endpoint is an ``async def`` function. Parameters named ``rpc`` and ``connection`` are
injected (the :class:`~synapse_p2p.wire.Request` and a :class:`Connection` describing the
caller's socket), overriding client-supplied keyword arguments of the same names, as in
synapse-p2p 2.5.0.

Dispatch answers every request with exactly one response payload:

* unknown endpoint, or arguments that do not fit the signature: ``bad_request``;
* a handler raising :class:`~synapse_p2p.errors.RemoteError`: that error's code and message;
  raising :class:`~synapse_p2p.errors.ProtocolError`: ``bad_request``;
* any other exception: ``internal_error`` with ``str(exc)``, and the traceback logged at
  ERROR on this node (at most once every 10 s per endpoint, the rest counted);
* a result MsgPack cannot encode: ``internal_error`` naming the endpoint and the type.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import types
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from .._logging import FailureLog
from ..errors import BAD_REQUEST, FORBIDDEN, INTERNAL_ERROR, ProtocolError, RemoteError
from ..wire import ErrorInfo, Request, Response, encode_response

__all__ = [
    "Allow",
    "Connection",
    "EndpointMetadata",
    "EndpointRegistry",
    "EndpointSpec",
    "error_payload",
]

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
#: Who may call an endpoint: ``"anyone"``, ``"members"``, a collection of node ids, or a
#: callable taking the caller's verified node id (``None`` over plaintext).
Allow = str | Collection[str] | Callable[[str | None], bool]
#: Built-ins that stay open to anyone in a secured swarm.
OPEN_BUILTINS = frozenset({"_synapse.ping"})


@dataclass(frozen=True, slots=True)
class Connection:
    """The caller as seen by the server (injected as ``connection``): its socket address,
    ``node_id``, the caller's node id as proved in the secure-channel handshake (``None`` over
    plaintext: a synapse-p2p 2.5.0 node or an unverified client), and ``local_ip``."""

    identifier: str
    ip: str
    port: int
    node_id: str | None = None
    #: This node's own address on the connection (the IP the caller reached), ``""`` if the
    #: stream is not a socket.
    local_ip: str = ""

    @property
    def verified(self) -> bool:
        return self.node_id is not None

    @classmethod
    def from_address(
        cls, ip: str, port: int, node_id: str | None = None, *, local_ip: str = ""
    ) -> Connection:
        ident = hashlib.sha256(f"{ip}:{port}".encode()).hexdigest()[:8]
        return cls(ident, ip, port, node_id, local_ip)


@dataclass(frozen=True, slots=True)
class EndpointMetadata:
    """What ``_synapse.methods`` publishes about an endpoint."""

    name: str
    publish: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """A registered endpoint and what dispatch needs to know about it."""

    name: str
    handler: Handler
    metadata: EndpointMetadata
    signature: inspect.Signature
    inject_rpc: bool
    inject_connection: bool
    #: The access rule given at registration (``"anyone"``, ``"members"``, ids, a callable).
    allow: Allow = "anyone"
    #: ``(fewest, most)`` positional arguments that always bind when the caller gives no
    #: keyword, for a plain signature (positional parameters only, no ``*args``/``**kwargs``,
    #: the injected ``rpc``/``connection`` after the others); else ``None``.
    positional: tuple[int, int] | None = None


def _positional_range(signature: inspect.Signature) -> tuple[int, int] | None:
    """See :attr:`EndpointSpec.positional`. The injected parameters (``rpc``,
    ``connection``), given by keyword, must come last: a positional argument never reaches
    them then."""
    required = total = 0
    injected = False
    for name, param in signature.parameters.items():
        if name in _INJECTED:
            if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                return None
            injected = True
            continue
        if injected or param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            return None
        total += 1
        if param.default is param.empty:
            required += 1  # (parameters without a default come first)
    return required, total


#: The parameters dispatch fills in itself (by keyword).
_INJECTED = frozenset({"rpc", "connection"})


#: Signatures by function, or by code object (and constant defaults) for the closures every
#: node makes of the same ``async def`` (most built-in endpoints): each node of a process
#: registers the same handlers, and one ``inspect.Signature`` with its parameters (~1 KiB)
#: serves them all. Bound methods (keyed by their function) and plain functions are kept
#: apart: binding drops the first parameter.
_SIGNATURES: tuple[
    weakref.WeakKeyDictionary[Any, dict[Any, inspect.Signature]],
    weakref.WeakKeyDictionary[Any, dict[Any, inspect.Signature]],
] = (weakref.WeakKeyDictionary(), weakref.WeakKeyDictionary())

_CONSTANTS = (type(None), bool, int, float, str, bytes)
_MAX_VARIANTS = 8


def _signature_key(function: Any) -> tuple[Any, Any]:
    """What determines ``function``'s signature: its code object and its defaults when
    nothing else can differ between two functions of that code (constant defaults, no
    keyword-only defaults, no wrapper or explicit signature, string annotations), else the
    function itself."""
    if (
        type(function) is types.FunctionType
        and function.__kwdefaults__ is None
        and "__wrapped__" not in function.__dict__
        and "__signature__" not in function.__dict__
        and all(type(a) is str for a in function.__annotations__.values())
    ):
        defaults = function.__defaults__ or ()
        if all(type(d) in _CONSTANTS for d in defaults):
            return function.__code__, tuple((type(d), d) for d in defaults)
    return function, None


def _signature(handler: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(handler)``, shared between handlers of one function or code."""
    bound = inspect.ismethod(handler)
    key, variant = _signature_key(handler.__func__ if bound else handler)  # type: ignore[attr-defined]
    try:
        variants = _SIGNATURES[bound].setdefault(key, {})
    except TypeError:  # not weakly referenceable: no sharing
        return inspect.signature(handler)
    cached = variants.get(variant)
    if cached is None:
        cached = inspect.signature(handler)
        if len(variants) < _MAX_VARIANTS:  # a code object lives on: keep few of its defaults
            variants[variant] = cached
    return cached


def error_payload(request_id: str, code: str, message: str, kind: str | None = None) -> bytes:
    return encode_response(Response(request_id, False, None, ErrorInfo(code, message, kind)))


class EndpointRegistry:
    """Name -> endpoint. Registering a name again replaces the previous handler."""

    def __init__(self) -> None:
        self._specs: dict[str, EndpointSpec] = {}
        self._failures = FailureLog(log)
        #: Called with every request (and the caller's connection) before the endpoint lookup;
        #: it may return a request with different kwargs (e.g. a typed ``broadcast``) and may
        #: raise ``RemoteError``.
        self.pre_dispatch: Callable[[Request, Connection | None], Awaitable[Request]] | None = None
        #: Whether a caller counts as a member (``allow="members"``): by default, a caller
        #: whose node id was proved in the secure-channel handshake (in a secured swarm, only
        #: holders of the secret complete it).
        self.is_member: Callable[[str | None], bool] = _verified
        #: In a secured swarm the node sets this: built-ins (``_synapse.*``, ``_node.*``)
        #: other than ``_synapse.ping`` are members-only.
        self.members_only_builtins = False
        self._rules: dict[str, Callable[[str | None], bool]] = {}

    def add(
        self,
        handler: Handler,
        name: str | None = None,
        *,
        publish: bool = True,
        description: str | None = None,
        allow: Allow = "anyone",
    ) -> EndpointSpec:
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(
                f"endpoint {name or getattr(handler, '__name__', handler)!r} must be "
                "an async function (async def)"
            )
        if name is None:
            name = handler.__name__
        if not isinstance(name, str) or not name:
            raise TypeError("endpoint name must be a non-empty string")
        if description is None:
            description = inspect.getdoc(handler) or ""
        signature = _signature(handler)
        params = signature.parameters
        spec = EndpointSpec(
            name=name,
            handler=handler,
            metadata=EndpointMetadata(name, publish, description),
            signature=signature,
            inject_rpc="rpc" in params,
            inject_connection="connection" in params,
            allow=allow,
            positional=_positional_range(signature),
        )
        rule = self._rule(allow)
        self._specs[name] = spec
        if rule is None:
            self._rules.pop(name, None)
        else:
            self._rules[name] = rule
        return spec

    def _rule(self, allow: Allow) -> Callable[[str | None], bool] | None:
        """The check for ``allow`` (``None``: anyone); ``TypeError``/``ValueError`` if bad."""
        if isinstance(allow, str):
            if allow == "anyone":
                return None
            if allow == "members":
                return lambda node_id: self.is_member(node_id)
            raise ValueError(
                f"allow must be 'anyone', 'members', a collection of node ids or a callable, "
                f"got {allow!r}"
            )
        if callable(allow):
            return allow
        if isinstance(allow, Collection):
            ids = frozenset(allow)
            if not all(isinstance(i, str) for i in ids):
                raise TypeError("allow: node ids must be strings")
            return lambda node_id: node_id is not None and node_id in ids
        raise TypeError(
            f"allow must be 'anyone', 'members', a collection of node ids or a callable, "
            f"got {allow!r}"
        )

    def allowed(self, name: str, node_id: str | None) -> bool:
        """Whether a caller with ``node_id`` (``None``: unverified) may call ``name``."""
        rule = self._rules.get(name)
        if rule is None:
            if not self.members_only_builtins or name in OPEN_BUILTINS:
                return True
            if not name.startswith(("_synapse.", "_node.")):
                return True
            return self.is_member(node_id)
        try:
            return bool(rule(node_id))
        except Exception as exc:
            self._failures.report(name, f"allow rule of endpoint {name!r} raised", exc)
            return False

    def remove(self, name: str) -> None:
        self._specs.pop(name, None)
        self._rules.pop(name, None)

    def get(self, name: str) -> EndpointSpec | None:
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[EndpointSpec]:
        return iter(list(self._specs.values()))

    def handlers(self) -> dict[str, Handler]:
        return {name: spec.handler for name, spec in self._specs.items()}

    async def dispatch(
        self, request: Request, connection: Connection | None = None, *, error_types: bool = False
    ) -> bytes:
        """Run ``request`` and return the encoded response payload (never raises, except for
        cancellation). With ``error_types`` (a client of ours), a handler's failure also
        names its exception class (``RemoteError.type`` on the caller's side)."""
        rid = request.id
        # Who may call is checked first: a refused caller stores nothing (not even the
        # message event of a broadcast, which the pre-dispatch hook would store).
        if (self._rules or self.members_only_builtins) and not self.allowed(
            request.endpoint, None if connection is None else connection.node_id
        ):
            return error_payload(
                rid, FORBIDDEN, f"this caller may not call {request.endpoint!r} (not allowed)"
            )
        if self.pre_dispatch is not None:
            try:
                request = await self.pre_dispatch(request, connection)
            except RemoteError as exc:
                return error_payload(rid, exc.code, exc.message)
            except ProtocolError as exc:
                return error_payload(rid, BAD_REQUEST, str(exc))
        spec = self._specs.get(request.endpoint)
        if spec is None:
            return error_payload(
                rid, BAD_REQUEST, f"Unregistered endpoint called: {request.endpoint}"
            )
        args = request.args
        kwargs = request.kwargs
        if spec.inject_rpc or spec.inject_connection:
            kwargs = dict(kwargs)
            if spec.inject_rpc:
                kwargs["rpc"] = request
            if spec.inject_connection:
                kwargs["connection"] = connection
        positional = spec.positional
        if (
            request.kwargs  # (the caller's own keywords; the injected ones always bind)
            or positional is None
            or not positional[0] <= len(args) <= positional[1]
        ):
            try:  # the general check (the plain case above always binds)
                spec.signature.bind(*args, **kwargs)
            except TypeError as exc:
                return error_payload(
                    rid, BAD_REQUEST, f"invalid arguments for {spec.name!r}: {exc}"
                )
        try:
            result = await spec.handler(*args, **kwargs)
        except RemoteError as exc:
            return error_payload(rid, exc.code, exc.message, exc.type if error_types else None)
        except ProtocolError as exc:
            return error_payload(rid, BAD_REQUEST, str(exc))
        except Exception as exc:
            self._failures.report(spec.name, f"endpoint {spec.name!r} raised", exc)
            kind = type(exc).__name__ if error_types else None
            return error_payload(rid, INTERNAL_ERROR, str(exc) or type(exc).__name__, kind)
        try:
            return encode_response(Response(rid, True, result, None))
        except (TypeError, ValueError, OverflowError) as exc:
            log.warning("result of endpoint %r cannot be encoded: %s", spec.name, exc)
            return error_payload(
                rid,
                INTERNAL_ERROR,
                f"result of endpoint {spec.name!r} cannot be encoded: {exc}",
            )


def _verified(node_id: str | None) -> bool:
    return node_id is not None
