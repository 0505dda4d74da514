"""Thin async drivers of the secure channel over any anyio byte stream.

* :func:`secure_connect` / :func:`secure_accept` run the handshake on a connected stream and
  return a :class:`SecureStream` (an :class:`anyio.abc.ByteStream`, so RPC runs over it
  unchanged) and the peer's verified node id.
* :func:`accept_maybe_secure` peeks the first 4 bytes of an accepted stream: the secure
  preamble runs the handshake; anything else is a plaintext (synapse-p2p 2.5.0) frame, returned
  unconsumed in a :class:`PrefixedStream` if the :class:`SecurityPolicy` allows plaintext.
* :class:`SecurityPolicy` holds the keyring and the downgrade rules.

Every driver closes the stream it was given when it fails (errors, timeout, cancellation),
so the caller owns the stream only when a driver returns.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteStream

from ..errors import BAD_REQUEST, HandshakeError, HandshakeTimeout, PlaintextPeer, RecordError
from ..identity import Identity
from ..wire import ErrorInfo, Response, encode_frame, encode_response
from ._attributes import SecureAttribute
from ._channel import MAGIC, PREAMBLE_SIZE, PeerIdentity, SecureHandshake, is_secure_preamble
from ._keyring import Keyring
from ._records import MAX_PLAINTEXT, RecordLayer

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "Accepted",
    "PrefixedStream",
    "SecureStream",
    "SecurityPolicy",
    "accept_maybe_secure",
    "secure_accept",
    "secure_connect",
]

DEFAULT_HANDSHAKE_TIMEOUT = 5.0
_RECEIVE = 65536
#: Read size on the underlying stream: a few records per system call.
_TRANSPORT_RECEIVE = 256 * 1024
#: Largest plaintext sealed and written at once by ``send`` (4 records).
_SEND_CHUNK = 4 * MAX_PLAINTEXT
SecretArg = str | bytes | Iterable[str | bytes] | Keyring | None


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
        self._plain: deque[bytes] = deque(r for r in early if r)
        self._sending = False
        self._transport_nowait: Callable[[bytes], int] | None = getattr(stream, "send_nowait", None)
        #: Sealed bytes the underlying stream has not taken yet (the rest of a record that
        #: ``send_nowait`` could not hand over whole); they leave first on the next send.
        self._backlog = b""
        #: The plaintext of that record: not reported as taken, so the caller sends it again
        #: (as the ``send_nowait`` contract says), and the next send skips it.
        self._owed = b""

    @property
    def peer_node_id(self) -> str:
        return self.peer.node_id

    async def receive(self, max_bytes: int = _RECEIVE) -> bytes:
        plain = self._plain
        while not plain:
            try:
                data = await self.transport_stream.receive(_TRANSPORT_RECEIVE)
            except anyio.EndOfStream:
                try:
                    self._session.eof()
                except RecordError:
                    await self._abort()
                    raise
                raise
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
        first = plain[0]
        size = len(first)
        if size > max_bytes:
            plain[0] = first[max_bytes:]
            return first[:max_bytes]
        if len(plain) == 1 or size + len(plain[1]) > max_bytes:
            return plain.popleft()
        # Several small records at hand (many frames written at once): one chunk for all.
        parts = [plain.popleft()]
        while plain and size + len(plain[0]) <= max_bytes:
            size += len(plain[0])
            parts.append(plain.popleft())
        return b"".join(parts)

    async def send(self, item: bytes) -> None:
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        if self._owed or self._backlog or len(item) > _SEND_CHUNK:
            await self._send_parts(item)
            return
        if not item:
            await anyio.lowlevel.checkpoint()
            return
        sealed = self._session.seal(item)  # nonces are taken in call order
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
            # A large write leaves in parts of a few records: the peer decrypts the first
            # while we encrypt the next, and no buffer the size of the whole write is made.
            for start in range(0, len(rest), _SEND_CHUNK):
                if start:
                    # let the previous part leave now (the asyncio stream writes what it is
                    # given later in the same turn of the loop only at the next turn)
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                await self.transport_stream.send(
                    self._session.seal(rest[start : start + _SEND_CHUNK])
                )
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


class SecurityPolicy:
    """The keyring and the downgrade rules.

    * With a secret (a non-empty keyring), plaintext is neither accepted nor attempted.
    * Without one, plaintext (synapse-p2p 2.5.0) peers are allowed but unverified, except that
      a node id once seen verified is never accepted again over plaintext, nor dialed in
      plaintext. The most recent ``remember`` verified ids are kept (least recently seen
      forgotten first).
    """

    def __init__(self, secret: SecretArg = None, *, remember: int = 65536) -> None:
        self.keyring = Keyring.from_value(secret)
        self._verified: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    @property
    def requires_secure(self) -> bool:
        return bool(self.keyring)

    @property
    def accepts_plaintext(self) -> bool:
        """Whether an inbound plaintext connection may be served at all."""
        return not self.keyring

    def note_verified(self, node_id: str) -> None:
        self._verified[node_id] = None
        self._verified.move_to_end(node_id)
        while len(self._verified) > self._remember:
            self._verified.popitem(last=False)

    def seen_verified(self, node_id: str) -> bool:
        return node_id in self._verified

    def may_use_plaintext(self, node_id: str | None) -> bool:
        """Whether plaintext may carry traffic claimed by (or dialed to) ``node_id``."""
        if self.keyring:
            return False
        return node_id is None or node_id not in self._verified


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted connection: ``stream`` to serve, ``peer`` (``None`` for plaintext)."""

    stream: ByteStream
    peer: PeerIdentity | None

    @property
    def secure(self) -> bool:
        return self.peer is not None


