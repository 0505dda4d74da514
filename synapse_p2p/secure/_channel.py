"""The secure channel's protocol, sans-IO: preamble, handshake, records (see
``docs/secure-channel.md``).

* :class:`SecureHandshake` runs one side of the handshake: feed it what the peer sent
  (:meth:`~SecureHandshake.receive_data`), send what :meth:`~SecureHandshake.data_to_send`
  returns; when :attr:`~SecureHandshake.complete`, :attr:`~SecureHandshake.session` encrypts
  and decrypts records and :attr:`~SecureHandshake.peer` is the peer's verified identity.
* :class:`RecordLayer` seals bytes into length-prefixed ChaCha20-Poly1305 records (at most
  65,535 bytes of ciphertext each) and opens them, raising :class:`~synapse_p2p.errors.RecordError`
  on a tampered, replayed, reordered or oversize record.
* :class:`Keyring` holds the swarm secrets and the PSK derived from each.

Errors: a failed handshake raises :class:`~synapse_p2p.errors.HandshakeError` (or
:class:`~synapse_p2p.errors.PlaintextPeer`); :meth:`~SecureHandshake.data_to_send` may still
hold a short status reply for the peer, to be sent before closing.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgpack
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import HandshakeError, PlaintextPeer, RecordError
from ..identity import DOMAIN_NOISE_STATIC, Identity, node_id_of, verify
from ._noise import TAGLEN, CipherState, HandshakeState, KeyPair, NoiseError

__all__ = [
    "MAGIC",
    "MAX_RECORD",
    "PREAMBLE_SIZE",
    "VERSION",
    "Keyring",
    "PeerIdentity",
    "RecordLayer",
    "SecureHandshake",
    "derive_psk",
    "is_secure_preamble",
]

#: The first three bytes of a secure connection, then a version byte. As a 4-byte big-endian
#: frame length it reads 0xF3534E01 (about 4 GB): no valid synapse-p2p frame (4 MiB at most)
#: starts this way, so a plaintext server refuses it ("frame too large") and ours can tell.
MAGIC = b"\xf3SN"
VERSION = 1
PREAMBLE_SIZE = 4
#: Mode byte after the initiator's preamble.
MODE_XX = 0
MODE_XXPSK3 = 1
#: Status byte after the responder's preamble.
STATUS_OK = 0
_STATUS_TEXT = {
    1: "the peer requires a swarm secret and we have none",
    2: "the peer has no swarm secret and we use one",
    3: "the peer does not support our secure channel version",
}
#: Largest record ciphertext (the 2-byte length prefix can say no more).
MAX_RECORD = 65535
MAX_PLAINTEXT = MAX_RECORD - TAGLEN
_LEN = struct.Struct("!H")
_PSK_LABEL = b"synapse-p2p/v1/swarm-psk"


def is_secure_preamble(word: bytes | bytearray) -> bool:
    """True if the first 4 bytes of a connection open the secure channel (any version)."""
    return len(word) >= PREAMBLE_SIZE and word[:3] == MAGIC


def _preamble(version: int = VERSION) -> bytes:
    return MAGIC + bytes([version])


def derive_psk(secret: bytes) -> bytes:
    """The 32-byte Noise PSK of a swarm secret (HKDF-SHA256 with a fixed label)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PSK_LABEL).derive(secret)


