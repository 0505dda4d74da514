"""Fixtures for the federation tests: a private redis-server and both registries.

The ``anyio_backend`` fixture (trio and asyncio) comes from the top-level ``tests/conftest.py``.
The Redis tests start their own ``redis-server`` on a free 127.0.0.1 port, with persistence
off, in a temporary directory, and stop it at the end of the session. Without the
``redis-server`` binary (Debian package ``redis-server``) or the ``redis`` package they skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_p2p.federation import InMemoryAgentRegistry, RedisAgentRegistry


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _skip(reason: str) -> None:
    print(f"\nSKIP Redis tests: {reason}")
    pytest.skip(reason)


def _start_redis(exe: str, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    import redis

    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                exe,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.ping():
                    client.close()
                    return proc, port
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()
        proc.kill()
        proc.wait()
    raise RuntimeError("could not start redis-server on a free loopback port")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a redis-server owned by this test session."""
    exe = shutil.which("redis-server")
    if exe is None:
        _skip("redis-server is not installed (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        _skip("the redis package is not installed (pip install synapse-p2p[redis])")
    assert exe is not None
    proc, port = _start_redis(exe, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_registry(redis_url: str) -> Iterator[Callable[..., RedisAgentRegistry]]:
    """A factory of Redis registries; each call gets a fresh prefix unless one is given."""
    made: list[RedisAgentRegistry] = []

    def make(**kwargs: Any) -> RedisAgentRegistry:
        kwargs.setdefault("prefix", f"test:{uuid.uuid4().hex}")
        registry = RedisAgentRegistry(redis_url, **kwargs)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.close()


@pytest.fixture(params=["memory", "redis"])
def make_registry(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The same tests run against both registries: ``make_registry(stale_timeout=...)``."""
    if request.param == "memory":
        return InMemoryAgentRegistry
    factory: Callable[..., Any] = request.getfixturevalue("redis_registry")
    return factory
