"""Swarm secrets: a keyring (first secret primary, all accepted) and the PSK of each."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["NO_SECRET", "Keyring", "derive_psk"]

_PSK_LABEL = b"synapse-p2p/v1/swarm-psk"


def derive_psk(secret: bytes) -> bytes:
    """The 32-byte Noise PSK of a swarm secret (HKDF-SHA256 with a fixed label)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PSK_LABEL).derive(secret)


@dataclass(frozen=True, slots=True)
class Keyring:
    """Swarm secrets: the first is primary (used to connect), all are accepted."""

    secrets: tuple[bytes, ...] = field(default=(), repr=False)
    #: The Noise PSK of each secret, in the same order.
    psks: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if any(not s for s in self.secrets):
            raise ValueError("a swarm secret must not be empty")
        object.__setattr__(self, "psks", tuple(derive_psk(s) for s in self.secrets))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __repr__(self) -> str:
        return f"Keyring(<{len(self.secrets)} secret(s)>)"

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


#: The empty keyring: no swarm secret.
NO_SECRET = Keyring()
