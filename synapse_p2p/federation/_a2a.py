"""A2A agents as federation members (needs ``pip install 'synapse-p2p[a2a]'``).

::

    registry = A2AAgentRegistry(["http://10.0.0.7:8080"], beside=SwarmAgentRegistry(node))
    async with anyio.create_task_group() as tg:
        await tg.start(registry.run)  # fetches the cards, then refreshes them
        federation = AgentFederation(registry=registry)
        print(await federation.run("translate: bonjour", tags=["translate"]))

* :class:`A2AAgentClient` is an :class:`AgentClient` that sends the prompt to an A2A agent
  (the a2a-sdk's client, JSON-RPC) and returns its answer.
* :class:`A2AAgentRegistry` reads agent cards from URLs and lists each agent with its skills
  (ids and tags) as tags, next to the agents of the ``beside`` registry (for example the
  live swarm), so one federation routes to both.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import A2AAgentError
from ._metadata import AgentMetadata, Labels, check_timeout
from ._registry import AgentRegistryBackend, InMemoryAgentRegistry

if TYPE_CHECKING:
    import httpx
    from a2a.types import AgentCard, Part

__all__ = ["A2AAgentClient", "A2AAgentError", "A2AAgentRegistry"]

logger = logging.getLogger(__name__)

ID_PREFIX = "a2a:"


def _part_value(part: Part) -> Any:
    from google.protobuf.json_format import MessageToDict

    if part.HasField("text"):
        return part.text
    if part.HasField("data"):
        return MessageToDict(part.data)
    if part.HasField("raw"):
        return part.raw
    return part.url


def _values(parts: Iterable[Part]) -> Any:
    values = [_part_value(part) for part in parts]
    return values[0] if len(values) == 1 else values


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class A2AAgentClient:
    """Runs prompts on one A2A agent: ``agent`` is its base URL (the card is fetched from the
    well-known path, once) or an ``AgentCard``.

    ``run(prompt, **kwargs)`` sends one user message with ``prompt`` as its text and the
    keyword arguments (JSON-encoded, ``str`` for what JSON cannot hold) as message metadata;
    ``skill`` (here or per call) names the skill. It returns the agent's answer: the parts of
    the task's artifacts (a single part as its value: text, JSON data, bytes; several as a
    list), or of its reply message. A task still running after the send is polled until it
    finishes. ``timeout`` bounds each run (the federation's timeout applies too).

    Raises :class:`A2AAgentError` when the card cannot be read or verified
    (``signature_verifier``, e.g. :func:`synapse_p2p.a2a.card_verifier`), the request fails,
    or the task ends failed, canceled, rejected or needing input. Cancellation abandons the
    request (the remote task is not canceled).
    """

    def __init__(
        self,
        agent: str | AgentCard,
        *,
        skill: str | None = None,
        timeout: float | None = None,
        http: httpx.AsyncClient | None = None,
        signature_verifier: Callable[[AgentCard], None] | None = None,
    ) -> None:
        if isinstance(agent, str):
            if not agent.startswith(("http://", "https://")):
                raise ValueError("agent must be an http(s) URL or an AgentCard.")
            self.url: str = agent.rstrip("/")
            self._card: AgentCard | None = None
        else:
            self._card = agent
            self.url = agent.supported_interfaces[0].url if agent.supported_interfaces else ""
        self.skill = skill
        self.timeout = None if timeout is None else check_timeout(timeout, "timeout")
        self.http = http
        self.signature_verifier = signature_verifier
        self._lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"A2AAgentClient({self.url!r})"

    async def card(self, http: httpx.AsyncClient | None = None) -> AgentCard:
        """The agent's card (fetched and verified on first use)."""
        if self._card is not None:
            return self._card
        from a2a.client import A2ACardResolver

        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._card is None:
                async with self._http(http) as client:
                    try:
                        self._card = await A2ACardResolver(client, self.url).get_agent_card(
                            signature_verifier=self.signature_verifier
                        )
                    except Exception as exc:
                        raise A2AAgentError(f"agent card of {self.url}: {exc}") from exc
        return self._card

    def _http(self, http: httpx.AsyncClient | None) -> Any:
        import contextlib

        import httpx

        given = http or self.http
        if given is not None:
            return contextlib.nullcontext(given)
        limit = self.timeout if self.timeout is not None else 300.0
        return httpx.AsyncClient(timeout=limit)

    async def run(self, prompt: str, **kwargs: Any) -> Any:
        """Send ``prompt``; the agent's answer (see the class docs)."""
        with anyio.fail_after(math.inf if self.timeout is None else self.timeout):
            async with self._http(None) as http:
                return await self._run(http, prompt, kwargs)

    async def _run(self, http: httpx.AsyncClient, prompt: str, kwargs: dict[str, Any]) -> Any:
        import uuid

        from a2a.client import ClientConfig, create_client
        from a2a.types import GetTaskRequest, Message, Part, Role, SendMessageRequest
        from a2a.utils.errors import A2AError

        card = await self.card(http)
        metadata = {k: _json(v) for k, v in kwargs.items() if v is not None}
        skill = metadata.pop("skill", None) or self.skill
        if skill is not None:
            metadata["skill"] = skill
        message = Message(
            role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=prompt)]
        )
        if metadata:
            message.metadata.update(metadata)
        try:
            client = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
            async with client:
                async for response in client.send_message(SendMessageRequest(message=message)):
                    if response.HasField("message"):
                        return _values(response.message.parts)
                    if response.HasField("task"):
                        task = response.task
                        break
                else:
                    raise A2AAgentError(f"{self.url} answered nothing")
                delay = 0.1
                while not _finished(task):
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    task = await client.get_task(GetTaskRequest(id=task.id))
        except A2AAgentError:
            raise
        except (A2AError, OSError) as exc:
            raise A2AAgentError(f"A2A agent {self.url}: {exc}") from exc
        except Exception as exc:  # httpx errors and malformed answers
            if type(exc).__module__.startswith(("httpx", "a2a", "google")):
                raise A2AAgentError(f"A2A agent {self.url}: {exc}") from exc
            raise
        return _result(task, self.url)