async def _close(stream: ByteStream) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
        await stream.aclose()


async def _drive(
    stream: ByteStream, handshake: SecureHandshake, timeout: float, first: bytes = b""
) -> SecureStream:
    """Run ``handshake`` over ``stream`` (``first``: bytes already read from it), closing the
    stream on any failure."""
    replied = False
    data = first
    try:
        with anyio.fail_after(timeout):
            while True:
                if data:
                    try:
                        handshake.receive_data(data)
                    except HandshakeError:
                        out = handshake.data_to_send()  # a status reply for the peer, if any
                        if out:
                            with anyio.move_on_after(0.2):
                                await stream.send(out)
                        raise
                out = handshake.data_to_send()
                if out:
                    try:
                        await stream.send(out)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                        reason = exc or type(exc).__name__
                        raise HandshakeError(
                            f"connection broken during the handshake: {reason}"
                        ) from None
                if handshake.complete:
                    break
                try:
                    data = await stream.receive(_RECEIVE)
                except anyio.EndOfStream:
                    raise _closed_error(handshake, replied) from None
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    if handshake.initiator and not replied:
                        raise _closed_error(handshake, replied) from None
                    reason = exc or type(exc).__name__
                    raise HandshakeError(
                        f"connection broken during the handshake: {reason}"
                    ) from None
                replied = True
    except TimeoutError:
        await _close(stream)
        raise HandshakeTimeout(f"secure handshake did not finish within {timeout:g} s") from None
    except BaseException:
        await _close(stream)
        raise
    assert handshake.session is not None
    assert handshake.peer is not None
    return SecureStream(stream, handshake.session, handshake.peer, handshake.early_data)


def _closed_error(handshake: SecureHandshake, replied: bool) -> HandshakeError:
    if handshake.initiator and not replied:
        return PlaintextPeer(
            "the peer closed the connection without answering the secure handshake "
            "(synapse-p2p 2.5.0?)"
        )
    if handshake.initiator and handshake.session is not None:
        return HandshakeError(
            "the peer closed the connection during the handshake: our swarm secret is not "
            "in its keyring, or it refused our identity"
        )
    return HandshakeError("the peer closed the connection during the handshake")


