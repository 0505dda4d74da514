"""pytest fixtures for testing code built on synapse-p2p, without a network (opt-in).

The plugin is not registered automatically. Enable it in your top-level ``conftest.py``::

    pytest_plugins = ["synapse_p2p.pytest_plugin"]

(or with ``-p synapse_p2p.pytest_plugin`` on the command line). It provides two fixtures and
one marker, all built on :func:`synapse_p2p.testing.open_swarm`: the nodes run on an in-process
memory network (no sockets) unless you ask for ``transport="tcp"`` (real loopback sockets), and
they already know each other when your test gets them.

``swarm``
    A running :class:`~synapse_p2p.testing.Swarm`, started before the test and stopped after
    it (also when the test fails). Three nodes by default; configure it with the marker.

``synapse_swarm``
    A factory, for tests that want several swarms, a swarm started half-way through, or
    options computed in the test: ``async with synapse_swarm(3, configure=...) as swarm:``
    takes the arguments of :func:`~synapse_p2p.testing.open_swarm`. The factory is a plain
    (synchronous) fixture; the swarm lives exactly as long as the ``async with`` block.

``@pytest.mark.synapse_swarm(n=3, *, transport="memory", configure=None, **settings)``
    Sets the options of the test's swarms: ``n`` (also positional), ``transport``
    (``"memory"`` or ``"tcp"``), ``configure(i)`` returning per-node :class:`~synapse_p2p.Node`
    keywords (name, capabilities, ...), and any other keyword for every node (``swarm=``,
    ``heartbeat_interval=``, ``wall_clock=``, ...). Markers combine: a module's
    ``pytestmark`` or a class marker sets defaults, a marker on the test overrides them key by
    key. The marker also sets the defaults of ``synapse_swarm(...)``, whose own arguments win.
    The ``swarm`` fixture can also be parametrised indirectly:
    ``@pytest.mark.parametrize("swarm", [2, 5], indirect=True)`` (a size) or with dicts of
    options.

Async plugins. The fixtures run with anyio's pytest plugin (``@pytest.mark.anyio`` tests, under
trio and asyncio alike: anyio's ``anyio_backend`` fixture chooses) and with pytest-trio
(``@pytest.mark.trio`` tests, or ``trio_mode``). Only the ``swarm`` fixture is async; the
factory works with any plugin that runs the test itself in an event loop. Virtual time (trio's
``MockClock(autojump_threshold=0)``) works with the memory transport: with anyio, override
``anyio_backend`` to ``("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})``;
with pytest-trio, request the ``autojump_clock`` fixture. Pass a ``wall_clock=`` that follows
``anyio.current_time()`` if the code under test uses wall-clock deadlines (team leases,
schedules).

A worked example, a ``test_review.py`` next to the ``conftest.py`` above::

    import anyio
    import pytest

    from synapse_p2p import Node

    pytestmark = pytest.mark.anyio  # every test below runs under trio and asyncio


    def reviewers(i: int) -> dict[str, object]:
        return {"name": "asker"} if i == 0 else {"name": f"reviewer{i}", "capabilities": ["review"]}


    def answer_asks(node: Node) -> None:
        @node.ask
        async def review(task: str, context: dict[str, object]) -> str:
            return f"{node.name}: LGTM"


    @pytest.mark.synapse_swarm(n=3, configure=reviewers)
    async def test_every_reviewer_answers(swarm):
        asker, *others = swarm.nodes
        for node in others:
            answer_asks(node)
        broadcast = await asker.broadcast("synapse.ask", "Review this diff", context={})
        replies = [reply async for reply in asker.iter_replies(broadcast, timeout=10)]
        assert sorted(r.result for r in replies) == ["reviewer1: LGTM", "reviewer2: LGTM"]


    async def test_a_node_that_dies_goes_offline(synapse_swarm):
        async with synapse_swarm(2, heartbeat_interval=0.1, peer_timeout=0.5) as swarm:
            survivor, victim = swarm.nodes
            swarm.kill(victim)
            with anyio.fail_after(5):
                while victim.node_id in survivor.peers:
                    await anyio.sleep(0.05)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

import pytest

from .testing import Swarm, open_swarm

__all__ = ["DEFAULT_SIZE", "MARKER", "SwarmFactory", "swarm", "swarm_options", "synapse_swarm"]

#: The marker's name: ``@pytest.mark.synapse_swarm(...)``.
MARKER = "synapse_swarm"
#: Nodes in a swarm when neither a marker nor the call says how many.
DEFAULT_SIZE = 3

_MARKER_HELP = (
    f"{MARKER}(n=3, *, transport='memory', configure=None, **settings): options of the swarms "
    "of the synapse-p2p `swarm` and `synapse_swarm` fixtures (n nodes on the in-process memory "
    "network or on loopback TCP; configure(i) returns per-node Node keywords; other keywords "
    "go to every Node)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)


class _Marked(Protocol):
    def iter_markers(self, name: str | None = None) -> Iterator[pytest.Mark]: ...


def _check(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate swarm options at once; errors name where the options came from."""
    checked = dict(options)
    n = checked.get("n", DEFAULT_SIZE)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{where}: n must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"{where}: n must be at least 1, got {n}")
    transport = checked.get("transport", "memory")
    if transport not in ("memory", "tcp"):
        raise ValueError(f"{where}: transport must be 'memory' or 'tcp', got {transport!r}")
    configure = checked.get("configure")
    if configure is not None and not callable(configure):
        raise TypeError(f"{where}: configure must be a callable (i -> dict of Node keywords)")
    return checked


