"""Building served artifacts with the reference's exact size and sha256 rules."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from ..types import ServedArtifact

__all__ = ["build_artifact"]


def build_artifact(
    name: str,
    content: Any,
    *,
    mime_type: str,
    kind: str,
    description: str,
    encoding: str | None,
    metadata: dict[str, Any] | None,
) -> ServedArtifact:
    """``bytes`` are served as base64 text (size and hash over the raw bytes), ``str`` as is
    (over its UTF-8 bytes), anything else as JSON (over ``json.dumps(sort_keys=True,
    separators=(",", ":"))``). ``encoding`` overrides only the label."""
    for param, value in (
        ("name", name),
        ("mime_type", mime_type),
        ("kind", kind),
        ("description", description),
    ):
        if not isinstance(value, str):
            raise TypeError(f"artifact {param} must be a string, got {type(value).__name__}")
    if not name:
        raise ValueError("artifact name must not be empty")
    if encoding is not None and not isinstance(encoding, str):
        raise TypeError("artifact encoding must be a string or None")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError("artifact metadata must be a dict or None")
    served: Any
    if isinstance(content, bytes | bytearray | memoryview):
        raw = bytes(content)
        served = base64.b64encode(raw).decode("ascii")
        label = encoding or "base64"
    elif isinstance(content, str):
        raw = content.encode()
        served = content
        label = encoding or "text"
    else:
        try:
            raw = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"artifact {name!r} content is not JSON-serializable: {exc}") from None
        served = content
        label = encoding or "json"
    return ServedArtifact(
        name=name,
        mime_type=mime_type,
        content=served,
        kind=kind,
        description=description,
        encoding=label,
        size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        metadata=dict(metadata or {}),
    )
