"""A registry shared through Redis, for several processes or hosts."""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import threading
from typing import Any

from ..errors import RegistryError, UnknownAgentError
from ._metadata import AgentMetadata, Filters, Labels, check_time, check_timeout

__all__ = ["RedisAgentRegistry"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "synapse_p2p:agent_registry"

_NOW = """
local function now_string()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
"""

# KEYS: agents hash, heartbeats zset. ARGV: id, metadata JSON, timestamp or ''.
_REGISTER = (
    _NOW
    + """
local ts = ARGV[3]
if ts == '' then ts = now_string() end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ts, ARGV[1])
return ts
"""
)

# Only an agent that still exists is touched: a heartbeat never brings back a deleted agent
# and never rewrites metadata, so it cannot undo a concurrent re-register.
_HEARTBEAT = (
    _NOW
    + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local ts = ARGV[2]
if ts == '' then ts = now_string() end
redis.call('ZADD', KEYS[2], ts, ARGV[1])
return {raw, ts}
"""
)

_GET = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('ZSCORE', KEYS[2], ARGV[1])}
"""

_UNREGISTER = """
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
"""

# Staleness is judged by the server's clock inside the script, so an agent whose heartbeat
# landed first is kept and one pruned first cannot be heartbeated back.
_PRUNE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local timeout = tonumber(ARGV[1])
local removed = {}
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  local score = redis.call('ZSCORE', KEYS[2], id)
  if (not score) or (now - tonumber(score) > timeout) then
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    removed[#removed + 1] = id
  end
end
if redis.call('ZCARD', KEYS[2]) > redis.call('HLEN', KEYS[1]) then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if redis.call('HEXISTS', KEYS[1], id) == 0 then redis.call('ZREM', KEYS[2], id) end
  end
end
return removed
"""

_ROTATE = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n - 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode(agent: AgentMetadata) -> str:
    data = agent.to_dict()
    del data["last_heartbeat"]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class RedisAgentRegistry:
    """The registry protocol on Redis (redis-py), shared by every process using the prefix.

    Layout under ``prefix`` (default ``"synapse_p2p:agent_registry"``; trailing ``:`` are
    stripped): ``<prefix>:agents``, a hash of agent id -> metadata JSON, and
    ``<prefix>:heartbeats``, a sorted set of agent id -> heartbeat (Unix seconds). Nothing is
    found by ``SCAN``, so glob characters in the prefix are harmless and other keys under the
    prefix are never read; a hash entry that is not valid metadata is logged and skipped.

    Liveness uses the Redis server's clock (``TIME``), not the callers': ``register`` and
    ``heartbeat`` without a timestamp stamp the server time, and health and pruning compare
    against it, so clock skew between hosts does not matter. ``register``, ``heartbeat``,
    ``unregister``, ``get`` and ``prune_stale`` are single Lua scripts, hence atomic: a
    heartbeat never recreates an unregistered or pruned agent, never overwrites a concurrent
    ``register`` (it only touches the sorted set), and ``prune_stale`` never removes an agent
    whose heartbeat landed before it. Each method is one round trip. The scripts use both keys
    at once, so on Redis Cluster the prefix needs a hash tag (``"{agents}:registry"``).

    The methods are blocking (``blocking = True``): :class:`AgentFederation` calls them from
    ``run()`` in a worker thread; from your own async code use
    ``await anyio.to_thread.run_sync(registry.heartbeat, agent_id)``. Redis errors
    (``redis.ConnectionError``, ...) propagate; a key of ours holding the wrong type raises
    :class:`RegistryError`.

    ``redis_client`` (a ``redis.Redis``) takes precedence over ``url``; otherwise a client is
    built with ``redis.from_url(url, **redis_kwargs)`` (``redis.Redis(**redis_kwargs)`` with no
    url) and closed by :meth:`close`. With ``shared_rotation`` (default) round-robin counters
    live in Redis too, so federations in several processes take turns together.
    """

    blocking = True

    def __init__(
        self,
        url: str | None = None,
        redis_client: Any | None = None,
        prefix: str = DEFAULT_PREFIX,
        stale_timeout: float = 30.0,
        *,
        redis_url: str | None = None,
        shared_rotation: bool = True,
        **redis_kwargs: Any,
    ) -> None:
        if not isinstance(prefix, str) or not prefix.rstrip(":"):
            raise ValueError("prefix must be a non-empty string.")
        self.prefix = prefix.rstrip(":")
        self.stale_timeout = check_timeout(stale_timeout, "stale_timeout")
        self._owns_client = redis_client is None
        if redis_client is None:
            try:
                import redis
            except ModuleNotFoundError as exc:
                raise ImportError(
                    "RedisAgentRegistry requires the optional redis dependency. "
                    "Install it with `pip install synapse-p2p[redis]`."
                ) from exc
            redis_kwargs.setdefault("decode_responses", True)
            target = url or redis_url
            redis_client = (
                redis.from_url(target, **redis_kwargs) if target else redis.Redis(**redis_kwargs)
            )
        self.redis = redis_client
        self._agents_key = f"{self.prefix}:agents"
        self._beats_key = f"{self.prefix}:heartbeats"
        self._keys = [self._agents_key, self._beats_key]
        self._register = redis_client.register_script(_REGISTER)
        self._heartbeat = redis_client.register_script(_HEARTBEAT)
        self._get = redis_client.register_script(_GET)
        self._unregister = redis_client.register_script(_UNREGISTER)
        self._prune = redis_client.register_script(_PRUNE)
        self._rotate = redis_client.register_script(_ROTATE) if shared_rotation else None
        self._parsed: dict[tuple[str, str], AgentMetadata | None] = {}
        self._parsed_lock = threading.Lock()

    def close(self) -> None:
        """Close the connection pool if this registry created the client."""
        if self._owns_client:
            self.redis.close()

    def __enter__(self) -> RedisAgentRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- protocol -----------------------------------------------------------------------

    def now(self) -> float:
        """The Redis server's time (Unix seconds)."""
        seconds, micros = self._call(self.redis.time)
        return int(seconds) + int(micros) / 1e6

    def register(self, agent: AgentMetadata) -> AgentMetadata:
        """Store a validated copy (upsert); a missing heartbeat is set to the server time."""
        if not isinstance(agent, AgentMetadata):
            raise TypeError(f"agent must be an AgentMetadata, not {type(agent).__name__}.")
        stored = agent.validated()
        stamp = "" if stored.last_heartbeat is None else repr(stored.last_heartbeat)
        result = self._call(
            self._register, keys=self._keys, args=[stored.id, _encode(stored), stamp]
        )
        stored.last_heartbeat = float(_text(result))
        return stored.copy()

    def unregister(self, agent_id: str) -> bool:
        """Remove an agent; True if it was registered."""
        return bool(self._call(self._unregister, keys=self._keys, args=[agent_id]))

    def get(self, agent_id: str) -> AgentMetadata | None:
        """The agent's metadata, or ``None`` (also for a corrupt entry)."""
        reply = self._call(self._get, keys=self._keys, args=[agent_id])
        if not reply or not reply[0]:
            return None
        score = _text(reply[1]) if len(reply) > 1 and reply[1] else None
        return self._parse(agent_id, _text(reply[0]), score)

    def list(self) -> builtins.list[AgentMetadata]:
        """Every readable agent, healthy or not, sorted by id."""
        agents, _ = self._snapshot()
        return agents

    def heartbeat(self, agent_id: str, timestamp: float | None = None) -> AgentMetadata:
        """Set the heartbeat to ``timestamp`` or the server time, atomically and only if the
        agent still exists; returns the updated metadata.

        Raises :class:`UnknownAgentError` (a :class:`KeyError`) for an unknown id.
        """
        stamp = "" if timestamp is None else repr(check_time(timestamp))
        result = self._call(self._heartbeat, keys=self._keys, args=[agent_id, stamp])
        if result is None:
            raise UnknownAgentError(agent_id)
        agent = self._parse(agent_id, _text(result[0]), _text(result[1]))
        if agent is None:
            raise RegistryError(f"Agent {agent_id} has corrupt metadata in {self._agents_key}")
        return agent

    def is_healthy(self, agent_id: str) -> bool:
        """Whether the agent's heartbeat is fresh by the server's clock; False if unknown."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zscore(self._beats_key, agent_id)
        pipe.time()
        score, (seconds, micros) = self._call(pipe.execute)
        if score is None:
            return False
        return int(seconds) + int(micros) / 1e6 - float(score) <= self.stale_timeout

    def discover(
        self,
        *,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
    ) -> builtins.list[AgentMetadata]:
        """The matching agents (same filter rules as the in-memory registry), sorted by id;
        health is judged at the server's current time."""
        filters = Filters.make(tools, tags, min_capacity, healthy_only)
        agents, now = self._snapshot()
        timeout = self.stale_timeout
        return [agent for agent in agents if filters.matches(agent, timeout, now)]

    def prune_stale(self, *, stale_timeout: float | None = None) -> builtins.list[str]:
        """Atomically remove every agent unhealthy under ``stale_timeout`` (default: the
        registry's) at the server's time; returns the removed ids sorted."""
        timeout = (
            self.stale_timeout
            if stale_timeout is None
            else check_timeout(stale_timeout, "stale_timeout")
        )
        removed = self._call(self._prune, keys=self._keys, args=[repr(min(timeout, 1e300))])
        return sorted(_text(agent_id) for agent_id in removed)

    def next_rotation(self, key: str) -> int:
        """A round-robin counter shared by every process (kept one day after its last use)."""
        if self._rotate is None:
            raise RegistryError("shared_rotation is disabled for this registry")
        digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
        rotation_key = f"{self.prefix}:rotation:{digest}"
        return int(self._call(self._rotate, keys=[rotation_key], args=[86400]))

    # -- internals ----------------------------------------------------------------------

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if "WRONGTYPE" in str(exc):
                raise RegistryError(
                    f"A key of this registry ({self._agents_key} or {self._beats_key}) holds "
                    "the wrong type of Redis value"
                ) from exc
            raise

    def _snapshot(self) -> tuple[builtins.list[AgentMetadata], float]:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self._agents_key)
        pipe.zrange(self._beats_key, 0, -1, withscores=True)
        pipe.time()
        raw_agents, beats, (seconds, micros) = self._call(pipe.execute)
        scores = {_text(member): score for member, score in beats}
        agents = []
        for key in sorted(raw_agents, key=_text):
            agent_id = _text(key)
            agent = self._parse(agent_id, _text(raw_agents[key]), scores.get(agent_id))
            if agent is not None:
                agents.append(agent)
        return agents, int(seconds) + int(micros) / 1e6

    def _decode(self, agent_id: str, raw: str) -> AgentMetadata | None:
        try:
            parsed: AgentMetadata | None = AgentMetadata.from_dict(json.loads(raw))
            if parsed is not None and parsed.id != agent_id:
                raise ValueError(f"id {parsed.id!r} does not match its field")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            logger.warning("skipping corrupt agent entry %r in %s: %s", agent_id, self, exc)
            parsed = None
        with self._parsed_lock:
            if len(self._parsed) >= 10_000:
                self._parsed.clear()
            self._parsed[agent_id, raw] = parsed
        return parsed

    def _parse(self, agent_id: str, raw: str, heartbeat: Any) -> AgentMetadata | None:
        try:
            cached = self._parsed[agent_id, raw]
        except KeyError:
            cached = self._decode(agent_id, raw)
        if cached is None:
            return None
        agent = cached.copy()
        agent.last_heartbeat = None if heartbeat is None else float(heartbeat)
        return agent

    def __repr__(self) -> str:
        return f"RedisAgentRegistry(prefix={self.prefix!r})"

    # synapsekit's alternative names
    register_agent = register
    unregister_agent = unregister
    get_agent = get
    list_agents = list
    update_heartbeat = heartbeat
    discover_agents = discover
    prune_stale_agents = prune_stale
