"""The ``netns`` fixture: two test hosts (network namespaces joined by a veth pair), deleted
afterwards. mDNS only ever runs inside them, never on this machine's real interfaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.discovery.mdns_scripts.netns import NetnsPair, NetnsUnavailable


@pytest.fixture
def netns() -> Iterator[NetnsPair]:
    try:
        pair = NetnsPair()
    except NetnsUnavailable as exc:
        print(f"mDNS namespace tests skipped: {exc}")
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        yield pair
    finally:
        pair.close()
