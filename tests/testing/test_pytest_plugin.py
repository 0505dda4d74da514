"""``synapse_p2p.pytest_plugin`` as users enable it: ``pytest_plugins`` in their own conftest,
test files run by pytester (in process: quick), under anyio (trio and asyncio) and pytest-trio.
"""

from __future__ import annotations

import inspect
import textwrap

import pytest

import synapse_p2p.pytest_plugin as plugin

pytest_plugins = ["pytester"]

ENABLE = 'pytest_plugins = ["synapse_p2p.pytest_plugin"]\n'


@pytest.fixture
def user(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project with the plugin enabled in its top-level conftest."""
    pytester.makeconftest(ENABLE)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In process, the plugin module is already imported (by our conftest), so pytest cannot
    # rewrite its asserts and says so; a user's run imports it fresh.
    return pytester.runpytest(
        "-p", "no:cacheprovider", "--strict-markers", "-v",
        "-W", "ignore::pytest.PytestAssertRewriteWarning", *args,
    )  # fmt: skip


def test_user_tests_pass_under_trio_and_asyncio(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_agents="""
        import pytest

        from synapse_p2p.testing import Swarm

        pytestmark = pytest.mark.anyio


        def capable(i):
            return {"name": f"agent{i}", "capabilities": ["review"] if i else []}


        @pytest.mark.synapse_swarm(n=3, configure=capable)
        async def test_marked_swarm(swarm):
            assert isinstance(swarm, Swarm)
            asker, *reviewers = swarm.nodes
            for node in reviewers:
                @node.endpoint("review")
                async def review(diff: str, name: str = node.name) -> str:
                    return f"{name}: LGTM ({diff})"
            results = sorted(
                [await asker.call_peer(peer, "review", "d1") for peer in asker.peers.values()]
            )
            assert results == ["agent1: LGTM (d1)", "agent2: LGTM (d1)"]


        async def test_factory(synapse_swarm):
            async with synapse_swarm(2, swarm="team-a") as a, synapse_swarm(1) as b:
                assert [len(a.nodes), len(b.nodes)] == [2, 1]
                assert a[0].swarm == "team-a"
                assert a[1].node_id in a[0].peers
        """
    )
    result = run(user)
    result.assert_outcomes(passed=4)
    for test in ("test_marked_swarm", "test_factory"):
        for backend in ("trio", "asyncio"):
            result.stdout.fnmatch_lines([f"*::{test}?{backend}? PASSED*"])


def test_a_failing_user_assertion_fails(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_agents="""
        import pytest

        pytestmark = pytest.mark.anyio


        @pytest.mark.synapse_swarm(2)
        async def test_wrong_size(swarm):
            assert len(swarm.nodes) == 3


        async def test_wrong_in_factory(synapse_swarm):
            async with synapse_swarm(1) as swarm:
                assert swarm[0].name == "somebody else"
        """
    )
    result = run(user)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*assert 2 == 3*", "*AssertionError: assert 'node0' == *"])


def test_swarms_stop_after_each_test_even_a_failing_one(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_teardown="""
        import pytest

        pytestmark = pytest.mark.anyio
        seen = []


        @pytest.mark.parametrize("anyio_backend", ["trio"])
        async def test_fails_with_a_running_swarm(swarm):
            seen.extend(swarm.nodes)
            assert all(node.running for node in swarm.nodes)
            raise RuntimeError("the user's test broke")


        def test_those_nodes_are_stopped():
            assert len(seen) == 3
            assert not any(node.running for node in seen)
        """
    )
    result = run(user)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: the user's test broke*"])


def test_pytest_trio_tests_and_virtual_time(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_trio="""
        import pytest
        import trio
        import trio.testing


        @pytest.mark.trio
        @pytest.mark.synapse_swarm(n=2)
        async def test_swarm_fixture(swarm, synapse_swarm):
            assert len(swarm.nodes) == 2
            async with synapse_swarm(1) as other:
                assert other[0].running


        @pytest.mark.trio
        @pytest.mark.synapse_swarm(n=2, heartbeat_interval=5, peer_timeout=20)
        async def test_on_autojump_clock(swarm, autojump_clock):
            survivor, victim = swarm.nodes
            swarm.kill(victim)
            start = trio.current_time()
            while victim.node_id in survivor.peers:
                await trio.sleep(1)
            # Marked offline within the peer timeout plus a heartbeat, in virtual seconds.
            assert trio.current_time() - start <= 25 + 1
        """
    )
    result = run(user)
    result.assert_outcomes(passed=2)


def test_pytest_trio_mode(user: pytest.Pytester) -> None:
    user.makeini("[pytest]\ntrio_mode = true\n")
    user.makepyfile(
        test_trio_mode="""
        import pytest


        @pytest.mark.synapse_swarm(2)
        async def test_no_marker_needed(swarm, synapse_swarm):
            assert swarm[1].node_id in swarm[0].peers
            async with synapse_swarm(1) as other:
                assert other[0].running
        """
    )
    run(user).assert_outcomes(passed=1)


def test_anyio_virtual_time_on_trio(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_virtual="""
        import anyio
        import pytest
        import trio.testing

        pytestmark = pytest.mark.anyio


        @pytest.fixture
        def anyio_backend():
            return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


        @pytest.mark.synapse_swarm(2)
        async def test_an_hour_in_no_time(swarm):
            before = anyio.current_time()
            await anyio.sleep(3600)
            assert anyio.current_time() - before >= 3600
            assert swarm[1].node_id in swarm[0].peers  # heartbeats kept them together
        """
    )
    result = run(user, "--durations=0")
    result.assert_outcomes(passed=1)


def test_the_marker_is_registered(user: pytest.Pytester) -> None:
    result = user.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.synapse_swarm(n=3, *, transport='memory'*"])


def test_the_plugin_is_opt_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_no_plugin="""
        import pytest

        @pytest.mark.anyio
        async def test_uses_swarm(swarm):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*fixture 'swarm' not found*"])


def test_bad_marker_arguments_are_setup_errors(user: pytest.Pytester) -> None:
    user.makepyfile(
        test_bad="""
        import pytest

        pytestmark = pytest.mark.anyio


        @pytest.mark.synapse_swarm(n=0)
        async def test_empty(swarm):
            pass


        @pytest.mark.synapse_swarm(transport="carrier-pigeon")
        async def test_transport(synapse_swarm):
            pass
        """
    )
    result = run(user)
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.synapse_swarm: n must be at least 1, got 0*",
            "*@pytest.mark.synapse_swarm: transport must be 'memory' or 'tcp'*",
        ],
        consecutive=False,
    )


def docstring_example() -> str:
    """The worked example of the plugin's module docstring, as a file."""
    doc = inspect.getdoc(plugin) or ""
    head = "A worked example, a ``test_review.py`` next to the ``conftest.py`` above::"
    assert head in doc, "the module docstring lost its worked example"
    return textwrap.dedent(doc.split(head, 1)[1])


def test_the_docstring_example_passes(user: pytest.Pytester) -> None:
    user.makepyfile(test_review=docstring_example())
    result = run(user)
    result.assert_outcomes(passed=4)
