"""RPC message shapes and the MsgPack codec, sans-IO.

The shapes are those of synapse-p2p 2.5.0, byte for byte:

* request: ``{"endpoint", "id", "args", "kwargs", "type": "request"}``
* response: ``{"id", "ok", "result", "error", "type": "response"}``, ``error`` nil or
  ``{"code", "message"}``

Strings are MsgPack str, ``bytes`` are MsgPack bin, map keys must be str (or bin) everywhere.
Decoding is strict about what matters (types of the fields we use) and tolerant of what does
not (unknown fields are ignored, so newer peers may add some).

Decoding limits: msgpack bounds every string, bin, array and map length by the payload size,
so a frame cannot make the decoder allocate more than a constant factor of its own size; nesting
is bounded by msgpack's internal stack. :func:`unpack_payload` with ``yielding=True`` installs
Python-level hooks so that a worker thread decoding a large adversarial frame (millions of tiny
containers) regularly releases the GIL to the event loop.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import msgpack

from ..errors import BAD_REQUEST, ProtocolError

__all__ = [
    "ErrorInfo",
    "Message",
    "MessageError",
    "Request",
    "Response",
    "decode_message",
    "encode_request",
    "encode_response",
    "pack",
    "unpack_payload",
]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The ``error`` map of a failed response.

    ``type`` (our extension, sent only to our own clients, which opened a session: 2.5.0
    accepts exactly ``code`` and ``message``) is the class name of the exception the handler
    raised, e.g. ``"KeyError"``.
    """

    code: str
    message: str
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """An RPC request (``type: "request"``)."""

    endpoint: str
    id: str = ""
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """An RPC response (``type: "response"``)."""

    id: str
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None


Message: TypeAlias = Request | Response


class MessageError(ProtocolError):
    """A decodable payload that is not a valid message.

    ``request_id`` is the id of the offending request when it could be read (so the error
    response can echo it), else ``""``. ``code`` is the wire code to answer with.
    """

    def __init__(self, message: str, *, request_id: str = "", code: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.code = code


def _default(obj: Any) -> Any:
    # Dataclasses become maps (the reference packs results through dataclasses.asdict), enums
    # their value. Anything else is not encodable.
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(f"cannot serialize {type(obj).__name__!r} object")


def pack(obj: Any) -> bytes:
    """Encode one value as MsgPack (str as str, bytes as bin, dataclasses as maps)."""
    return msgpack.packb(obj, use_bin_type=True, default=_default)  # type: ignore[no-any-return]


def encode_request(request: Request) -> bytes:
    """Encode a request payload (no frame header)."""
    return pack(
        {
            "endpoint": request.endpoint,
            "id": request.id,
            "args": request.args,
            "kwargs": request.kwargs,
            "type": "request",
        }
    )


def encode_response(response: Response) -> bytes:
    """Encode a response payload (no frame header).

    Raises ``TypeError``/``ValueError``/``OverflowError`` if ``result`` cannot be encoded.
    """
    error = response.error
    return pack(
        {
            "id": response.id,
            "ok": response.ok,
            "result": response.result,
            "error": None if error is None else _error_map(error),
            "type": "response",
        }
    )


def _error_map(error: ErrorInfo) -> dict[str, str]:
    if error.type is None:
        return {"code": error.code, "message": error.message}
    return {"code": error.code, "message": error.message, "type": error.type}


def _identity(obj: Any) -> Any:
    return obj


_UNPACK_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


def unpack_payload(payload: bytes, *, yielding: bool = False) -> Any:
    """Decode one MsgPack payload, raising :class:`ProtocolError` with a clear message."""
    if not payload:
        raise ProtocolError("empty frame: a frame must carry one MsgPack map")
    try:
        if yielding:
            return msgpack.unpackb(
                payload, raw=False, strict_map_key=True, list_hook=_identity, object_hook=_identity
            )
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except msgpack.ExtraData:
        raise ProtocolError("extra data after the message inside the frame") from None
    except msgpack.StackError:
        raise ProtocolError("message nested too deeply") from None
    except msgpack.OutOfData:
        raise ProtocolError("truncated message inside the frame") from None
    except msgpack.FormatError as exc:
        raise ProtocolError(f"malformed MsgPack: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8 in a string: {exc.reason}") from None
    except _UNPACK_ERRORS as exc:
        text = str(exc)
        if "map key" in text:
            text = "map keys must be strings"
        elif "incomplete input" in text:
            raise ProtocolError("truncated message inside the frame") from None
        raise ProtocolError(f"malformed MsgPack: {text}" if text else "malformed MsgPack") from None


def _coerce_id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _type_name(value: Any) -> str:
    return {
        dict: "map",
        list: "array",
        str: "string",
        bytes: "bin",
        bool: "bool",
        int: "int",
        float: "float",
    }.get(type(value), type(value).__name__)


def decode_message(obj: Any) -> Message:
    """Validate a decoded payload and build a :class:`Request` or :class:`Response`."""
    if not isinstance(obj, dict):
        raise MessageError(f"message must be a map, got {_type_name(obj)}")
    kind = obj.get("type", "request")
    if kind == "request":
        return _request_from(obj)
    if kind == "response":
        return _response_from(obj)
    rid = _coerce_id(obj.get("id")) or ""
    raise MessageError(f"unknown RPC message type: {kind!r}", request_id=rid)


def _request_from(obj: Mapping[str, Any]) -> Request:
    rid = _coerce_id(obj.get("id", ""))
    if rid is None:
        raise MessageError(f"request id must be a string, got {_type_name(obj['id'])}")
    endpoint = obj.get("endpoint")
    if endpoint is None:
        raise MessageError("request has no endpoint", request_id=rid)
    if not isinstance(endpoint, str):
        raise MessageError(
            f"request endpoint must be a string, got {_type_name(endpoint)}", request_id=rid
        )
    args = obj.get("args", [])
    if args is None:
        args = []
    elif not isinstance(args, list):
        raise MessageError(f"request args must be an array, got {_type_name(args)}", request_id=rid)
    kwargs = obj.get("kwargs", {})
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        raise MessageError(
            f"request kwargs must be a map, got {_type_name(kwargs)}", request_id=rid
        )
    elif not all(type(key) is str for key in kwargs):
        raise MessageError("request kwargs keys must be strings", request_id=rid)
    return Request(endpoint=endpoint, id=rid, args=args, kwargs=kwargs)


def _response_from(obj: Mapping[str, Any]) -> Response:
    rid = _coerce_id(obj.get("id", ""))
    if rid is None:
        raise MessageError(f"response id must be a string, got {_type_name(obj['id'])}")
    ok = obj.get("ok")
    if not isinstance(ok, bool):
        raise MessageError(f"response ok must be a bool, got {_type_name(ok)}", request_id=rid)
    error = obj.get("error")
    info: ErrorInfo | None = None
    if error is not None:
        if not isinstance(error, dict):
            raise MessageError(
                f"response error must be a map or nil, got {_type_name(error)}", request_id=rid
            )
        code, message = error.get("code"), error.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise MessageError("response error needs string code and message", request_id=rid)
        kind = error.get("type")
        info = ErrorInfo(code, message, kind if isinstance(kind, str) and kind else None)
    return Response(id=rid, ok=ok, result=obj.get("result"), error=info)
