"""``SecureStream.send_nowait`` and the write paths of the secure stream.

The contract is the lean TCP streams' (see ``FrameChannel.send``): ``send_nowait(data)``
returns how many bytes of ``data`` were taken, and the caller sends the rest. A record uses its
nonce when it is sealed, so a record the underlying stream takes only in part must be finished
first on the next write, and its plaintext must not be reported as taken until it has left
whole. The properties below drive a SecureStream over an underlying stream that takes random
amounts (any number of bytes, like a trio socket; or all or nothing, like the asyncio
transport), and check after every call that

* what was reported as taken is on the wire (decodable by the peer), and
* the wire never holds more than what the caller has handed over, in order, once each.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ByteStream, SocketAttribute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synapse_p2p.secure import MAX_RECORD, PeerIdentity, RecordLayer, SecureStream
from synapse_p2p.secure._noise import CipherState
from synapse_p2p.secure._records import MAX_PLAINTEXT, nonce
from tests.secure.test_secure_tcp import CLIENT, SERVER, serving

pytestmark = pytest.mark.anyio

PEER = PeerIdentity("0" * 64, b"\x00" * 32)


def layers() -> tuple[RecordLayer, RecordLayer]:
    """A sender's and a receiver's record layer with matching keys."""
    k1, k2 = os.urandom(32), os.urandom(32)
    return (
        RecordLayer(CipherState(k1), CipherState(k2)),
        RecordLayer(CipherState(k2), CipherState(k1)),
    )


class ScriptedStream(ByteStream):
    """An underlying stream whose ``send_nowait`` takes the amounts a script says (then
    everything); ``send`` takes everything. What was written is in ``wire``."""

    def __init__(self, takes: Iterator[int], all_or_nothing: bool) -> None:
        self.takes = takes
        self.all_or_nothing = all_or_nothing
        self.wire = bytearray()

    def send_nowait(self, data: bytes) -> int:
        n = min(next(self.takes, len(data)), len(data))
        if self.all_or_nothing and n < len(data):
            n = 0
        self.wire += memoryview(data)[:n]
        return n

    async def send(self, item: bytes) -> None:
        self.wire += item
        await anyio.lowlevel.checkpoint()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise anyio.EndOfStream

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {}


class Peer:
    """Decodes the wire as the peer would; checks each record's size."""

    def __init__(self, layer: RecordLayer, wire: bytearray) -> None:
        self.layer = layer
        self.wire = wire
        self.read = 0
        self.plain = bytearray()

    def catch_up(self) -> bytes:
        new = bytes(self.wire[self.read :])
        self.read = len(self.wire)
        for record in self.layer.open(new):
            assert len(record) + 16 <= MAX_RECORD
            self.plain += record
        return bytes(self.plain)


messages = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=300),
        st.integers(1, 3 * MAX_PLAINTEXT).map(lambda n: b"%d" % n * (n // 8 + 1)),
    ),
    min_size=1,
    max_size=12,
)
takes = st.lists(st.one_of(st.integers(0, 40), st.integers(0, 70_000)), max_size=40)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    messages=messages,
    script=takes,
    all_or_nothing=st.booleans(),
    retries=st.lists(st.integers(0, 3), min_size=12, max_size=12),
)
async def test_send_nowait_never_loses_or_repeats_data(
    messages: list[bytes], script: list[int], all_or_nothing: bool, retries: list[int]
) -> None:
    sender, receiver = layers()
    under = ScriptedStream(iter(script), all_or_nothing)
    stream = SecureStream(under, sender, PEER, [])
    peer = Peer(receiver, under.wire)
    handed = bytearray()  # what the caller has been told was taken, in order
    for message, extra_tries in zip(messages, retries, strict=False):
        rest = message
        for _ in range(1 + extra_tries):  # like a caller that retries send_nowait a few times
            taken = stream.send_nowait(rest)
            assert 0 <= taken <= len(rest)
            handed += rest[:taken]
            rest = rest[taken:]
            seen = peer.catch_up()
            # taken means on the wire; the wire holds nothing the caller did not hand over
            assert seen[: len(handed)] == handed
            assert bytes(handed + rest).startswith(seen)
            if not rest:
                break
        if rest:
            await stream.send(rest)
            handed += rest
            assert peer.catch_up() == handed
    assert peer.catch_up() == b"".join(messages)
    assert receiver.buffered == 0


async def test_a_partly_written_record_is_finished_before_anything_else() -> None:
    sender, receiver = layers()
    under = ScriptedStream(iter([7]), all_or_nothing=False)
    stream = SecureStream(under, sender, PEER, [])
    assert stream.send_nowait(b"hello world") == 0  # 7 bytes of its record left
    assert len(under.wire) == 7
    with pytest.raises(ValueError, match="must start with the bytes not taken"):
        await stream.send(b"other bytes")
    await stream.send(b"hello world, and more")
    assert b"".join(receiver.open(bytes(under.wire))) == b"hello world, and more"
    assert sender._send.n == 2  # one record each: no nonce wasted or reused


