"""The server's session answer and per-connection admission, driven directly (sans-IO)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p.rpc._session import PROTOCOL_VERSION, Admission, session_answer
from synapse_p2p.wire import HEADER_SIZE

offers = st.one_of(
    st.none(),
    st.integers(),
    st.text(),
    st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.booleans(), st.text())),
    st.fixed_dictionaries({"max_frame": st.one_of(st.integers(), st.booleans(), st.none())}),
)


@given(offers)
def test_any_offer_gets_our_limits(offer: Any) -> None:
    answer, peer_max = session_answer(offer, max_frame=4096, max_concurrent=8,
                                      idle_timeout=30.0, extra={"node_id": "n"})  # fmt: skip
    assert answer == {"protocol": PROTOCOL_VERSION, "max_frame": 4096, "max_concurrent": 8,
                      "idle_timeout": 30.0, "node_id": "n"}  # fmt: skip
    value = offer.get("max_frame") if isinstance(offer, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        assert peer_max == max(value, HEADER_SIZE)
    else:
        assert peer_max is None


@given(st.lists(st.booleans(), max_size=200), st.integers(1, 10))
def test_admission_never_exceeds_its_limit(ops: list[bool], limit: int) -> None:
    admission = Admission(limit)
    model = 0
    for start in ops:
        if start:
            refused = admission.admit()
            if model < limit:
                assert refused is None
                model += 1
            else:
                assert refused is not None
                assert str(limit) in refused
        elif model:
            admission.finished()
            model -= 1
        assert admission.in_flight == model <= limit


def test_admission_misuse_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0)
    with pytest.raises(RuntimeError):
        Admission(1).finished()
