"""Transport records of the secure channel, sans-IO (see ``docs/secure-channel.md``)."""

from __future__ import annotations

import struct

from ..errors import RecordError
from ._noise import TAGLEN, CipherState, NoiseError

__all__ = ["MAX_PLAINTEXT", "MAX_RECORD", "RecordLayer"]

#: Largest record ciphertext (the 2-byte length prefix can say no more).
MAX_RECORD = 65535
MAX_PLAINTEXT = MAX_RECORD - TAGLEN
_LEN = struct.Struct("!H")


class RecordLayer:
    """Transport records: ``2-byte length || ChaCha20-Poly1305 ciphertext``, counter nonces.

    :meth:`seal` splits data into records of at most ``MAX_PLAINTEXT`` bytes. :meth:`open`
    takes any chunk of the incoming stream and returns the plaintexts it completes; any
    authentication failure (a flipped bit, a replayed, reordered or dropped record), a record
    shorter than its tag or longer than ``max_record`` raises ``RecordError``, after which
    the layer refuses everything (the stream cannot be resynchronised).
    """

    __slots__ = ("_buffer", "_failed", "_receive", "_send", "max_record")

    def __init__(
        self, send: CipherState, receive: CipherState, *, max_record: int = MAX_RECORD
    ) -> None:
        self._send = send
        self._receive = receive
        self._buffer = bytearray()
        self._failed: RecordError | None = None
        self.max_record = max_record

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held (0 at a record boundary)."""
        return len(self._buffer)

    def seal(self, data: bytes) -> bytes:
        """Encrypt ``data`` (may be empty: one empty record) into records."""
        encrypt = self._send.encrypt_with_ad
        if len(data) <= MAX_PLAINTEXT:
            sealed = encrypt(b"", data)
            return _LEN.pack(len(sealed)) + sealed
        out = []
        view = memoryview(data)
        for start in range(0, len(data), MAX_PLAINTEXT):
            sealed = encrypt(b"", view[start : start + MAX_PLAINTEXT])
            out.append(_LEN.pack(len(sealed)))
            out.append(sealed)
        return b"".join(out)

    def open(self, data: bytes) -> list[bytes]:
        if self._failed is not None:
            raise self._failed
        if self._buffer:
            self._buffer += data
            source: bytes | bytearray = self._buffer
        else:
            source = data  # fast path: records straight from the chunk, no copy
        out: list[bytes] = []
        try:
            with memoryview(source) as view:
                pos = self._parse(view, out)
        except RecordError as exc:
            self._failed = exc
            self._buffer.clear()
            raise
        if source is self._buffer:
            del self._buffer[:pos]
        elif pos < len(data):
            self._buffer += memoryview(data)[pos:]
        return out

    def _parse(self, view: memoryview, out: list[bytes]) -> int:
        """Decrypt the complete records in ``view`` into ``out``; return bytes consumed."""
        decrypt = self._receive.decrypt_with_ad
        limit = self.max_record
        pos = 0
        end = len(view)
        while end - pos >= 2:
            size = (view[pos] << 8) | view[pos + 1]
            if size < TAGLEN:
                raise RecordError(f"secure record too short ({size} bytes)")
            if size > limit:
                raise RecordError(f"secure record too large ({size} > {limit})")
            if end - pos - 2 < size:
                break
            try:
                out.append(decrypt(b"", view[pos + 2 : pos + 2 + size]))
            except NoiseError:
                raise RecordError(
                    "secure record failed authentication (tampered, replayed or "
                    "reordered); connection closed"
                ) from None
            pos += 2 + size
        return pos

    def eof(self) -> None:
        """The stream ended: ``RecordError`` if a record was cut short."""
        if self._buffer:
            self._buffer.clear()
            raise RecordError("the connection ended in the middle of a secure record")
