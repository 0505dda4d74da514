"""The secure channel's preamble and handshake, sans-IO (see ``docs/secure-channel.md``).

:class:`SecureHandshake` runs one side of the handshake: feed it what the peer sent
(:meth:`~SecureHandshake.receive_data`), send what :meth:`~SecureHandshake.data_to_send`
returns; when :attr:`~SecureHandshake.complete`, :attr:`~SecureHandshake.session` (a
:class:`~._records.RecordLayer`) encrypts and decrypts records and
:attr:`~SecureHandshake.peer` is the peer's verified identity.

Errors: a failed handshake raises :class:`~synapse_p2p.errors.HandshakeError` (or
:class:`~synapse_p2p.errors.PlaintextPeer`); :meth:`~SecureHandshake.data_to_send` may still
hold a short status reply for the peer, to be sent before closing.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from weakref import WeakKeyDictionary

import msgpack

from ..errors import HandshakeError, PlaintextPeer, RecordError
from ..identity import DOMAIN_NOISE_STATIC, Identity, node_id_of, verify
from ._keyring import NO_SECRET, Keyring
from ._noise import HandshakeState, KeyPair, NoiseError
from ._records import MAX_RECORD, RecordLayer

__all__ = [
    "MAGIC",
    "PREAMBLE_SIZE",
    "VERSION",
    "PeerIdentity",
    "SecureHandshake",
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
_LEN = struct.Struct("!H")


def is_secure_preamble(word: bytes | bytearray) -> bool:
    """True if the first 4 bytes of a connection open the secure channel (any version)."""
    return len(word) >= PREAMBLE_SIZE and word[:3] == MAGIC


def _preamble(version: int = VERSION) -> bytes:
    return MAGIC + bytes([version])


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What a handshake proved about the peer: its Ed25519 key and node id, and which of our
    keyring's secrets it used (``None`` without a secret)."""

    node_id: str
    public_key: bytes
    secret_index: int | None = None


#: Per identity: its Noise static key pair and the signed handshake payload for it. A node
#: keeps one static key for as long as its identity object lives (Noise static keys are
#: long-term; every handshake still uses fresh ephemeral keys), which saves a key generation
#: and a signature per handshake, and lets peers keep their check of it cached
#: (:func:`_verified_static`). Weakly keyed: a process hosting many nodes keeps one entry per
#: live identity, and a dropped identity takes its entry along.
_STATICS: WeakKeyDictionary[Identity, tuple[KeyPair, bytes]] = WeakKeyDictionary()


def _static_for(identity: Identity) -> tuple[KeyPair, bytes]:
    entry = _STATICS.get(identity)
    if entry is None:
        static = KeyPair.generate()
        sig = identity.sign(DOMAIN_NOISE_STATIC, static.public)
        payload: bytes = msgpack.packb({"key": identity.public_key, "sig": sig})
        entry = _STATICS[identity] = (static, payload)
    return entry


@lru_cache(maxsize=1024)
def _verified_static(key: bytes, remote_static: bytes, sig: bytes) -> bool:
    """Signature check of a peer's channel key, cached: a peer keeps its static key, so
    reconnections skip the Ed25519 verification (a pure function of its arguments)."""
    return verify(key, DOMAIN_NOISE_STATIC, remote_static, sig)


def _check_identity(payload: bytes, remote_static: bytes | None) -> tuple[str, bytes]:
    try:
        fields = msgpack.unpackb(payload)
        key, sig = fields["key"], fields["sig"]
    except Exception:
        raise HandshakeError("malformed identity in the peer's handshake") from None
    if not isinstance(key, bytes) or not isinstance(sig, bytes) or remote_static is None:
        raise HandshakeError("malformed identity in the peer's handshake")
    if not _verified_static(key, remote_static, sig):
        raise HandshakeError("the peer's identity signature does not match its channel key")
    return node_id_of(key), key


class SecureHandshake:
    """One side of the secure-channel handshake, sans-IO (see the module docs).

    Build with :meth:`initiate` or :meth:`respond`. The initiator's first bytes are ready in
    :meth:`data_to_send` at once. After :attr:`complete`, :attr:`early_data` holds the
    plaintext of records that arrived behind the handshake (in the same chunk, or fed later);
    a partial record stays in :attr:`session`, so the stream can go on from there.
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
        self._static, self._payload = _static_for(identity)
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
        cls, identity: Identity, keyring: Keyring = NO_SECRET, expected_node_id: str | None = None
    ) -> SecureHandshake:
        return cls(
            initiator=True, identity=identity, keyring=keyring, expected_node_id=expected_node_id
        )

    @classmethod
    def respond(cls, identity: Identity, keyring: Keyring = NO_SECRET) -> SecureHandshake:
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
            payload = self._payload
            self._out += _preamble() + bytes([STATUS_OK])
            self._out += self._frame(self._noise_state.write_message(payload))
            self._stage = "msg3"
            return True
        if stage == "msg2":  # initiator: preamble, status, message 2
            if len(self._in) < PREAMBLE_SIZE:
                return False
            if not is_secure_preamble(self._in):
                raise PlaintextPeer(
                    "the peer does not speak the secure channel (synapse-p2p 2.5.0?)",
                    bytes(self._in[:64]),
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
            payload = self._payload
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
            if not self._in:  # (a partial record waits in the record layer, not here)
                return False
            try:
                records = self.session.open(self._data_in())
            except RecordError as exc:
                raise HandshakeError(f"secure handshake failed: {exc}") from None
            if records:
                self.early_data = records[1:]
                self._stage = "done"
            return False
        if stage == "done" and self._in:  # fed after completion: records, as early data
            assert self.session is not None
            self.early_data += self.session.open(self._data_in())
        return False

    def _data_in(self) -> bytes:
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
            self.early_data = self.session.open(self._data_in())
