"""The secure channel: Noise XX / XXpsk3 under RPC, authenticated by node identity keys.

See ``docs/secure-channel.md`` for the preamble, handshake payload, record format and keyring
handling. The protocol core is sans-IO (:mod:`._noise`, :mod:`._channel`); the drivers in
:mod:`._stream` wrap any anyio byte stream.
"""

from __future__ import annotations

from ._attributes import SecureAttribute
from ._channel import (
    MAGIC,
    PREAMBLE_SIZE,
    VERSION,
    PeerIdentity,
    SecureHandshake,
    is_secure_preamble,
)
from ._keyring import Keyring, derive_psk
from ._link import HandshakeStatistics, SecureAcceptor, SecureDialer
from ._records import MAX_RECORD, RecordLayer
from ._stream import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Accepted,
    PrefixedStream,
    SecureStream,
    SecurityPolicy,
    accept_maybe_secure,
    secure_accept,
    secure_connect,
)

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "MAGIC",
    "MAX_RECORD",
    "PREAMBLE_SIZE",
    "VERSION",
    "Accepted",
    "HandshakeStatistics",
    "Keyring",
    "PeerIdentity",
    "PrefixedStream",
    "RecordLayer",
    "SecureAcceptor",
    "SecureAttribute",
    "SecureDialer",
    "SecureHandshake",
    "SecureStream",
    "SecurityPolicy",
    "accept_maybe_secure",
    "derive_psk",
    "is_secure_preamble",
    "secure_accept",
    "secure_connect",
]