def _finished(task: Any) -> bool:
    from a2a.types import TaskState

    return task.status.state not in (
        TaskState.TASK_STATE_SUBMITTED,
        TaskState.TASK_STATE_WORKING,
        TaskState.TASK_STATE_UNSPECIFIED,
    )


def _result(task: Any, url: str) -> Any:
    from a2a.types import TaskState

    state = task.status.state
    if state != TaskState.TASK_STATE_COMPLETED:
        name = TaskState.Name(state)
        note = _values(task.status.message.parts) if task.status.message.parts else ""
        raise A2AAgentError(f"A2A task {task.id} of {url} ended {name}: {note}", state=name)
    parts = [part for artifact in task.artifacts for part in artifact.parts]
    if not parts and task.status.message.parts:
        parts = list(task.status.message.parts)
    return _values(parts) if parts else None


class A2AAgentRegistry:
    """An :class:`AgentRegistryBackend` of A2A agents read from card URLs, listed beside the
    agents of ``beside`` (any registry, e.g. a :class:`SwarmAgentRegistry`).

    Each A2A agent is an :class:`AgentMetadata` with id ``"a2a:" + url``, ``model`` the card's
    name, ``tags`` its skills' ids and tags, ``endpoint`` its URL, and ``capacity`` and
    ``cost_multiplier`` as given here. Run :meth:`run` (``await tg.start(registry.run)``): it
    fetches every card, then again every ``refresh`` seconds; an agent whose card cannot be
    fetched for ``stale_timeout`` (default three refreshes) turns unhealthy. :meth:`add`
    fetches one more URL now. :meth:`client_for` gives the federation an
    :class:`A2AAgentClient` per A2A agent and delegates other ids to ``beside``.
    """

    def __init__(
        self,
        urls: Iterable[str] = (),
        *,
        beside: AgentRegistryBackend | None = None,
        capacity: int = 4,
        cost_multiplier: float = 1.0,
        refresh: float = 60.0,
        stale_timeout: float | None = None,
        fetch_timeout: float = 10.0,
        signature_verifier: Callable[[AgentCard], None] | None = None,
        call_timeout: float | None = None,
    ) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
        self.beside = beside
        self.capacity, self.cost_multiplier = capacity, cost_multiplier
        self.refresh_interval = check_timeout(refresh, "refresh")
        self.fetch_timeout = check_timeout(fetch_timeout, "fetch_timeout")
        self.signature_verifier = signature_verifier
        self.call_timeout = call_timeout
        stale = 3 * self.refresh_interval if stale_timeout is None else stale_timeout
        self._own = InMemoryAgentRegistry(stale_timeout=stale)
        self.stale_timeout = self._own.stale_timeout
        self.blocking = bool(getattr(beside, "blocking", True)) if beside is not None else False
        self._clients: dict[str, A2AAgentClient] = {}
        self._lock = threading.Lock()

    # -- cards ------------------------------------------------------------------------

    async def add(self, url: str) -> AgentMetadata:
        """Fetch ``url``'s card now and list its agent; raises :class:`A2AAgentError`."""
        url = url.rstrip("/")
        client = A2AAgentClient(url, signature_verifier=self.signature_verifier,
                                timeout=self.call_timeout)  # fmt: skip
        with anyio.fail_after(self.fetch_timeout):
            card = await client.card()
        tags = [tag for skill in card.skills for tag in (skill.id, *skill.tags) if tag]
        agent = AgentMetadata(
            id=ID_PREFIX + url,
            model=card.name or url,
            tags=tags,
            capacity=self.capacity,
            cost_multiplier=self.cost_multiplier,
            endpoint=url,
            last_heartbeat=self._own.now(),
        )
        with self._lock:
            self._clients[agent.id] = client
            if url not in self.urls:
                self.urls.append(url)
        return self._own.register(agent)

    async def refresh(self) -> None:
        """Fetch every card again (failures are logged and keep the old entry)."""

        async def one(url: str) -> None:
            try:
                await self.add(url)
            except Exception as exc:
                logger.info("A2A agent card %s unavailable: %s", url, exc)

        async with anyio.create_task_group() as tg:
            for url in list(self.urls):
                tg.start_soon(one, url)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fetch the cards (``started()`` once the first round is done), then refresh them
        every ``refresh`` seconds until cancelled."""
        await self.refresh()
        task_status.started()
        while True:
            await anyio.sleep(self.refresh_interval)
            await self.refresh()

    def client_for(self, agent: AgentMetadata | str) -> Any:
        agent_id = agent.id if isinstance(agent, AgentMetadata) else str(agent)
        with self._lock:
            client = self._clients.get(agent_id)
        if client is not None:
            return client
        hook = getattr(self.beside, "client_for", None)
        return hook(agent) if hook is not None else None

    # -- the registry protocol ------------------------------------------------------------

    def _mine(self, agent_id: str) -> bool:
        return agent_id.startswith(ID_PREFIX) or self.beside is None

    def now(self) -> float:
        return self._own.now()

    def register(self, agent: AgentMetadata) -> AgentMetadata:
        if self._mine(agent.id):
            return self._own.register(agent)
        assert self.beside is not None
        return self.beside.register(agent)

    def unregister(self, agent_id: str) -> bool:
        if self._mine(agent_id):
            with self._lock:
                self._clients.pop(agent_id, None)
                url = agent_id.removeprefix(ID_PREFIX)
                if url in self.urls:
                    self.urls.remove(url)
            return self._own.unregister(agent_id)
        assert self.beside is not None
        return self.beside.unregister(agent_id)

    def get(self, agent_id: str) -> AgentMetadata | None:
        if self._mine(agent_id):
            return self._own.get(agent_id)
        assert self.beside is not None
        return self.beside.get(agent_id)

    def list(self) -> builtins.list[AgentMetadata]:
        return self._own.list() + (self.beside.list() if self.beside is not None else [])

    def heartbeat(self, agent_id: str, timestamp: float | None = None) -> AgentMetadata:
        if self._mine(agent_id):
            return self._own.heartbeat(agent_id, timestamp)
        assert self.beside is not None
        return self.beside.heartbeat(agent_id, timestamp)

    def is_healthy(self, agent_id: str) -> bool:
        if self._mine(agent_id):
            return self._own.is_healthy(agent_id)
        assert self.beside is not None
        return self.beside.is_healthy(agent_id)

    def discover(
        self,
        *,
        tools: Labels = None,
        tags: Labels = None,
        min_capacity: int | None = None,
        healthy_only: bool = True,
    ) -> builtins.list[AgentMetadata]:
        found = self._own.discover(
            tools=tools, tags=tags, min_capacity=min_capacity, healthy_only=healthy_only
        )
        if self.beside is not None:
            found += self.beside.discover(
                tools=tools, tags=tags, min_capacity=min_capacity, healthy_only=healthy_only
            )
        return found

    def prune_stale(self, *, stale_timeout: float | None = None) -> builtins.list[str]:
        pruned = self._own.prune_stale(stale_timeout=stale_timeout)
        if self.beside is not None:
            pruned += self.beside.prune_stale(stale_timeout=stale_timeout)
        return pruned
