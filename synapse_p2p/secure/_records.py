"""Transport records of the secure channel, sans-IO (see ``docs/secure-channel.md``)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag

from ..errors import RecordError
from ._noise import MAX_NONCE, TAGLEN, CipherState

__all__ = ["CHECK_EVERY", "MAX_PLAINTEXT", "MAX_RECORD", "RecordLayer", "nonce"]

#: Largest record ciphertext (the 2-byte length prefix can say no more).
MAX_RECORD = 65535
MAX_PLAINTEXT = MAX_RECORD - TAGLEN
_LEN = struct.Struct("!H")
#: Records up to this size are sliced (copied) rather than viewed when opened.
_SMALL = 4096


#: A layer in use tells its watch (see :attr:`RecordLayer.watch`) at least every this many
#: seals or opens (each of one record or more), so that a sweep of idle layers can come while
#: only busy ones carry records.
CHECK_EVERY = 16


def nonce(n: int) -> bytes:
    """Noise's ChaChaPoly nonce for counter ``n``: 4 zero bytes, then ``n`` as 8 bytes,
    little-endian (the same as ``struct.pack("<IQ", 0, n)``, in one step)."""
    return (n << 32).to_bytes(12, "little")


class RecordLayer:
    """Transport records: ``2-byte length || ChaCha20-Poly1305 ciphertext``, counter nonces.

    :meth:`seal` splits data into records of at most ``MAX_PLAINTEXT`` bytes. :meth:`open`
    takes any chunk of the incoming stream and returns the plaintexts it completes; any
    authentication failure (a flipped bit, a replayed, reordered or dropped record), a record
    shorter than its tag or longer than ``max_record`` raises ``RecordError``, after which
    the layer refuses everything (the stream cannot be resynchronised).

    The nonce counters live in the two :class:`~._noise.CipherState` objects (``send`` and
    ``receive``); the loops here use their AEAD objects directly, one call per record.

    An AEAD object holds an OpenSSL context of about 1.2 KiB, and a swarm's links are idle
    most of the time: :meth:`rest` lets go of both (the keys and counters stay), and the next
    record makes them again, about half a microsecond each. The layer reads no clock: it
    tells its :attr:`watch` (if set) when it makes an AEAD object, at its first record since
    :meth:`take_used`, and every :data:`CHECK_EVERY` seals or opens (a decrement and a test
    each); the secure stream's watch sweeps the idle layers of its thread (``_resting.py``).
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_decrypt",
        "_encrypt",
        "_encrypt_into",
        "_failed",
        "_left",
        "_receive",
        "_send",
        "_used",
        "max_record",
        "watch",
    )

    def __init__(
        self, send: CipherState, receive: CipherState, *, max_record: int = MAX_RECORD
    ) -> None:
        if not send.has_key or not receive.has_key:
            raise ValueError("the record layer needs keyed cipher states")
        self._send = send
        self._receive = receive
        self._encrypt: Callable[..., bytes] | None = None  # (see _sender and _receiver)
        self._encrypt_into: Callable[..., Any] | None = None
        self._decrypt: Callable[..., bytes] | None = None
        self._used = False
        self._left = 0  # records before the watch is told again (see _mark)
        self._buffer = bytearray()
        self._failed: RecordError | None = None
        self.max_record = max_record
        #: Told (with the layer) as the class says; ``None``: nobody watches, nothing rests
        #: unless :meth:`rest` is called.
        self.watch: Callable[[RecordLayer], None] | None = None

    @property
    def resting(self) -> bool:
        """It holds no AEAD object (before its first record, or after :meth:`rest`)."""
        return self._encrypt is None and self._decrypt is None

    def rest(self) -> None:
        """Let go of the AEAD objects (the keys and counters stay): the next record makes them
        again."""
        self._encrypt = self._encrypt_into = self._decrypt = None
        self._used = False
        self._send.rest()
        self._receive.rest()

    def take_used(self) -> bool:
        """Whether the layer carried a record since the last call (or since it woke); the
        next record is then the first again, and tells the watch."""
        used = self._used
        self._used = False
        self._left = 0
        return used

    def _mark(self) -> None:
        """The first record since :meth:`take_used`, or the :data:`CHECK_EVERY`-th since the
        watch was last told, or an AEAD object made: used, and the watch told."""
        self._used = True
        self._left = CHECK_EVERY
        watch = self.watch
        if watch is not None:
            watch(self)

    def _sender(self) -> Callable[..., bytes]:
        """The sending AEAD's ``encrypt``, made again if the layer rested."""
        aead = self._send.aead
        assert aead is not None  # (keyed: see __init__)
        self._encrypt = encrypt = aead.encrypt
        # recent cryptography seals into a buffer we give it: one buffer for a large write
        # instead of a ciphertext per record joined afterwards (a copy and an allocation
        # per record, measured at about half the cost of the cipher itself)
        self._encrypt_into = getattr(aead, "encrypt_into", None)
        self._mark()
        return encrypt

    def _receiver(self) -> Callable[..., bytes]:
        """The receiving AEAD's ``decrypt``, made again if the layer rested."""
        aead = self._receive.aead
        assert aead is not None
        self._decrypt = decrypt = aead.decrypt
        self._mark()
        return decrypt

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held (0 at a record boundary)."""
        return len(self._buffer)

    def seal(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """Encrypt ``data`` (may be empty: one empty record) into records, taking one nonce
        per record. Raises ``RecordError`` if the send counter would reach its reserved
        last value (after 2**64 - 1 records; then nothing is sealed). More than one
        record's worth comes back in a ``bytearray`` (the records written in place)."""
        size = len(data)
        if size <= MAX_PLAINTEXT:
            return self.seal_one(data)
        cs = self._send
        n = cs.n
        count = -(-size // MAX_PLAINTEXT)
        if n + count > MAX_NONCE:
            raise RecordError("secure channel nonces exhausted; reconnect")
        if self._encrypt is None:
            self._sender()
        self._left -= 1
        if self._left < 0:
            self._mark()
        into = self._encrypt_into
        if into is None:
            return self._seal_joined(data)
        out = bytearray(size + count * (2 + TAGLEN))
        pack = _LEN.pack_into
        pos = 0
        with memoryview(data) as view, memoryview(out) as target:
            for start in range(0, size, MAX_PLAINTEXT):
                part = view[start : start + MAX_PLAINTEXT]
                length = len(part) + TAGLEN
                pack(out, pos, length)
                into(
                    (n << 32).to_bytes(12, "little"), part, None, target[pos + 2 : pos + 2 + length]
                )
                n += 1
                pos += 2 + length
        cs.n = n
        return out

    def _seal_joined(self, data: bytes | bytearray | memoryview) -> bytes:
        """:meth:`seal` of several records where the AEAD cannot write into a buffer."""
        cs = self._send
        n = cs.n
        encrypt = self._encrypt or self._sender()
        self._left -= 1
        if self._left < 0:
            self._mark()
        out = []
        with memoryview(data) as view:
            for start in range(0, len(view), MAX_PLAINTEXT):
                sealed = encrypt(
                    (n << 32).to_bytes(12, "little"), view[start : start + MAX_PLAINTEXT], None
                )
                n += 1
                out.append(_LEN.pack(len(sealed)))
                out.append(sealed)
        cs.n = n
        return b"".join(out)

    def seal_one(self, data: bytes | bytearray | memoryview) -> bytes:
        """:meth:`seal` for at most ``MAX_PLAINTEXT`` bytes: one record."""
        cs = self._send
        n = cs.n
        if n >= MAX_NONCE:
            raise RecordError("secure channel nonces exhausted; reconnect")
        encrypt = self._encrypt or self._sender()
        self._left -= 1
        if self._left < 0:
            self._mark()
        sealed = encrypt((n << 32).to_bytes(12, "little"), data, None)
        cs.n = n + 1
        return len(sealed).to_bytes(2, "big") + sealed

    def open_one(self, data: bytes | bytearray | memoryview) -> bytes | None:
        """The plaintext of ``data`` if it is exactly one whole record and nothing is
        buffered (the common case of small messages), else ``None``: :meth:`open` it.
        An authentication failure also returns ``None``, for :meth:`open` to report."""
        if self._failed is not None or self._buffer:
            return None
        end = len(data)
        if end < 2:
            return None
        size = (data[0] << 8) | data[1]
        if end != size + 2 or size < TAGLEN or size > self.max_record:
            return None
        cs = self._receive
        n = cs.n
        if n >= MAX_NONCE:
            return None
        decrypt = self._decrypt or self._receiver()
        self._left -= 1
        if self._left < 0:
            self._mark()
        try:
            if size <= _SMALL:  # a copy this small costs less than a memoryview
                plain = decrypt((n << 32).to_bytes(12, "little"), data[2:], None)
            else:
                with memoryview(data) as view:
                    plain = decrypt((n << 32).to_bytes(12, "little"), view[2:], None)
        except InvalidTag:
            return None
        cs.n = n + 1
        return plain

    def open(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """The plaintexts of the records that ``data`` completes, in order (empty records
        included); the tail of an incomplete record is kept for the next call.

        Records are opened straight from ``data``; only a record cut by the chunk's end is
        copied (into a buffer, finished by the next chunk).
        """
        if self._failed is not None:
            raise self._failed
        one = self.open_one(data)
        if one is not None:
            return [one]
        buffer = self._buffer
        end = len(data)
        out: list[bytes] = []
        try:
            with memoryview(data) as view:
                pos = 0
                if buffer:
                    pos = self._finish_buffered(view, out)
                    if buffer:  # still incomplete: all of data went into it
                        return out
                pos += self._parse(view[pos:] if pos else view, out)
                if pos < end:
                    buffer += view[pos:]
        except RecordError as exc:
            self._failed = exc
            buffer.clear()
            raise
        return out

    def _finish_buffered(self, view: memoryview, out: list[bytes]) -> int:
        """Complete the buffered record from ``view`` (opening it into ``out`` and emptying
        the buffer, if ``view`` holds the rest); return how many bytes of ``view`` it took."""
        buffer = self._buffer
        pos = 0
        if len(buffer) < 2:
            pos = min(2 - len(buffer), len(view))
            buffer += view[:pos]
            if len(buffer) < 2:
                return pos
        size = (buffer[0] << 8) | buffer[1]
        take = min(max(0, 2 + size - len(buffer)), len(view) - pos)
        buffer += view[pos : pos + take]
        with memoryview(buffer) as whole:
            done = self._parse(whole, out)  # checks the header; opens the record if complete
        if done:
            buffer.clear()
        return pos + take

    def _parse(self, view: memoryview, out: list[bytes]) -> int:
        """Decrypt the complete records in ``view`` into ``out``; return bytes consumed."""
        cs = self._receive
        decrypt = self._decrypt or self._receiver()
        self._left -= 1
        if self._left < 0:
            self._mark()
        limit = self.max_record
        n = cs.n
        pos = 0
        end = len(view)
        try:
            while end - pos >= 2:
                size = (view[pos] << 8) | view[pos + 1]
                if size < TAGLEN:
                    raise RecordError(f"secure record too short ({size} bytes)")
                if size > limit:
                    raise RecordError(f"secure record too large ({size} > {limit})")
                if end - pos - 2 < size:
                    break
                if n >= MAX_NONCE:
                    raise RecordError("secure channel nonces exhausted; reconnect")
                try:
                    out.append(
                        decrypt(
                            (n << 32).to_bytes(12, "little"), view[pos + 2 : pos + 2 + size], None
                        )
                    )
                except InvalidTag:
                    raise RecordError(
                        "secure record failed authentication (tampered, replayed or "
                        "reordered); connection closed"
                    ) from None
                n += 1
                pos += 2 + size
        finally:
            cs.n = n
        return pos

    def eof(self) -> None:
        """The stream ended: ``RecordError`` if a record was cut short."""
        if self._buffer:
            self._buffer.clear()
            raise RecordError("the connection ended in the middle of a secure record")