async def test_send_eof_finishes_a_partly_written_record_first() -> None:
    sender, receiver = layers()
    under = ScriptedStream(iter([5]), all_or_nothing=False)
    stream = SecureStream(under, sender, PEER, [])
    assert stream.send_nowait(b"last words") == 0
    await stream.send_eof()
    assert receiver.open(bytes(under.wire)) == [b"last words"]


async def test_send_nowait_declines_large_writes_and_busy_streams() -> None:
    sender, _ = layers()
    under = ScriptedStream(iter([]), all_or_nothing=False)
    stream = SecureStream(under, sender, PEER, [])
    assert stream.send_nowait(b"x" * (MAX_PLAINTEXT + 1)) == 0
    assert stream.send_nowait(b"") == 0
    assert sender._send.n == 0
    assert not under.wire
    assert stream.send_nowait(b"x" * MAX_PLAINTEXT) == MAX_PLAINTEXT


async def test_without_send_nowait_underneath_nothing_is_taken() -> None:
    class Plain(ScriptedStream):
        send_nowait = None  # type: ignore[assignment]

    sender, _ = layers()
    stream = SecureStream(Plain(iter([]), False), sender, PEER, [])
    assert stream.send_nowait(b"abc") == 0
    assert sender._send.n == 0


async def test_large_writes_leave_in_parts_of_a_few_records() -> None:
    sender, receiver = layers()
    sizes: list[int] = []

    class Counting(ScriptedStream):
        async def send(self, item: bytes) -> None:
            sizes.append(len(item))
            await super().send(item)

    under = Counting(iter([]), False)
    stream = SecureStream(under, sender, PEER, [])
    payload = os.urandom(1024 * 1024)
    await stream.send(payload)
    assert b"".join(receiver.open(bytes(under.wire))) == payload
    assert len(sizes) > 1
    assert max(sizes) <= 4 * MAX_RECORD + 8


async def test_small_records_arrive_joined_up_to_max_bytes() -> None:
    sender, receiver = layers()
    reads = [b"".join(sender.seal(bytes([i]) * 10) for i in range(10)) for _ in range(2)]

    class Feeding(ScriptedStream):
        async def receive(self, max_bytes: int = 65536) -> bytes:
            await anyio.lowlevel.checkpoint()
            return reads.pop(0)

    stream = SecureStream(Feeding(iter([]), False), receiver, PEER, [])
    assert await stream.receive(35) == bytes([0]) * 10 + bytes([1]) * 10 + bytes([2]) * 10
    assert await stream.receive(5) == bytes([3]) * 5
    rest = await stream.receive()
    assert rest == bytes([3]) * 5 + b"".join(bytes([i]) * 10 for i in range(4, 10))
    # all taken: the next receive reads again, and starts from the first record of that read
    assert await stream.receive(15) == bytes([0]) * 10
    assert await stream.receive(10) == bytes([1]) * 10


def test_the_nonce_is_noise_s() -> None:
    import struct

    for n in (0, 1, 255, 2**32, 2**64 - 2):
        assert nonce(n) == struct.pack("<IQ", 0, n)


async def test_frames_over_a_choked_socket_arrive_intact() -> None:
    """The RPC frame channel over the secure stream on real TCP with a small send buffer and a
    slow reader: many frames leave through ``send_nowait``, some only in part."""
    from synapse_p2p.rpc._channel import FrameChannel
    from synapse_p2p.secure import secure_accept, secure_connect
    from synapse_p2p.transport import TcpTransport

    payloads = [os.urandom(n) for n in [1, 500, 3000, 60_000, 65_000, 200_000] * 6]
    received: list[bytes] = []
    done = anyio.Event()

    async def slow_reader(stream: ByteStream) -> None:
        secure, _ = await secure_accept(stream, SERVER)
        channel = FrameChannel(secure, max_frame_size=1024 * 1024)
        try:
            while len(received) < len(payloads):
                payload = await channel.receive_payload()
                assert payload is not None
                received.append(payload)
                await anyio.sleep(0.001)
        finally:
            done.set()
            await channel.aclose()

    async with serving(slow_reader) as port:
        stream = await TcpTransport().connect("127.0.0.1", port, timeout=5)
        raw = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        secure, _ = await secure_connect(stream, CLIENT)
        channel = FrameChannel(secure, max_frame_size=1024 * 1024)
        with anyio.fail_after(30):
            for payload in payloads:
                await channel.send(payload, immediate=True)
            await done.wait()
        assert received == payloads
        await channel.aclose()
