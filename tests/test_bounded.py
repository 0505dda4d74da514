"""The bounded maps of recently used keys (``synapse_p2p._bounded``)."""

from __future__ import annotations

import sys
import threading

from synapse_p2p._bounded import put_newest, touch
from synapse_p2p.secure import SecurityPolicy


def test_a_full_map_forgets_its_oldest_eighth_and_a_key_used_again_is_the_newest() -> None:
    held: dict[int, str] = {}
    for key in range(16):
        put_newest(held, key, f"v{key}", 16)
    assert list(held) == list(range(16))
    assert touch(held, 0, 16) == "v0"  # used again: now the newest
    put_newest(held, 5, "again", 16)  # a key held: replaced, nothing forgotten
    assert len(held) == 16
    assert list(held)[-2:] == [0, 5]
    assert held[5] == "again"
    put_newest(held, 100, "new", 16)  # full: the oldest two (16 // 8) go first
    assert 1 not in held
    assert 2 not in held
    assert list(held)[-3:] == [0, 5, 100]
    assert len(held) == 15
    assert touch(held, 1, 16) is None
    assert 1 not in held


def test_keys_used_again_move_only_once_the_map_holds_an_eighth_of_its_limit() -> None:
    """Moving a key leaves a hole in the dict; with an eighth of the limit or less nothing is
    near forgetting, so a key used again stays where it is, and a map of keys used over and
    over stays small."""
    held: dict[int, None] = {}
    for key in range(8):
        put_newest(held, key, None, 64)
    touch(held, 0, 64)
    put_newest(held, 1, None, 64)
    assert list(held) == list(range(8))  # 8 keys of at most 64: none moved
    put_newest(held, 8, None, 64)
    touch(held, 0, 64)
    put_newest(held, 1, None, 64)
    assert list(held) == [2, 3, 4, 5, 6, 7, 8, 0, 1]  # past an eighth: a key used is the newest
    churned: dict[int, None] = {}
    for _ in range(200):
        for key in range(100):
            put_newest(churned, key, None, 8192)  # (the memo of good signatures' limit)
    assert sys.getsizeof(churned) <= sys.getsizeof(dict.fromkeys(range(100)))


def test_a_map_stays_within_its_limit_under_a_stream_of_new_keys() -> None:
    held: dict[int, None] = {}
    for key in range(1000):
        put_newest(held, key, None, 64)
        assert len(held) <= 64
    assert len(held) >= 56
    assert 999 in held
    assert max(held) == 999
    one: dict[str, int] = {"a": 1}  # (a limit under 8 forgets one key at a time)
    put_newest(one, "b", 2, 1)
    assert one == {"b": 2}


def test_the_security_policy_keeps_the_ids_seen_most_recently() -> None:
    policy = SecurityPolicy(remember=8)
    for i in range(8):
        policy.note_verified(f"id{i}")
    policy.note_verified("id0")  # seen again: the newest
    policy.note_verified("id8")  # full: the oldest (id1) is forgotten
    assert policy.seen_verified("id0")
    assert policy.seen_verified("id8")
    assert not policy.seen_verified("id1")
    assert policy.may_use_plaintext("id1")
    assert not policy.may_use_plaintext("id0")


def test_threads_sharing_a_map_never_break_it_and_leave_it_within_its_limit() -> None:
    """The memo of good signatures is shared by the nodes of a process, in any thread: a
    thread switch in the middle of forgetting (the keys copied, then removed) must not raise,
    and the map ends within its limit whatever the interleaving."""
    shared: dict[int, int] = {}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(3000):
                put_newest(shared, offset + i % 40, i, 8)
                touch(shared, offset + (i * 7) % 40, 8)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(n * 20,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert len(shared) <= 8