@dataclass(frozen=True, slots=True)
class Keyring:
    """Swarm secrets: the first is primary (used to connect), all are accepted."""

    secrets: tuple[bytes, ...] = ()
    #: The Noise PSK of each secret, in the same order.
    psks: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if any(not s for s in self.secrets):
            raise ValueError("a swarm secret must not be empty")
        object.__setattr__(self, "psks", tuple(derive_psk(s) for s in self.secrets))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    @classmethod
    def from_value(
        cls,
        secret: str | bytes | Iterable[str | bytes] | Keyring | None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> Keyring:
        """A keyring from ``Node(secret=...)``: a secret, a list of them, or ``None`` to read
        ``SYNAPSE_SECRET`` (comma-separated, first primary) from ``environ`` (default
        ``os.environ``); empty when no secret is set."""
        if isinstance(secret, Keyring):
            return secret
        if secret is None:
            value = (os.environ if environ is None else environ).get("SYNAPSE_SECRET", "")
            items: list[str | bytes] = [s.strip() for s in value.split(",") if s.strip()]
        elif isinstance(secret, str | bytes):
            items = [secret]
        else:
            items = list(secret)
        out = []
        for item in items:
            if not isinstance(item, str | bytes):
                raise TypeError("secret must be str, bytes or a list of them")
            out.append(item.encode() if isinstance(item, str) else bytes(item))
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What a handshake proved about the peer: its Ed25519 key and node id, and which of our
    keyring's secrets it used (``None`` without a secret)."""

    node_id: str
    public_key: bytes
    secret_index: int | None = None


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


def _identity_payload(identity: Identity, static_public: bytes) -> bytes:
    sig = identity.sign(DOMAIN_NOISE_STATIC, static_public)
    return msgpack.packb({"key": identity.public_key, "sig": sig})  # type: ignore[no-any-return]


def _check_identity(payload: bytes, remote_static: bytes | None) -> tuple[str, bytes]:
    try:
        fields = msgpack.unpackb(payload)
        key, sig = fields["key"], fields["sig"]
    except Exception:
        raise HandshakeError("malformed identity in the peer's handshake") from None
    if not isinstance(key, bytes) or not isinstance(sig, bytes) or remote_static is None:
        raise HandshakeError("malformed identity in the peer's handshake")
    if not verify(key, DOMAIN_NOISE_STATIC, remote_static, sig):
        raise HandshakeError("the peer's identity signature does not match its channel key")
    return node_id_of(key), key


class SecureHandshake:
    """One side of the secure-channel handshake, sans-IO (see the module docs).

    Build with :meth:`initiator` or :meth:`responder`. The initiator's first bytes are ready
    in :meth:`data_to_send` at once. After :attr:`complete`, :attr:`early_data` holds any
    plaintext that arrived in the same chunks as the handshake's end.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Identity,
        keyring: Keyring,
        expected_node_id: str | None = None,
        max_record: int = MAX_RECORD,
    ) -> None:
        self.initiator = initiator
        self._identity = identity
        self._keyring = keyring
        self._expected = expected_node_id
        self._max_record = max_record
        self._static = KeyPair.generate()
        self._noise: HandshakeState | None = None
        self._in = bytearray()
        self._out = bytearray()
        self._stage = "hello"
        self.session: RecordLayer | None = None
        self.peer: PeerIdentity | None = None
        self.early_data: list[bytes] = []
        if initiator:
            psks = keyring.psks[:1]
            mode = MODE_XXPSK3 if psks else MODE_XX
            hello = _preamble() + bytes([mode])
            self._start(psks, hello)  # the preamble is the prologue: tampering fails
            self._out += hello + self._frame(self._noise_state.write_message())
            self._stage = "msg2"

    @classmethod
    def initiate(
        cls, identity: Identity, keyring: Keyring = Keyring(), expected_node_id: str | None = None
    ) -> SecureHandshake:
        return cls(
            initiator=True, identity=identity, keyring=keyring, expected_node_id=expected_node_id
        )

    @classmethod
    def respond(cls, identity: Identity, keyring: Keyring = Keyring()) -> SecureHandshake:
        return cls(initiator=False, identity=identity, keyring=keyring)

    @property
    def complete(self) -> bool:
        return self._stage == "done"

    @property
    def _noise_state(self) -> HandshakeState:
        assert self._noise is not None
        return self._noise

    def _start(self, psks: Sequence[bytes], prologue: bytes) -> None:
        self._noise = HandshakeState(
            initiator=self.initiator, static=self._static, prologue=prologue, psks=psks
        )

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @staticmethod
    def _frame(message: bytes) -> bytes:
        return _LEN.pack(len(message)) + message

    def _take(self, size: int) -> bytes | None:
        if len(self._in) < size:
            return None
        out = bytes(self._in[:size])
        del self._in[:size]
        return out

    def _take_frame(self) -> bytes | None:
        if len(self._in) < 2:
            return None
        (size,) = _LEN.unpack_from(self._in)
        if len(self._in) < 2 + size:
            return None
        del self._in[:2]
        return self._take(size)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; raises ``HandshakeError`` when the handshake fails."""
        if self._stage == "failed":
            raise HandshakeError("handshake already failed")
        self._in += data
        try:
            while self._step():
                pass
        except NoiseError as exc:
            self._stage = "failed"
            if self._noise is not None and self._noise.psks and "pre-shared" in str(exc):
                raise HandshakeError(
                    "the peer's swarm secret is not in our keyring; connection refused"
                ) from None
            raise HandshakeError(f"secure handshake failed: {exc}") from None
        except HandshakeError:
            self._stage = "failed"
            raise

    def _step(self) -> bool:
        stage = self._stage
        if stage == "hello":  # responder: preamble, mode, message 1
            if len(self._in) < PREAMBLE_SIZE + 1:
                return False
            head = bytes(self._in[: PREAMBLE_SIZE + 1])
            if not is_secure_preamble(head):
                raise HandshakeError("the connection does not open the secure channel")
            if head[3] != VERSION:
                self._out += _preamble() + b"\x03"
                raise HandshakeError(f"unsupported secure channel version {head[3]}")
            if head[4] == MODE_XX and self._keyring:
                self._out += _preamble() + b"\x01"
                raise HandshakeError("peer offered no swarm secret; this node requires one")
            if head[4] == MODE_XXPSK3 and not self._keyring:
                self._out += _preamble() + b"\x02"
                raise HandshakeError("peer uses a swarm secret; this node has none")
            if head[4] not in (MODE_XX, MODE_XXPSK3):
                raise HandshakeError(f"unknown secure channel mode {head[4]}")
            if len(self._in) < PREAMBLE_SIZE + 3:
                return False
            (size,) = _LEN.unpack_from(self._in, PREAMBLE_SIZE + 1)
            if len(self._in) < PREAMBLE_SIZE + 3 + size:
                return False
            del self._in[: PREAMBLE_SIZE + 1]
            self._start(self._keyring.psks, head)
            message = self._take_frame()
            assert message is not None
            self._noise_state.read_message(message)
            payload = _identity_payload(self._identity, self._static.public)
            self._out += _preamble() + bytes([STATUS_OK])
            self._out += self._frame(self._noise_state.write_message(payload))
            self._stage = "msg3"
            return True
        if stage == "msg2":  # initiator: preamble, status, message 2
            if len(self._in) < PREAMBLE_SIZE:
                return False
            if not is_secure_preamble(self._in):
                raise PlaintextPeer(
                    "the peer does not speak the secure channel (synapse-p2p 2.5.0?)"
                )
            if len(self._in) < PREAMBLE_SIZE + 1:
                return False
            status = self._in[PREAMBLE_SIZE]
            if status != STATUS_OK:
                reason = _STATUS_TEXT.get(status, f"status {status}")
                raise HandshakeError(f"secure handshake refused: {reason}")
            if len(self._in) < PREAMBLE_SIZE + 3:
                return False
            (size,) = _LEN.unpack_from(self._in, PREAMBLE_SIZE + 1)
            if len(self._in) < PREAMBLE_SIZE + 3 + size:
                return False
            del self._in[: PREAMBLE_SIZE + 1]
            message = self._take_frame()
            assert message is not None
            payload = self._noise_state.read_message(message)
            node_id, key = _check_identity(payload, self._noise_state.rs)
            if self._expected is not None and node_id != self._expected:
                raise HandshakeError(
                    f"the peer is {node_id[:16]}..., not the expected {self._expected[:16]}..."
                )
            self.peer = PeerIdentity(node_id, key, 0 if self._keyring else None)
            payload = _identity_payload(self._identity, self._static.public)
            self._out += self._frame(self._noise_state.write_message(payload))
            self._finish()
            self._stage = "confirm"
            return True
        if stage == "msg3":  # responder: message 3 (PSK checked here), then confirm
            message = self._take_frame()
            if message is None:
                return False
            payload = self._noise_state.read_message(message)
            node_id, key = _check_identity(payload, self._noise_state.rs)
            self.peer = PeerIdentity(node_id, key, self._noise_state.psk_index)
            self._finish()
            assert self.session is not None
            self._out += self.session.seal(b"")
            self._complete()
            return False
        if stage == "confirm":  # initiator: the responder's first (empty) record
            assert self.session is not None
            if len(self._in) < 2:
                return False
            try:
                records = self.session.open(self.data_in())
            except RecordError as exc:
                raise HandshakeError(f"secure handshake failed: {exc}") from None
            if records:
                self.early_data = records[1:]
                self._stage = "done"
            return False
        return False

    def data_in(self) -> bytes:
        data = bytes(self._in)
        self._in.clear()
        return data

    def _finish(self) -> None:
        send, receive = self._noise_state.split()
        self.session = RecordLayer(send, receive, max_record=self._max_record)

    def _complete(self) -> None:
        assert self.session is not None
        self._stage = "done"
        if self._in:
            self.early_data = self.session.open(self.data_in())
