"""The per-caller quota cores (sans-IO, so plain tests with explicit times)."""

from __future__ import annotations

import pytest

from synapse_p2p._quotas import CountQuota, RateQuota, caller_key


def test_rate_quota_refills_at_its_rate_up_to_its_burst() -> None:
    quota = RateQuota(rate=2, burst=3)
    assert [quota.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert quota.allow("b", 0.0)  # keys are independent
    assert not quota.allow("a", 0.4)  # 0.8 token
    assert quota.allow("a", 0.5)  # 1 token
    assert [quota.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]  # burst cap
    assert quota.refused == 3


def test_rate_quota_forgets_the_least_recently_used_key() -> None:
    quota = RateQuota(rate=1, burst=1, max_keys=2)
    assert quota.allow("a", 0)
    assert quota.allow("b", 0)
    assert quota.allow("c", 0)  # "a" forgotten
    assert quota.allow("a", 0)  # a full bucket again
    assert not quota.allow("c", 0)


def test_count_quota_holds_per_key_and_bounds_the_keys() -> None:
    quota = CountQuota(2, max_keys=2)
    assert quota.acquire("a")
    assert quota.acquire("a")
    assert not quota.acquire("a")
    assert quota.acquire("b")
    assert not quota.acquire("c")  # two keys hold something
    quota.release("a")
    assert quota.held("a") == 1
    assert quota.acquire("a")
    quota.release("b")
    assert quota.acquire("c")
    assert quota.refused == 2


def test_bad_limits_and_keys() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateQuota(0, 1)
    with pytest.raises(ValueError, match="limit"):
        CountQuota(0)
    assert caller_key("ab", "1.2.3.4") == "ab"
    assert caller_key(None, "1.2.3.4") == "ip:1.2.3.4"
