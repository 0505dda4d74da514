"""RedisAgentRegistry specifics: layout, robustness, server time, and the three races."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from synapse_p2p.federation import (
    AgentFederation,
    AgentMetadata,
    RedisAgentRegistry,
    RegistryError,
    UnknownAgentError,
)

MakeRedis = Callable[..., RedisAgentRegistry]
WORKER = Path(__file__).with_name("_race_worker.py")


def _agent(agent_id: str, **kwargs: Any) -> AgentMetadata:
    return AgentMetadata(id=agent_id, model="m", **kwargs)


def test_layout_and_server_time(redis_registry: MakeRedis) -> None:
    registry = redis_registry(prefix="layout-test:")
    assert registry.prefix == "layout-test"
    registry.redis.delete("layout-test:agents", "layout-test:heartbeats")
    stored = registry.register(_agent("a", tools=["x"]))
    seconds, micros = registry.redis.time()
    assert stored.last_heartbeat is not None
    assert abs(stored.last_heartbeat - (seconds + micros / 1e6)) < 1.0
    raw = registry.redis.hget("layout-test:agents", "a")
    assert raw is not None
    assert json.loads(raw)["tools"] == ["x"]
    assert "last_heartbeat" not in json.loads(raw)
    assert registry.redis.zscore("layout-test:heartbeats", "a") == stored.last_heartbeat
    assert registry.redis.ttl("layout-test:agents") == -1


@pytest.mark.parametrize("prefix", ["p[1]", "team*?:agents", "a\\b{c}"])
def test_glob_characters_in_the_prefix(redis_registry: MakeRedis, prefix: str) -> None:
    registry = redis_registry(prefix=f"{uuid.uuid4().hex}:{prefix}")
    registry.register(_agent("g"))
    assert [a.id for a in registry.list()] == ["g"]
    assert [a.id for a in registry.discover()] == ["g"]


def test_foreign_and_corrupt_entries_do_not_break_list(
    redis_registry: MakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    registry = redis_registry()
    registry.register(_agent("good"))
    client = registry.redis
    client.set(f"{registry.prefix}:stranger", "not json")
    client.rpush(f"{registry.prefix}:a-list", "x")
    client.hset(f"{registry.prefix}:agents", "broken", "{not json")
    client.hset(f"{registry.prefix}:agents", "bad-capacity", json.dumps({"id": "bad-capacity",
                "model": "m", "capacity": -4}))  # fmt: skip
    client.hset(f"{registry.prefix}:agents", "wrong-id", json.dumps({"id": "x", "model": "m"}))
    with caplog.at_level(logging.WARNING, logger="synapse_p2p.federation"):
        assert [a.id for a in registry.list()] == ["good"]
    assert "broken" in caplog.text
    assert registry.get("broken") is None
    assert [a.id for a in registry.discover()] == ["good"]
    assert set(registry.prune_stale()) == {"bad-capacity", "broken", "wrong-id"}  # no heartbeat


def test_a_key_of_the_wrong_type_is_reported(redis_registry: MakeRedis) -> None:
    registry = redis_registry()
    registry.redis.set(f"{registry.prefix}:agents", "oops")
    with pytest.raises(RegistryError, match="wrong type"):
        registry.list()


def test_bytes_client(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)  # decode_responses=False
    registry = RedisAgentRegistry(redis_client=client, prefix=f"bytes-{uuid.uuid4().hex}")
    registry.register(_agent("b", tags=["t"]))
    assert registry.heartbeat("b").tags == ["t"]
    assert [a.id for a in registry.discover(tags="t")] == ["b"]
    assert registry.next_rotation("k") == 0
    assert registry.next_rotation("k") == 1
    registry.close()  # not ours: stays open
    assert client.ping()
    client.close()


def test_import_without_redis_installed() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from synapse_p2p.federation import RedisAgentRegistry, AgentFederation\n"
        "try:\n    RedisAgentRegistry()\nexcept ImportError as e:\n    print('hint:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install synapse-p2p[redis]" in out.stdout


def test_processes_share_one_rotation(redis_registry: MakeRedis) -> None:
    first = redis_registry()
    second = redis_registry(prefix=first.prefix)
    for agent_id in ("a", "b", "c"):
        first.register(_agent(agent_id))
    one, two = AgentFederation(first), AgentFederation(second)
    picks = [fed.select_agent().id for _ in range(3) for fed in (one, two)]
    assert picks == ["a", "b", "c", "a", "b", "c"]


# -- the three races -------------------------------------------------------------------


@contextmanager
def hammering(url: str, prefix: str, mode: str, ids: list[str], count: int = 2) -> Iterator[None]:
    """Run ``count`` worker processes doing ``mode`` until the block ends."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, prefix, mode, "20", *ids],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        import redis

        with redis.Redis.from_url(url) as client:
            client.set(f"{prefix}:stop", 1)
        for proc in procs:
            out, _ = proc.communicate(timeout=20)
            assert out.startswith("done"), out


