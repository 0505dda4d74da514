"""The stream classes of the secure channel: :class:`SecureStream` (records over a byte stream)
and :class:`PrefixedStream` (a plaintext stream with its first bytes put back).

Both are :class:`anyio.abc.ByteStream` objects, so RPC runs over them unchanged, and both
offer ``send_nowait`` (the lean TCP streams' fast path) when the stream under them does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

from ..errors import RecordError
from ._attributes import SecureAttribute
from ._channel import PeerIdentity
from ._records import MAX_PLAINTEXT, RecordLayer
from ._resting import look

__all__ = ["PrefixedStream", "SecureStream"]

_RECEIVE = 65536
#: Read sizes on the underlying stream. Small by default: a read buffer over malloc's mmap
#: threshold (128 KiB) costs an mmap and a munmap per read, more than a small record's
#: decryption. After a read that filled its buffer (more is waiting: a large write is
#: arriving), the next read takes several records per system call. A stream whose receive
#: costs the same at any size (``receive_size_free``, the asyncio TCP stream) is always read
#: in large chunks.
_TRANSPORT_RECEIVE = 65536
_TRANSPORT_RECEIVE_BULK = 256 * 1024
#: Largest plaintext sealed and written at once by ``send`` (4 records).
_SEND_CHUNK = 4 * MAX_PLAINTEXT


def _as_bytes(data: bytes | bytearray) -> bytes:
    """``data`` as the ``bytes`` that ``ByteStream.send`` is typed to take: every stream a
    secure channel runs over (TCP, WebSocket, relay circuits, memory) takes any bytes-like
    object, and a large write's records, sealed in place, are not copied again."""
    return cast(bytes, data)


