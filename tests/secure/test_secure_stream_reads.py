"""How the secure stream seals large writes and reads the stream under it.

* A large write is sealed in place (one buffer for all its records) where the AEAD can write
  into a buffer, and the records are the same bytes as when they are sealed one by one.
* Reads ask the underlying stream for 64 KiB (a larger read buffer costs an mmap per read),
  for 256 KiB after a read that filled its buffer (a large write is arriving), and always
  for 256 KiB from a stream whose receive costs the same at any size.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from anyio.abc import ByteStream
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_p2p.secure import SecureStream
from synapse_p2p.secure._noise import CipherState
from synapse_p2p.secure._records import MAX_PLAINTEXT
from tests.secure.test_secure_stream_nowait import PEER, layers


@settings(max_examples=30, deadline=None)
@given(st.integers(MAX_PLAINTEXT + 1, 5 * MAX_PLAINTEXT + 7), st.binary(min_size=1, max_size=64))
def test_sealing_in_place_gives_the_records_sealed_one_by_one(size: int, seed: bytes) -> None:
    payload = (seed * (size // len(seed) + 1))[:size]
    in_place, receiver = layers()
    joined, _ = layers()
    joined._send = CipherState(in_place._send.key)  # the same key; both start at nonce 0
    joined._sender()
    joined._encrypt_into = None  # (sealed record by record, then joined)
    sealed = in_place.seal(payload)
    assert bytes(sealed) == joined.seal(payload)
    assert b"".join(receiver.open(bytes(sealed))) == payload


class ChunkStream(ByteStream):
    """Returns scripted chunks (at most what each receive asks for) and records the sizes
    asked for."""

    def __init__(self, chunks: Iterator[bytes], *, size_free: bool = False) -> None:
        self.chunks = chunks
        self.asked: list[int] = []
        self.pending = b""
        if size_free:
            self.receive_size_free = True

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        self.asked.append(max_bytes)
        if not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                raise anyio.EndOfStream
        out, self.pending = self.pending[:max_bytes], self.pending[max_bytes:]
        return out

    async def send(self, item: bytes) -> None:
        raise NotImplementedError

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _stream(chunks: list[bytes], *, size_free: bool = False) -> tuple[SecureStream, ChunkStream]:
    sender, receiver = layers()
    under = ChunkStream(iter([bytes(sender.seal(c)) for c in chunks]), size_free=size_free)
    return SecureStream(under, receiver, PEER, []), under


@pytest.mark.anyio
async def test_reads_are_small_until_a_read_fills_its_buffer() -> None:
    big = bytes(range(256)) * 2048  # 512 KiB: 9 records
    secure, under = _stream([b"hello", big, b"bye"])
    assert await secure.receive() == b"hello"
    got = b""
    while len(got) < len(big):
        got += await secure.receive()
    assert got == big
    assert await secure.receive() == b"bye"
    assert under.asked[0] == 65536  # a small message: a small read
    assert 256 * 1024 in under.asked  # the large write: bulk reads
    assert under.asked[-1] == 65536  # back to small after a short read


@pytest.mark.anyio
async def test_a_stream_whose_reads_cost_the_same_is_always_read_in_bulk() -> None:
    secure, under = _stream([b"hello", b"bye"], size_free=True)
    assert await secure.receive() == b"hello"
    assert await secure.receive() == b"bye"
    assert under.asked == [256 * 1024, 256 * 1024]


@pytest.mark.anyio
async def test_a_small_record_larger_than_the_read_comes_in_pieces_in_order() -> None:
    secure, _ = _stream([b"abcdefghij", b"", b"klm"])
    pieces = [await secure.receive(4) for _ in range(3)]
    assert pieces == [b"abcd", b"efgh", b"ij"]
    assert await secure.receive(4) == b"klm"  # the empty record in between is skipped
