"""A small sans-IO Noise state machine: ``Noise_XX_25519_ChaChaPoly_SHA256`` and
``Noise_XXpsk3_25519_ChaChaPoly_SHA256`` (Noise Protocol Framework, revision 34).

X25519 and ChaCha20-Poly1305 come from the ``cryptography`` package; SHA-256 and HMAC-SHA256
(the HKDF of Noise section 4.3) from the standard library, which computes the same functions
faster for the small inputs of a handshake. Nothing here does I/O or reads a clock:
:class:`HandshakeState` turns payloads into handshake messages and back, and :meth:`split`
returns the two :class:`CipherState` objects of the transport phase.

Errors: a message that fails authentication, has the wrong length or arrives out of turn
raises :class:`NoiseError`; the state must then be discarded (Noise has no recovery).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "MAX_MESSAGE",
    "MAX_NONCE",
    "PROTOCOL_XX",
    "PROTOCOL_XXPSK3",
    "CipherState",
    "HandshakeState",
    "KeyPair",
    "NoiseError",
]

PROTOCOL_XX = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROTOCOL_XXPSK3 = b"Noise_XXpsk3_25519_ChaChaPoly_SHA256"
#: Largest Noise message (handshake or transport), ciphertext and tag included.
MAX_MESSAGE = 65535
HASHLEN = 32
DHLEN = 32
TAGLEN = 16
MAX_NONCE = 2**64 - 1  #: reserved by the spec: never used
_NONCE = struct.Struct("<IQ")  # 4 zero bytes, then the 64-bit little-endian counter

_XX = (("e",), ("e", "ee", "s", "es"), ("s", "se"))
_XXPSK3 = (("e",), ("e", "ee", "s", "es"), ("s", "se", "psk"))


class NoiseError(Exception):
    """A Noise message failed authentication or broke the protocol; discard the state."""


class KeyPair:
    """An X25519 key pair (``public`` is 32 raw bytes)."""

    __slots__ = ("private", "public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> KeyPair:
        return cls(X25519PrivateKey.from_private_bytes(data))

    def dh(self, public: bytes) -> bytes:
        try:
            return self.private.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError as exc:  # low-order point: all-zero shared secret
            raise NoiseError(f"invalid X25519 public key: {exc}") from None


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
    """Noise's HKDF: 2 or 3 outputs of HASHLEN bytes."""
    temp = hmac.digest(chaining_key, ikm, "sha256")
    out = [hmac.digest(temp, b"\x01", "sha256")]
    for i in range(2, outputs + 1):
        out.append(hmac.digest(temp, out[-1] + bytes([i]), "sha256"))
    return out


