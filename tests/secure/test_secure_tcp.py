"""The secure channel on real loopback TCP (the project's transport), under both backends."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from synapse_p2p import Identity
from synapse_p2p.errors import HandshakeError, HandshakeTimeout, PlaintextPeer, RecordError
from synapse_p2p.rpc import EndpointRegistry, RpcServer
from synapse_p2p.secure import (
    SecureAttribute,
    SecurityPolicy,
    accept_maybe_secure,
    secure_accept,
    secure_connect,
)
from synapse_p2p.transport import TcpTransport
from synapse_p2p.wire import FrameDecoder, Request, encode_frame, encode_request, unpack_payload

pytestmark = pytest.mark.anyio

SERVER, CLIENT = Identity.generate(), Identity.generate()
Handler = Callable[[ByteStream], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    """A loopback TCP server running ``handler`` per connection; yields its port."""
    (listener,) = await TcpTransport().listen("127.0.0.1", 0)
    port = int(listener.extra(SocketAttribute.local_port))

    async def accept_loop() -> None:
        while True:
            stream = await listener.accept()  # type: ignore[attr-defined]
            tg.start_soon(handler, stream)  # type: ignore[arg-type]

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(accept_loop)
            try:
                yield port
            finally:
                tg.cancel_scope.cancel()
    finally:
        await listener.aclose()


class Outcomes:
    """What the server side saw, one item per connection (bounded)."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[Any](16)

    async def next(self) -> Any:
        with anyio.fail_after(10):
            return await self.receive.receive()


async def echo(stream: ByteStream) -> None:
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except RecordError:
            raise  # (also a BrokenResourceError) for the server to report
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


def secure_echo_server(outcomes: Outcomes, secret: Any = (), timeout: float = 5.0) -> Handler:
    async def handle(stream: ByteStream) -> None:
        try:
            secure, peer = await secure_accept(stream, SERVER, secret=secret, timeout=timeout)
        except Exception as exc:
            await outcomes.send.send(exc)
            return
        assert peer == secure.peer.node_id
        await outcomes.send.send(secure.peer)
        try:
            await echo(secure)
        except RecordError as exc:
            await outcomes.send.send(exc)

    return handle


async def connect(port: int, **kwargs: Any) -> tuple[Any, str]:
    stream = await TcpTransport().connect("127.0.0.1", port, timeout=5)
    return await secure_connect(stream, CLIENT, **kwargs)