@contextmanager
def threads_doing(work: Callable[[], None], count: int = 3) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            work()

    threads = [threading.Thread(target=loop) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _quiet_heartbeat(registry: RedisAgentRegistry, ids: list[str]) -> Callable[[], None]:
    def beat() -> None:
        for agent_id in ids:
            try:
                registry.heartbeat(agent_id)
            except UnknownAgentError:
                pass

    return beat


def test_race_heartbeat_never_resurrects(redis_url: str, redis_registry: MakeRedis) -> None:
    registry = redis_registry()
    ids = [f"agent-{n}" for n in range(40)]
    for agent_id in ids:
        registry.register(_agent(agent_id))
    other = redis_registry(prefix=registry.prefix)
    with (
        hammering(redis_url, registry.prefix, "heartbeat", ids),
        threads_doing(_quiet_heartbeat(other, ids)),
    ):
        for agent_id in ids:
            assert registry.unregister(agent_id)
            time.sleep(0.003)  # heartbeats keep arriving for the deleted agent
        time.sleep(0.05)
    assert registry.list() == []
    assert registry.redis.zcard(f"{registry.prefix}:heartbeats") == 0


def test_race_heartbeat_never_loses_a_register(redis_url: str, redis_registry: MakeRedis) -> None:
    registry = redis_registry()
    registry.register(_agent("x"))
    other = redis_registry(prefix=registry.prefix)
    with (
        hammering(redis_url, registry.prefix, "heartbeat", ["x"]),
        threads_doing(_quiet_heartbeat(other, ["x"])),
    ):
        for capacity in range(1, 301):
            registry.register(_agent("x", capacity=capacity, tags=[f"v{capacity}"]))
            if capacity % 50 == 0:
                time.sleep(0.01)
                current = registry.get("x")
                assert current is not None
                assert current.capacity == capacity
    final = registry.get("x")
    assert final is not None
    assert (final.capacity, final.tags) == (300, ["v300"])


def test_race_prune_never_removes_a_fresh_heartbeat(
    redis_url: str, redis_registry: MakeRedis
) -> None:
    registry = redis_registry()
    other = redis_registry(prefix=registry.prefix)
    lost = kept = pruned_first = 0

    def prune_then_pause() -> None:
        other.prune_stale(stale_timeout=5)
        time.sleep(0.0005)

    with (
        hammering(redis_url, registry.prefix, "prune", []),
        threads_doing(prune_then_pause, count=2),
    ):
        deadline = time.monotonic() + 5
        n = 0
        while (kept < 60 or pruned_first < 60) and time.monotonic() < deadline:
            n += 1
            agent_id = f"p{n % 5}"
            registry.register(_agent(agent_id, last_heartbeat=registry.now() - 100))
            if n % 2:
                time.sleep(0.002)  # give the pruners a chance to go first
            try:
                registry.heartbeat(agent_id)
            except UnknownAgentError:
                pruned_first += 1  # pruned while stale: correct
                continue
            time.sleep(0.0005)  # several prunes run after the heartbeat
            if registry.get(agent_id) is None:
                lost += 1
            else:
                kept += 1
    assert lost == 0
    assert kept > 0
    assert pruned_first > 0


def test_the_race_harness_detects_a_racy_heartbeat(redis_registry: MakeRedis) -> None:
    """Control: a read-modify-write heartbeat (synapsekit's design) resurrects and loses
    updates under the same kind of interleaving, so the tests above can see a race."""
    registry = redis_registry()
    client, key = registry.redis, f"{registry.prefix}:racy"

    def racy_heartbeat(agent_id: str, pause: float) -> None:
        raw = client.hget(key, agent_id)
        if raw is None:
            return
        data = json.loads(raw)
        data["last_heartbeat"] = time.time()
        time.sleep(pause)
        client.hset(key, agent_id, json.dumps(data))

    client.hset(key, "a", json.dumps({"id": "a", "capacity": 1}))
    beat = threading.Thread(target=racy_heartbeat, args=("a", 0.05))
    beat.start()
    time.sleep(0.01)
    client.hdel(key, "a")  # unregister mid-heartbeat
    beat.join()
    assert client.hexists(key, "a")  # resurrected
