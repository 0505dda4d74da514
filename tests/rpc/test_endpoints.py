"""Endpoint dispatch: a failing handler is answered and logged on the node where it failed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from synapse_p2p.rpc import EndpointRegistry
from synapse_p2p.wire import Request, Response, decode_message, unpack_payload

pytestmark = pytest.mark.anyio


async def test_handler_failures_are_logged_with_a_traceback_rate_limited(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = EndpointRegistry()

    async def broken(n: int) -> int:
        return {"a": 1}[str(n)]  # KeyError

    async def also_broken() -> None:
        raise ValueError("bad")

    registry.add(broken)
    registry.add(also_broken)
    with caplog.at_level(logging.ERROR, logger="synapse_p2p.rpc._endpoints"):
        for i in range(5):
            payload = await registry.dispatch(Request("broken", f"r{i}", [i], {}))
            response = decode_message(unpack_payload(payload))
            assert isinstance(response, Response)
            assert response.error is not None
            assert response.error.code == "internal_error"
        await registry.dispatch(Request("also_broken", "x", [], {}))
    records = [r for r in caplog.records if r.levelno == logging.ERROR]
    # One report per endpoint within the interval, each with its traceback.
    assert [r.getMessage() for r in records] == [
        "endpoint 'broken' raised KeyError: '0'",
        "endpoint 'also_broken' raised ValueError: bad",
    ]
    assert all(r.exc_info is not None for r in records)


async def test_bound_methods_of_one_function_share_a_signature_and_each_binds_its_own(
    anyio_backend: str,
) -> None:
    class Service:
        def __init__(self, tag: str) -> None:
            self.tag = tag

        async def hello(self, name: str, *, loud: bool = False) -> str:
            text = f"{self.tag}:{name}"
            return text.upper() if loud else text

    specs = []
    for tag in ("a", "b"):
        registry = EndpointRegistry()
        specs.append((registry, registry.add(Service(tag).hello)))
    assert specs[0][1].signature is specs[1][1].signature
    assert list(specs[0][1].signature.parameters) == ["name", "loud"]
    for (registry, _spec), want in zip(specs, ["A:X", "B:X"], strict=True):
        payload = await registry.dispatch(Request("hello", "1", ["x"], {"loud": True}))
        response = decode_message(unpack_payload(payload))
        assert isinstance(response, Response)
        assert response.result == want
        bad = await registry.dispatch(Request("hello", "2", ["x"], {"loud": True, "no": 1}))
        refused = decode_message(unpack_payload(bad))
        assert isinstance(refused, Response)
        assert refused.error is not None
        assert refused.error.code == "bad_request"


async def test_closures_of_one_def_share_a_signature_unless_their_defaults_differ(
    anyio_backend: str,
) -> None:
    def make(default: int) -> tuple[Any, Any, Any]:
        async def plain(a: int, b: int) -> int:
            return a + b + default

        async def constant(a: int, b: int = 5, c: str | None = None) -> int:
            return a + b + default

        async def defaulted(a: int, b: int = default) -> int:
            return a + b

        return plain, constant, defaulted

    (plain1, constant1, defaulted1), (plain2, constant2, defaulted2) = make(1), make(100)
    registries = [EndpointRegistry(), EndpointRegistry()]
    plain_specs = [r.add(f, "plain") for r, f in zip(registries, [plain1, plain2], strict=True)]
    assert plain_specs[0].signature is plain_specs[1].signature
    pairs = zip(registries, [constant1, constant2], strict=True)
    constant_specs = [r.add(f, "constant") for r, f in pairs]
    assert constant_specs[0].signature is constant_specs[1].signature
    pairs = zip(registries, [defaulted1, defaulted2], strict=True)
    defaulted_specs = [r.add(f, "defaulted") for r, f in pairs]
    assert defaulted_specs[0].signature is not defaulted_specs[1].signature
    for registry, want in zip(registries, [3, 102], strict=True):
        payload = await registry.dispatch(Request("defaulted", "1", [], {"a": 2}))
        response = decode_message(unpack_payload(payload))
        assert isinstance(response, Response)
        assert response.result == want


async def test_arguments_beside_the_injected_ones_are_checked_on_the_fast_path(
    anyio_backend: str,
) -> None:
    """An endpoint taking ``connection``/``rpc`` binds plain positional calls without
    ``inspect`` (the injected parameters come by keyword), and still answers a call that
    cannot bind with ``bad_request``; one whose injected parameter comes first is checked
    the general way."""
    from synapse_p2p.rpc import Connection

    registry = EndpointRegistry()
    seen: list[Any] = []

    async def probe(message: dict[str, Any], extra: int = 0, connection: Any = None) -> int:
        seen.append((message, extra, connection))
        return extra

    async def first(rpc: Any, n: int) -> int:
        return n

    async def keyword(n: int, *, connection: Any) -> int:
        return n

    spec = registry.add(probe)
    assert spec.positional == (1, 2)
    assert registry.add(first).positional is None
    assert registry.add(keyword).positional == (1, 1)
    conn = Connection.from_address("127.0.0.1", 1, "id")

    async def call(name: str, *args: Any, **kwargs: Any) -> Response:
        payload = await registry.dispatch(Request(name, "r", list(args), kwargs), conn)
        response = decode_message(unpack_payload(payload))
        assert isinstance(response, Response)
        return response

    async def refused(name: str, *args: Any, **kwargs: Any) -> str:
        error = (await call(name, *args, **kwargs)).error
        assert error is not None
        assert error.code == "bad_request"
        return error.message

    assert (await call("probe", {"a": 1})).result == 0
    assert (await call("probe", {"a": 1}, 3)).result == 3
    assert seen == [({"a": 1}, 0, conn), ({"a": 1}, 3, conn)]
    for bad in ([], [{}, 1, 2], [{}, 1, 2, 3]):
        assert "invalid arguments for 'probe'" in await refused("probe", *bad)
    await refused("probe", {}, nope=1)
    assert len(seen) == 2
    assert (await call("first", n=5)).result == 5
    await refused("first", 5)  # (it would be ``rpc``)
    assert (await call("keyword", 7)).result == 7
    await refused("keyword", 7, 8)
