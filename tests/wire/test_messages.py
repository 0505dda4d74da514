from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p.errors import ProtocolError
from synapse_p2p.wire import (
    ErrorInfo,
    MessageError,
    Request,
    Response,
    decode_message,
    encode_frame,
    encode_request,
    encode_response,
    unpack_payload,
)


def decode(payload: bytes) -> Any:
    return decode_message(unpack_payload(payload))


def test_request_bytes_match_the_reference_example() -> None:
    # The 55-byte example frame from the synapse-p2p 2.5.0 protocol description.
    payload = encode_request(Request("sum", "abc", [1, 2], {"b": b"\x00"}))
    expected = (
        b"\x85\xa8endpoint\xa3sum\xa2id\xa3abc\xa4args\x92\x01\x02"
        b"\xa6kwargs\x81\xa1b\xc4\x01\x00\xa4type\xa7request"
    )
    assert payload == expected
    assert encode_frame(payload)[:4] == b"\x00\x00\x00\x37"


def test_response_shapes() -> None:
    ok = msgpack.unpackb(encode_response(Response("1", True, 3)))
    assert list(ok) == ["id", "ok", "result", "error", "type"]
    assert ok == {"id": "1", "ok": True, "result": 3, "error": None, "type": "response"}
    err = msgpack.unpackb(
        encode_response(Response("1", False, None, ErrorInfo("bad_request", "x")))
    )
    assert err["error"] == {"code": "bad_request", "message": "x"}
    assert list(err["error"]) == ["code", "message"]


def test_dataclass_results_are_maps_and_sets_are_not_encodable() -> None:
    @dataclass
    class Point:
        x: int
        y: list[int]

    decoded = msgpack.unpackb(encode_response(Response("1", True, [Point(1, [2])])))
    assert decoded["result"] == [{"x": 1, "y": [2]}]
    with pytest.raises(TypeError, match="set"):
        encode_response(Response("1", True, {1, 2}))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.text(min_size=1, max_size=30),
    st.text(max_size=20),
    st.lists(values, max_size=4),
    st.dictionaries(st.text(max_size=8), values, max_size=4),
)
def test_request_round_trip(
    endpoint: str, rid: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    assert decode(encode_request(Request(endpoint, rid, args, kwargs))) == Request(
        endpoint, rid, args, kwargs
    )


@given(st.text(max_size=20), values)
def test_response_round_trip(rid: str, result: Any) -> None:
    assert decode(encode_response(Response(rid, True, result))) == Response(rid, True, result)


def test_missing_type_means_request_and_unknown_fields_are_ignored() -> None:
    payload = msgpack.packb({"endpoint": "x", "id": "7", "future": 1})
    assert decode(payload) == Request("x", "7", [], {})


@pytest.mark.parametrize(
    ("obj", "message", "request_id"),
    [
        ({"endpoint": "x", "id": "1", "args": "ab"}, "args must be an array, got string", "1"),
        ({"endpoint": "x", "id": "1", "args": {"a": 1}}, "args must be an array, got map", "1"),
        ({"endpoint": "x", "id": "1", "kwargs": [1]}, "kwargs must be a map, got array", "1"),
        ({"endpoint": 5, "id": "1"}, "endpoint must be a string, got int", "1"),
        ({"id": "1"}, "request has no endpoint", "1"),
        ({"endpoint": "x", "id": [1]}, "request id must be a string, got array", ""),
        ({"endpoint": "x", "id": "2", "type": "notify"}, "unknown RPC message type", "2"),
        ({"endpoint": "x", "kwargs": {b"k": 1}}, "kwargs keys must be strings", ""),
        ({"type": "response", "id": "1", "ok": "yes"}, "ok must be a bool", "1"),
        (
            {"type": "response", "id": "1", "ok": False, "error": {"code": 1}},
            "code and message",
            "1",
        ),
    ],
)
def test_wrong_field_types_are_clear_errors(
    obj: dict[str, Any], message: str, request_id: str
) -> None:
    with pytest.raises(MessageError, match=message) as info:
        decode(msgpack.packb(obj))
    assert info.value.request_id == request_id


def test_int_ids_are_coerced_like_the_reference() -> None:
    assert decode(msgpack.packb({"endpoint": "x", "id": 5})).id == "5"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty frame"),
        (msgpack.packb(5), "must be a map, got int"),
        (msgpack.packb([1, 2]), "must be a map, got array"),
        (msgpack.packb({1: "a"}, strict_types=False), "map keys must be strings"),
        (msgpack.packb({"endpoint": "x", "kwargs": {"a": {2: 3}}}), "map keys must be strings"),
        (msgpack.packb({"endpoint": "x"}) + b"\x01", "extra data"),
        (b"\x85\xa8endpoint", "truncated"),
        (b"\xc1", "malformed"),
        (b"\xa2\xff\xfe", "invalid UTF-8"),
        (b"\x91" * 100_000 + b"\x01", "nested too deeply"),
        (b"\xdd\xff\xff\xff\xff", "malformed"),
    ],
)
def test_garbage_payloads_are_clear_protocol_errors(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(payload)


def test_yielding_decode_gives_the_same_result() -> None:
    obj = {"endpoint": "x", "args": [[[]], {"a": [1, {"b": []}]}], "kwargs": {}}
    payload = msgpack.packb(obj)
    assert unpack_payload(payload, yielding=True) == unpack_payload(payload) == obj


def test_floats_and_bytes_keep_their_types() -> None:
    req = decode(encode_request(Request("x", "1", [b"\x00\xff", 1.5, math.inf], {})))
    assert isinstance(req, Request)
    assert req.args == [b"\x00\xff", 1.5, math.inf]