class SecureStream(ByteStream):
    """A byte stream whose data travels in encrypted, authenticated records.

    ``receive`` raises :class:`~synapse_p2p.errors.RecordError` (also an anyio
    ``BrokenResourceError``) on a tampered, replayed, reordered, oversize or truncated record,
    after closing the underlying stream. It returns the plaintext of one record, or of several
    small records joined (up to ``max_bytes``). Cancellation during ``receive`` loses no data;
    cancellation in the middle of a ``send`` leaves the stream unusable (as for TCP).
    ``extra(SecureAttribute.peer_node_id)`` is the peer's verified node id; the underlying
    stream's attributes (``SocketAttribute.remote_address``, ...) pass through.

    :meth:`send_nowait` writes without yielding when the underlying stream can (the lean TCP
    streams of :mod:`synapse_p2p.transport`); see there for the contract.
    """

    def __init__(
        self, stream: ByteStream, session: RecordLayer, peer: PeerIdentity, early: list[bytes]
    ) -> None:
        self.transport_stream = stream
        self.peer = peer
        self._session = session
        session.watch = look  # (idle, it lets go of its cipher contexts)
        look(session)  # (the handshake used it unwatched: among its thread's layers from now)
        #: Received plaintext not returned yet, from ``_head`` on (a list and an index rather
        #: than a deque: a deque costs 760 bytes even empty, this 56, on every connection).
        #: Emptied once all is taken, so ``_head`` is 0 whenever it is empty.
        self._plain: list[bytes] = [r for r in early if r]
        self._head = 0
        self._sending = False
        self._transport_nowait: Callable[[bytes], int] | None = getattr(stream, "send_nowait", None)
        #: Sealed bytes the underlying stream has not taken yet (the rest of a record that
        #: ``send_nowait`` could not hand over whole); they leave first on the next send.
        self._backlog = b""
        #: The plaintext of that record: not reported as taken, so the caller sends it again
        #: (as the ``send_nowait`` contract says), and the next send skips it.
        self._owed = b""
        self._small_read = (
            _TRANSPORT_RECEIVE_BULK
            if getattr(stream, "receive_size_free", False)
            else _TRANSPORT_RECEIVE
        )
        self._read_size = self._small_read

    @property
    def peer_node_id(self) -> str:
        return self.peer.node_id

    async def receive(self, max_bytes: int = _RECEIVE) -> bytes:
        plain = self._plain
        while not plain:
            want = self._read_size
            try:
                data = await self.transport_stream.receive(want)
            except anyio.EndOfStream:
                try:
                    self._session.eof()
                except RecordError:
                    await self._abort()
                    raise
                raise
            if len(data) < want:
                self._read_size = self._small_read
                record = self._session.open_one(data)
                if record is not None:  # one whole record, the common case: no list
                    if 0 < len(record) <= max_bytes:
                        return record
                    if record:
                        plain.append(record)
                    continue
            else:
                self._read_size = _TRANSPORT_RECEIVE_BULK
            try:
                records = self._session.open(data)
            except RecordError:
                await self._abort()
                raise
            if len(records) == 1:
                record = records[0]
                if 0 < len(record) <= max_bytes:
                    return record  # one record, the common case: no queueing
                if record:
                    plain.append(record)
            else:
                plain.extend(r for r in records if r)
        head = self._head
        first = plain[head]
        size = len(first)
        if size > max_bytes:
            plain[head] = first[max_bytes:]
            return first[:max_bytes]
        if len(plain) == head + 1 or size + len(plain[head + 1]) > max_bytes:
            return self._take()
        # Several small records at hand (many frames written at once): one chunk for all.
        parts = [self._take()]
        while plain and size + len(plain[self._head]) <= max_bytes:
            size += len(plain[self._head])
            parts.append(self._take())
        return b"".join(parts)

    def _take(self) -> bytes:
        """The next received record, out of ``_plain`` (emptied once all are taken)."""
        plain, head = self._plain, self._head
        record = plain[head]
        if head + 1 == len(plain):
            plain.clear()
            self._head = 0
        else:
            plain[head] = b""  # taken: not kept alive until the rest is
            self._head = head + 1
        return record

    async def send(self, item: bytes) -> None:
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        if self._owed or self._backlog or len(item) > _SEND_CHUNK:
            await self._send_parts(item)
            return
        if not item:
            await anyio.lowlevel.checkpoint()
            return
        sealed = _as_bytes(self._session.seal(item))  # nonces are taken in call order
        self._sending = True
        try:
            await self.transport_stream.send(sealed)
        finally:
            self._sending = False

    async def _send_parts(self, item: bytes) -> None:
        """:meth:`send` of a large write, or after a partial :meth:`send_nowait`."""
        rest = self._settle(item) if self._owed else memoryview(item)
        backlog = self._backlog
        if not rest and not backlog:
            await anyio.lowlevel.checkpoint()
            return
        self._sending = True
        try:
            if backlog:
                self._backlog = b""
                await self.transport_stream.send(backlog)
            # A large write leaves in parts (one record, then 4 at a time): the peer decrypts
            # a part while we encrypt the next, and no buffer the size of the whole write is
            # made. The small first part gets the peer started early.
            start, end, size = 0, MAX_PLAINTEXT, len(rest)
            while start < size:
                if start:
                    # let the previous part leave now (the asyncio stream writes what it is
                    # given later in the same turn of the loop only at the next turn)
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                await self.transport_stream.send(_as_bytes(self._session.seal(rest[start:end])))
                start, end = end, end + _SEND_CHUNK
        finally:
            self._sending = False

    def send_nowait(self, data: bytes) -> int:
        """Seal and write what the underlying stream takes right now, without waiting or
        yielding; return how many bytes of ``data`` (plaintext) that was, the rest being the
        caller's to :meth:`send`.

        All or nothing, and nothing for more than one record's worth (``MAX_PLAINTEXT``
        bytes) or while a :meth:`send` is in progress. A sealed record uses its nonce even if
        the underlying stream takes only part of it (or none): the unsent part is kept and
        leaves first on the next write, and its plaintext is reported as not taken, so the
        caller's next :meth:`send` (or ``send_nowait``) must start with those bytes, which
        are then skipped (``ValueError`` otherwise: the stream would be corrupted).
        """
        nowait = self._transport_nowait
        if nowait is None or self._sending:
            return 0
        if self._owed:
            return self._send_owed_nowait(data, nowait)
        size = len(data)
        if not size or size > MAX_PLAINTEXT:
            return 0
        sealed = self._session.seal_one(data)
        sent = nowait(sealed)
        if sent == len(sealed):
            return size
        self._backlog = sealed[sent:]
        self._owed = bytes(data)
        return 0

    def _send_owed_nowait(self, data: bytes, nowait: Callable[[bytes], int]) -> int:
        """:meth:`send_nowait` while a record waits to be finished (see there)."""
        rest = self._settle(data, report=False)
        if self._backlog:
            sent = nowait(self._backlog)
            self._backlog = self._backlog[sent:]
            if self._backlog:
                return 0  # its record is not handed over whole yet: nothing taken
        taken = len(data) - len(rest)  # that record's bytes, handed over now
        self._owed = self._owed[taken:]
        if not rest or self._owed:
            return taken
        return taken + self.send_nowait(bytes(rest))

    def _settle(self, item: bytes, *, report: bool = True) -> memoryview:
        """Skip the bytes of ``item`` that were sealed already (see :meth:`send_nowait`);
        return the rest. With ``report``, they count as taken."""
        owed = self._owed
        k = min(len(owed), len(item))
        if memoryview(item)[:k] != memoryview(owed)[:k]:
            raise ValueError(
                "a send after a partial send_nowait must start with the bytes not taken"
            )
        if report:
            self._owed = owed[k:]
        return memoryview(item)[k:]

    async def send_eof(self) -> None:
        if self._backlog:
            await self.send(b"")
        await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()

    async def _abort(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            await self.transport_stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {
            **self.transport_stream.extra_attributes,
            SecureAttribute.peer_node_id: lambda: self.peer.node_id,
            SecureAttribute.peer_public_key: lambda: self.peer.public_key,
            SecureAttribute.secret_index: lambda: self.peer.secret_index,
        }


class PrefixedStream(ByteStream):
    """A stream that first returns ``prefix`` (bytes already read from ``stream``), then
    reads ``stream``; everything else is ``stream``'s, including ``send_nowait``."""

    def __init__(self, stream: ByteStream, prefix: bytes) -> None:
        self.transport_stream = stream
        self._prefix = prefix
        send_nowait = getattr(stream, "send_nowait", None)
        if send_nowait is not None:
            self.send_nowait = send_nowait

    async def receive(self, max_bytes: int = _RECEIVE) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            await anyio.lowlevel.checkpoint()
            return out
        return await self.transport_stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self.transport_stream.send(item)

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.transport_stream.extra_attributes