class CipherState:
    """A ChaCha20-Poly1305 key with a 64-bit counter nonce (little-endian, after 4 zero
    bytes). Each encrypt or successful decrypt uses the next nonce, so a replayed, reordered
    or dropped message fails authentication."""

    __slots__ = ("_aead", "key", "n")

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) != 32:  # (the AEAD object is made at the first use)
            raise ValueError("a ChaCha20-Poly1305 key is 32 bytes")
        self.key = key
        self.n = 0
        self._aead: ChaCha20Poly1305 | None = None  # (made at the first use: see aead)

    @property
    def has_key(self) -> bool:
        return self.key is not None

    @property
    def aead(self) -> ChaCha20Poly1305 | None:
        """The key's AEAD object, for callers that manage :attr:`n` themselves (the record
        layer seals and opens many records in a loop; it must use each nonce once, in order,
        and never the reserved ``2**64 - 1``). Made at the first use, and again after
        :meth:`rest`; ``None`` without a key."""
        aead = self._aead
        if aead is None and self.key is not None:
            aead = self._aead = ChaCha20Poly1305(self.key)
        return aead

    def rest(self) -> None:
        """Let go of the AEAD object (its OpenSSL context holds about 1.2 KiB): the key and the
        counter stay, and the next use makes it again (about half a microsecond)."""
        self._aead = None

    def _nonce(self) -> bytes:
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce exhausted: rekey or reconnect")
        return _NONCE.pack(0, self.n)

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes | memoryview) -> bytes:
        aead = self.aead
        if aead is None:
            return bytes(plaintext)
        out = aead.encrypt(self._nonce(), plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        aead = self.aead
        if aead is None:
            return bytes(ciphertext)
        try:
            out = aead.decrypt(self._nonce(), ciphertext, ad)
        except InvalidTag:
            raise NoiseError("message failed authentication") from None
        self.n += 1
        return out

    def copy(self) -> CipherState:
        other = CipherState(self.key)
        other.n = self.n
        return other


class SymmetricState:
    """Chaining key, handshake hash and the current cipher (Noise section 5.2)."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1), CipherState(k2)

    def copy(self) -> SymmetricState:
        other = SymmetricState.__new__(SymmetricState)
        other.ck, other.h, other.cipher = self.ck, self.h, self.cipher.copy()
        return other


class HandshakeState:
    """One side of an XX or XXpsk3 handshake.

    ``psks`` is empty for XX. For XXpsk3 the initiator gives exactly one PSK; a responder may
    give several (a keyring): on the third message it tries each in turn (one HKDF and one
    AEAD open per candidate, no extra Diffie-Hellman) and :attr:`psk_index` tells which one
    matched. ``ephemeral`` injects the ephemeral key (test vectors only).

    Messages alternate: the initiator writes messages 1 and 3, the responder message 2.
    After message 3 :attr:`complete` is true and :meth:`split` gives ``(send, receive)``
    cipher states for this side.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static: KeyPair,
        prologue: bytes = b"",
        psks: Sequence[bytes] = (),
        ephemeral: KeyPair | None = None,
    ) -> None:
        for psk in psks:
            if len(psk) != 32:
                raise ValueError("a Noise PSK is 32 bytes")
        if initiator and len(psks) > 1:
            raise ValueError("the initiator uses exactly one PSK")
        self.initiator = initiator
        self.psks = tuple(psks)
        self.protocol_name = PROTOCOL_XXPSK3 if self.psks else PROTOCOL_XX
        self._pattern = _XXPSK3 if self.psks else _XX
        self.ss = SymmetricState(self.protocol_name)
        self.ss.mix_hash(prologue)
        self.s = static
        self.e = ephemeral
        self.rs: bytes | None = None
        self.re: bytes | None = None
        self.psk_index: int | None = None
        self._step = 0

    @property
    def complete(self) -> bool:
        return self._step == len(self._pattern)

    @property
    def my_turn(self) -> bool:
        """True if this side writes the next message."""
        return not self.complete and (self._step % 2 == 0) == self.initiator

    @property
    def handshake_hash(self) -> bytes:
        return self.ss.h

    def write_message(self, payload: bytes = b"") -> bytes:
        if not self.my_turn:
            raise NoiseError("not our turn to write a handshake message")
        out = bytearray()
        ss = self.ss
        for token in self._pattern[self._step]:
            if token == "e":
                if self.e is None:
                    self.e = KeyPair.generate()
                out += self.e.public
                ss.mix_hash(self.e.public)
                if self.psks:
                    ss.mix_key(self.e.public)
            elif token == "s":
                out += ss.encrypt_and_hash(self.s.public)
            elif token == "psk":
                ss.mix_key_and_hash(self.psks[0])
            else:
                ss.mix_key(self._dh(token))
        out += ss.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE:
            raise NoiseError(f"handshake message too large ({len(out)} > {MAX_MESSAGE})")
        self._step += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's message and return its payload (raises ``NoiseError``)."""
        if self.complete or self.my_turn:
            raise NoiseError("unexpected handshake message")
        if len(message) > MAX_MESSAGE:
            raise NoiseError("handshake message too large")
        message = bytes(message)
        ss = self.ss
        pos = 0
        tokens = self._pattern[self._step]
        for i, token in enumerate(tokens):
            if token == "e":
                self.re = message[pos : pos + DHLEN]
                if len(self.re) != DHLEN:
                    raise NoiseError("handshake message too short")
                pos += DHLEN
                ss.mix_hash(self.re)
                if self.psks:
                    ss.mix_key(self.re)
            elif token == "s":
                size = DHLEN + (TAGLEN if ss.cipher.has_key else 0)
                if len(message) - pos < size:
                    raise NoiseError("handshake message too short")
                self.rs = ss.decrypt_and_hash(message[pos : pos + size])
                pos += size
            elif token == "psk":
                assert i == len(tokens) - 1, "psk is the last token of its message"
                payload = self._try_psks(message[pos:])
                self._step += 1
                return payload
            else:
                ss.mix_key(self._dh(token))
        payload = ss.decrypt_and_hash(message[pos:])
        self._step += 1
        return payload

    def _try_psks(self, rest: bytes) -> bytes:
        base = self.ss
        for index, psk in enumerate(self.psks):
            trial = base.copy()
            trial.mix_key_and_hash(psk)
            try:
                payload = trial.decrypt_and_hash(rest)
            except NoiseError:
                continue
            self.ss = trial
            self.psk_index = index
            return payload
        raise NoiseError("message failed authentication (no pre-shared key matched)")

    def _dh(self, token: str) -> bytes:
        # "es": initiator's e with responder's s; "se": initiator's s with responder's e.
        first, second = token[0], token[1]
        mine = first if self.initiator else second
        theirs = second if self.initiator else first
        local = self.e if mine == "e" else self.s
        remote = self.re if theirs == "e" else self.rs
        if local is None or remote is None:
            raise NoiseError(f"missing key for {token}")
        return local.dh(remote)

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, receive)`` cipher states for this side, once the handshake is complete."""
        if not self.complete:
            raise NoiseError("handshake not complete")
        c1, c2 = self.ss.split()
        return (c1, c2) if self.initiator else (c2, c1)