async def receive_exactly(stream: ByteStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive()
    return bytes(data)


@pytest.mark.parametrize("size", [1, 1000, 1024 * 1024])
async def test_handshake_and_echo(size: int) -> None:
    outcomes = Outcomes()
    async with serving(secure_echo_server(outcomes)) as port:
        secure, peer = await connect(port, expected_node_id=SERVER.node_id)
        assert peer == SERVER.node_id
        assert (await outcomes.next()).node_id == CLIENT.node_id
        assert secure.extra(SecureAttribute.peer_node_id) == SERVER.node_id
        assert secure.extra(SocketAttribute.remote_address)[1] == port
        payload = os.urandom(size)
        async with anyio.create_task_group() as tg:
            tg.start_soon(secure.send, payload)  # echo runs while we send: no deadlock
            assert await receive_exactly(secure, size) == payload
        await secure.aclose()


async def test_wrong_secret_fails_on_both_sides() -> None:
    outcomes = Outcomes()
    async with serving(secure_echo_server(outcomes, secret="right")) as port:
        with pytest.raises(HandshakeError, match="not in its keyring"):
            await connect(port, secret="wrong")
        server_error = await outcomes.next()
        assert isinstance(server_error, HandshakeError)
        assert "not in our keyring" in str(server_error)
        # no secret at all: refused before any identity is checked, with a reason
        with pytest.raises(HandshakeError, match="requires a swarm secret"):
            await connect(port)
        assert "requires one" in str(await outcomes.next())


async def test_keyring_rotation_accepts_old_and_new() -> None:
    outcomes = Outcomes()
    async with serving(secure_echo_server(outcomes, secret=["new", "old"])) as port:
        for secret, index in [("old", 1), ("new", 0), (["new", "old"], 0)]:
            secure, peer = await connect(port, secret=secret)
            assert peer == SERVER.node_id
            seen = await outcomes.next()
            assert seen.node_id == CLIENT.node_id
            assert seen.secret_index == index  # which keyring secret the client proved
            await secure.send(b"ping")
            assert await secure.receive() == b"ping"
            await secure.aclose()


async def test_disjoint_keyrings_never_connect() -> None:
    outcomes = Outcomes()
    async with serving(secure_echo_server(outcomes, secret=["a", "b"])) as port:
        for secret in (["c"], ["c", "a"], "d"):  # the initiator only ever uses its primary
            with pytest.raises(HandshakeError):
                await connect(port, secret=secret)
            assert isinstance(await outcomes.next(), HandshakeError)


def policy_server(outcomes: Outcomes, policy: SecurityPolicy) -> Handler:
    async def handle(stream: ByteStream) -> None:
        try:
            accepted = await accept_maybe_secure(stream, SERVER, policy, timeout=5)
        except Exception as exc:
            await outcomes.send.send(exc)
            return
        await outcomes.send.send(accepted.peer)
        await echo(accepted.stream)

    return handle


async def test_plaintext_frame_is_detected_and_served_unchanged() -> None:
    outcomes = Outcomes()
    policy = SecurityPolicy(())
    async with serving(policy_server(outcomes, policy)) as port:
        frame = encode_frame(encode_request(Request("sum", "1", [1, 2])))
        stream = await TcpTransport().connect("127.0.0.1", port, timeout=5)
        async with stream:
            await stream.send(frame)
            assert await receive_exactly(stream, len(frame)) == frame
        assert await outcomes.next() is None  # plaintext: no verified peer
        # the same server also speaks the secure channel, and remembers the verified id
        secure, _ = await connect(port)
        assert (await outcomes.next()).node_id == CLIENT.node_id
        assert not policy.may_use_plaintext(CLIENT.node_id)
        assert policy.may_use_plaintext(Identity.generate().node_id)
        await secure.aclose()


async def test_plaintext_is_refused_with_a_secret() -> None:
    outcomes = Outcomes()
    policy = SecurityPolicy("s3cret")
    assert not policy.accepts_plaintext
    assert not policy.may_use_plaintext(None)
    async with serving(policy_server(outcomes, policy)) as port:
        stream = await TcpTransport().connect("127.0.0.1", port, timeout=5)
        async with stream:
            await stream.send(encode_frame(encode_request(Request("sum", "1", [1, 2]))))
            decoder = FrameDecoder()
            frames: list[bytes] = []
            with anyio.fail_after(5):
                while not frames:
                    frames = decoder.feed(await stream.receive())
            reply = unpack_payload(frames[0])
            assert reply["error"]["code"] == "bad_request"
            assert "secret" in reply["error"]["message"]
        assert isinstance(await outcomes.next(), HandshakeError)
        secure, _ = await connect(port, secret="s3cret")
        assert (await outcomes.next()).node_id == CLIENT.node_id
        await secure.aclose()


async def test_a_plaintext_server_is_reported_as_plaintext_peer() -> None:
    """A plaintext RPC server (as 2.5.0: a bare RpcServer) answers the preamble "frame too
    large"."""
    server = RpcServer(EndpointRegistry())
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        stream = await TcpTransport().connect("127.0.0.1", port, timeout=5)
        with pytest.raises(PlaintextPeer, match=r"2\.5\.0"):
            await secure_connect(stream, CLIENT)
        tg.cancel_scope.cancel()


async def test_a_stalled_handshake_times_out_on_both_sides() -> None:
    outcomes = Outcomes()
    async with serving(secure_echo_server(outcomes, timeout=0.3)) as port:
        stream = await TcpTransport().connect("127.0.0.1", port, timeout=5)
        async with stream:
            await stream.send(b"\xf3SN\x01\x00")  # a preamble, then nothing
            assert isinstance(await outcomes.next(), HandshakeTimeout)
            with pytest.raises(anyio.EndOfStream):  # the server closed the connection
                with anyio.fail_after(5):
                    await stream.receive()

    async def silent(stream: ByteStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    async with serving(silent) as port:
        with pytest.raises(HandshakeTimeout, match=r"0\.3 s"):
            await connect(port, timeout=0.3)


async def test_tampered_ciphertext_closes_the_connection() -> None:
    outcomes = Outcomes()
    async with serving(secure_echo_server(outcomes)) as port:
        secure, _ = await connect(port)
        assert (await outcomes.next()).node_id == CLIENT.node_id
        await secure.send(b"fine")
        assert await secure.receive() == b"fine"
        sealed = bytearray(secure._session.seal(b"evil"))
        sealed[5] ^= 0x01
        await secure.transport_stream.send(bytes(sealed))
        error = await outcomes.next()
        assert isinstance(error, RecordError)
        assert "authentication" in str(error)
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            with anyio.fail_after(5):
                await secure.receive()


async def test_a_refusal_at_a_peeking_server_tells_the_client_why() -> None:
    outcomes = Outcomes()
    async with serving(policy_server(outcomes, SecurityPolicy(["s3cret"]))) as port:
        with pytest.raises(HandshakeError, match="requires a swarm secret") as caught:
            await connect(port)
        assert not isinstance(caught.value, PlaintextPeer)
        assert "requires one" in str(await outcomes.next())
    async with serving(policy_server(outcomes, SecurityPolicy(()))) as port:
        with pytest.raises(HandshakeError, match="has no swarm secret"):
            await connect(port, secret="s3cret")
        assert "has none" in str(await outcomes.next())


async def test_rpc_frames_run_unchanged_over_the_secure_stream() -> None:
    """The RPC layer's frame channel over a SecureStream: many frames, one of 1 MiB, both ways;
    a tampered record surfaces as the channel's ConnectionLost."""
    from synapse_p2p.errors import ConnectionLost
    from synapse_p2p.rpc._channel import FrameChannel

    outcomes = Outcomes()

    async def frame_echo(stream: ByteStream) -> None:
        secure, _ = await secure_accept(stream, SERVER)
        channel = FrameChannel(secure, max_frame_size=4 * 1024 * 1024)
        try:
            while (payload := await channel.receive_payload()) is not None:
                await channel.send(payload)
        except ConnectionLost as exc:
            await outcomes.send.send(exc)
        finally:
            await channel.aclose()

    async with serving(frame_echo) as port:
        secure, _ = await connect(port)
        channel = FrameChannel(secure, max_frame_size=4 * 1024 * 1024)
        payloads = [os.urandom(n) for n in (0, 1, 100, 70_000, 1024 * 1024, 5)]
        async with anyio.create_task_group() as tg:

            async def send_all() -> None:
                for payload in payloads:
                    await channel.send(payload)

            tg.start_soon(send_all)
            for payload in payloads:
                assert await channel.receive_payload() == payload
        sealed = bytearray(secure._session.seal(b"\x00\x00\x00\x01x"))
        sealed[-1] ^= 0x80
        await secure.transport_stream.send(bytes(sealed))
        error = await outcomes.next()
        assert "authentication" in str(error)
        await channel.aclose()