async def secure_connect(
    stream: ByteStream,
    identity: Identity,
    *,
    secret: SecretArg = (),
    expected_node_id: str | None = None,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> tuple[SecureStream, str]:
    """Open the secure channel as the initiator; return it and the peer's verified node id.

    ``secret``: a keyring (or what :meth:`Keyring.from_value` takes; the default ``()`` means
    no secret, ``None`` reads ``SYNAPSE_SECRET``); the primary secret is used. Raises
    :class:`~synapse_p2p.errors.PlaintextPeer` if the peer answers in plaintext,
    :class:`~synapse_p2p.errors.HandshakeTimeout` after ``timeout`` seconds, and
    :class:`~synapse_p2p.errors.HandshakeError` for a refused secret, a bad signature or a
    node id other than ``expected_node_id``. On any failure, cancellation included, ``stream``
    is closed.
    """
    handshake = SecureHandshake.initiate(identity, Keyring.from_value(secret), expected_node_id)
    secure = await _drive(stream, handshake, timeout)
    return secure, secure.peer.node_id


async def secure_accept(
    stream: ByteStream,
    identity: Identity,
    *,
    secret: SecretArg = (),
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> tuple[SecureStream, str]:
    """Answer the secure channel as the responder (the stream must start with the preamble);
    return it and the peer's verified node id. Any secret of the keyring is accepted.
    Errors as :func:`secure_connect`; on any failure ``stream`` is closed."""
    handshake = SecureHandshake.respond(identity, Keyring.from_value(secret))
    secure = await _drive(stream, handshake, timeout)
    return secure, secure.peer.node_id


async def accept_maybe_secure(
    stream: ByteStream,
    identity: Identity,
    policy: SecurityPolicy,
    *,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> Accepted:
    """Serve the secure channel or plaintext on an accepted stream, by its first bytes.

    The first byte decides: the secure preamble's (then its 4 bytes are read) or anything
    else (plaintext). A secure handshake returns ``Accepted(SecureStream, peer)`` and records
    the peer in ``policy`` as seen verified. Plaintext returns
    ``Accepted(PrefixedStream, None)`` (no byte consumed) if ``policy.accepts_plaintext``;
    otherwise the peer gets a 2.5.0-style ``bad_request`` error frame, the stream is closed
    and ``HandshakeError`` is raised.
    Whether a plaintext connection's claimed node id may be believed is
    ``policy.may_use_plaintext(node_id)``, for the caller to check. On any failure (including
    a timeout waiting for the first bytes) the stream is closed.
    """
    first = b""
    deadline = anyio.current_time() + timeout
    try:
        with anyio.fail_at(deadline):
            # A plaintext frame's length starts with a byte other than the magic's first
            # (any length up to 4 GB - 200 MB): that one byte decides, so a plaintext peer
            # that sends less than 4 bytes is handed to the server's own timeouts at once.
            while len(first) < PREAMBLE_SIZE and (not first or first[0] == MAGIC[0]):
                try:
                    first += await stream.receive(_RECEIVE)
                except anyio.EndOfStream:
                    raise HandshakeError("the connection closed before its first bytes") from None
    except TimeoutError:
        await _close(stream)
        raise HandshakeTimeout(f"no data within {timeout:g} s of accepting") from None
    except BaseException:
        await _close(stream)
        raise
    if is_secure_preamble(first):
        handshake = SecureHandshake.respond(identity, policy.keyring)
        remaining = max(0.0, deadline - anyio.current_time())
        try:
            secure = await _drive(stream, handshake, remaining, first)
        except HandshakeTimeout:
            raise HandshakeTimeout(
                f"secure handshake did not finish within {timeout:g} s"
            ) from None
        policy.note_verified(secure.peer.node_id)
        return Accepted(secure, secure.peer)
    if policy.accepts_plaintext:
        return Accepted(PrefixedStream(stream, first), None)
    message = "this node accepts only the secure channel of its swarm (a secret is required)"
    reply = encode_frame(
        encode_response(Response("", False, None, ErrorInfo(BAD_REQUEST, message)))
    )
    with anyio.move_on_after(0.2):
        try:
            await stream.send(reply)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
    await _close(stream)
    raise HandshakeError("plaintext connection refused: this node requires the swarm secret")
