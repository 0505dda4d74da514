"""Mixed swarms with synapse-p2p 2.5.0 nodes: they join ours, ours join theirs, both sides
see each other alive, and a stopped node goes offline on both sides."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

from synapse_p2p import Node
from tests.helpers import NodeTimings
from tests.interop.refenv import RefProcess, ref_python

__all__ = ["ref_python"]

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

FAST: NodeTimings = {"heartbeat_interval": 0.5, "peer_timeout": 2}


async def wait_ref_peers(proc: subprocess.Popen[str], expected: set[str], timeout: float) -> None:
    """Read the reference member's {"peers": [...]} lines until they equal ``expected``."""
    assert proc.stdout is not None

    def read_until() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if set(json.loads(line)["peers"]) == expected:
                return
        raise AssertionError("reference member exited")

    with anyio.fail_after(timeout):
        await anyio.to_thread.run_sync(read_until, abandon_on_cancel=True)


async def test_reference_nodes_join_ours_and_ours_join_theirs(
    ref_python: Path, anyio_backend: str
) -> None:
    ours = Node(bind="127.0.0.1", name="ours", swarm="mixed", **FAST)
    async with ours:
        # A reference node joins through our node.
        ref_a = await RefProcess.start(
            ref_python, "ref_member.py", "mixed", f"127.0.0.1:{ours.port}"
        )
        try:
            ref_a_id = ref_a.ready["id"]
            # Our second node joins through the reference node.
            second = Node(
                bind="127.0.0.1",
                name="second",
                swarm="mixed",
                seeds=[f"127.0.0.1:{ref_a.ready['port']}"],
                **FAST,
            )
            async with second:
                with anyio.fail_after(10):
                    while not (
                        ref_a_id in ours.peers
                        and ref_a_id in second.peers
                        and second.node_id in ours.peers
                    ):
                        await anyio.sleep(0.05)
                assert ours.peers[ref_a_id].name == "ref-member"
                await wait_ref_peers(ref_a.proc, {ours.node_id, second.node_id}, 10)
                # Still alive on both sides after several peer timeouts.
                await anyio.sleep(3)
                assert ref_a_id in ours.peers
                assert ref_a_id in second.peers
                await wait_ref_peers(ref_a.proc, {ours.node_id, second.node_id}, 5)
            # Our second node stopped: the reference node sees it go offline.
            await wait_ref_peers(ref_a.proc, {ours.node_id}, 10)
        finally:
            ref_a.stop()
        # The reference node was killed: ours sees it go offline.
        with anyio.fail_after(10):
            while ref_a_id in ours.peers:
                await anyio.sleep(0.05)


async def test_a_killed_process_goes_offline(ref_python: Path, anyio_backend: str) -> None:
    """Real time, a real process killed with SIGKILL (here a 2.5.0 node joined to ours)."""
    async with Node(bind="127.0.0.1", name="ours", swarm="kill", **FAST) as ours:
        victim = await RefProcess.start(
            ref_python, "ref_member.py", "kill", f"127.0.0.1:{ours.port}"
        )
        victim_id = victim.ready["id"]
        with anyio.fail_after(10):
            while victim_id not in ours.peers:
                await anyio.sleep(0.05)
        killed_at = anyio.current_time()
        victim.stop()  # SIGKILL
        with anyio.fail_after(10):
            while victim_id in ours.peers:
                await anyio.sleep(0.05)
        assert (
            anyio.current_time() - killed_at
            <= FAST["peer_timeout"] + FAST["heartbeat_interval"] + 0.5
        )


async def test_a_reference_node_joins_a_swarm_with_partial_views(
    ref_python: Path, anyio_backend: str
) -> None:
    """2.5.0 nodes take no part in views: they are heartbeated and listed as before."""
    ours = Node(bind="127.0.0.1", name="ours", swarm="pv", partial_views=True, **FAST)
    async with ours:
        seeds = [f"127.0.0.1:{ours.port}"]
        second = Node(
            bind="127.0.0.1", name="second", swarm="pv", seeds=seeds, partial_views=True, **FAST
        )
        async with second:
            ref_a = await RefProcess.start(
                ref_python, "ref_member.py", "pv", f"127.0.0.1:{ours.port}"
            )
            try:
                ref_id = ref_a.ready["id"]
                with anyio.fail_after(10):
                    while not (ref_id in ours.peers and ref_id in second.peers):
                        await anyio.sleep(0.05)
                await wait_ref_peers(ref_a.proc, {ours.node_id, second.node_id}, 10)
                await anyio.sleep(3)  # several peer timeouts later: still listed both ways
                assert ref_id in ours.peers
                assert ref_id in second.peers
                await wait_ref_peers(ref_a.proc, {ours.node_id, second.node_id}, 5)
                for node in (ours, second):
                    views_core = node.membership.views
                    assert views_core is not None
                    assert ref_id not in views_core.active_ids()
                    assert ours.node_id in views_core.active_ids() or node is ours
            finally:
                ref_a.stop()