def _marker_options(mark: pytest.Mark) -> dict[str, Any]:
    where = f"@pytest.mark.{MARKER}"
    if len(mark.args) > 1:
        raise TypeError(f"{where} takes at most one positional argument (n), got {mark.args!r}")
    options = dict(mark.kwargs)
    if mark.args:
        if "n" in options:
            raise TypeError(f"{where}: n given both positionally and by keyword")
        options["n"] = mark.args[0]
    return _check(options, where)


def swarm_options(item: _Marked) -> dict[str, Any]:
    """The swarm options ``item``'s ``synapse_swarm`` markers give (the module's, then the
    class's, then the test's own, each overriding the previous key by key); ``{}`` without a
    marker. Raises ``TypeError``/``ValueError`` for a malformed marker."""
    options: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers(MARKER))):
        options.update(_marker_options(mark))
    return options


class SwarmFactory:
    """Opens swarms for one test: ``async with synapse_swarm(n, **options) as swarm:``.

    Arguments are those of :func:`~synapse_p2p.testing.open_swarm`; any not given come from
    :attr:`defaults` (the test's ``synapse_swarm`` markers), and ``n`` defaults to
    :data:`DEFAULT_SIZE`. Keywords merge one by one: ``synapse_swarm(swarm="other")`` keeps
    the marker's other settings. Bad arguments raise ``TypeError``/``ValueError`` at the call.
    """

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        self.defaults: dict[str, Any] = _check(defaults or {}, "swarm defaults")
        #: Every swarm this factory started, in order (running or already stopped).
        self.swarms: list[Swarm] = []

    def options(self, n: int | None = None, **overrides: Any) -> dict[str, Any]:
        """The options a call with these arguments uses (defaults merged in, ``n`` included)."""
        options = {"n": DEFAULT_SIZE, **self.defaults, **overrides}
        if n is not None:
            options["n"] = n
        return _check(options, "synapse_swarm()")

    def __call__(
        self,
        n: int | None = None,
        *,
        transport: Literal["memory", "tcp"] | None = None,
        configure: Callable[[int], dict[str, Any]] | None = None,
        **settings: Any,
    ) -> AbstractAsyncContextManager[Swarm]:
        if transport is not None:
            settings["transport"] = transport
        if configure is not None:
            settings["configure"] = configure
        return self._open(self.options(n, **settings))

    @contextlib.asynccontextmanager
    async def _open(self, options: dict[str, Any]) -> AsyncIterator[Swarm]:
        n = options.pop("n")
        async with open_swarm(n, **options) as running:
            self.swarms.append(running)
            yield running

    def __repr__(self) -> str:
        return f"<SwarmFactory defaults={self.defaults!r}>"


def _fixture_options(request: pytest.FixtureRequest, *, parametrised: bool) -> dict[str, Any]:
    """Marker (and indirect parameter) options, or a clean setup error naming the mistake."""
    try:
        options = swarm_options(request.node)
        if parametrised and hasattr(request, "param"):
            param = request.param
            if isinstance(param, int) and not isinstance(param, bool):
                param = {"n": param}
            if not isinstance(param, Mapping):
                raise TypeError(
                    f"a parametrised `swarm` takes a size or a dict of options, got {param!r}"
                )
            options.update(_check(param, "parametrised swarm"))
        return _check(options, "swarm options")
    except (TypeError, ValueError) as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)  # outside the except: no chained duplicate report


@pytest.fixture
def synapse_swarm(request: pytest.FixtureRequest) -> SwarmFactory:
    """A factory of swarms: ``async with synapse_swarm(3, configure=...) as swarm:``."""
    return SwarmFactory(_fixture_options(request, parametrised=False))


@pytest.fixture
async def swarm(request: pytest.FixtureRequest) -> AsyncIterator[Swarm]:
    """A running swarm (three nodes unless ``@pytest.mark.synapse_swarm`` says otherwise),
    stopped after the test."""
    factory = SwarmFactory(_fixture_options(request, parametrised=True))
    async with factory() as running:
        yield running
