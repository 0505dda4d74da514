"""The live views' ticks (``LiveViews.run``): once a view holds its target with nothing
pending, the core is ticked every ``VIEW_IDLE_TICK`` at most, not every ``VIEW_TICK``; work
(a member lost, a view message) wakes it, and views still repair (virtual time)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
import trio.testing

from synapse_p2p.membership import _live_views
from synapse_p2p.membership._records import PeerRecord
from synapse_p2p.membership._views import HyParView, ViewConfig
from tests.membership.test_virtual_time import open_swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def record(i: int) -> PeerRecord:
    return PeerRecord(f"{i:064x}", f"10.0.0.{i}", 7000)


def test_a_core_is_idle_until_its_next_shuffle_once_its_view_is_whole() -> None:
    config = ViewConfig(
        active_min=2, active_max=2, accept_slack=0, reserved_slots=0, shuffle_interval=60
    )
    core = HyParView(record(1), config)
    assert core.target() == 2
    assert core.idle_until(0.0) == 0.0  # an empty view: work now
    core.join(0.0, [record(2)])
    assert core.idle_until(1.0) == 1.0  # a JOIN under way
    for i in (2, 3):
        core._add_active(record(i), chosen=True)
    core._joining = None
    core.pending.clear()
    core.tick(1.0)  # (schedules the first shuffle)
    assert core.idle_until(2.0) == core._next_shuffle > 2.0
    core.on_connection_failed(3.0, record(3).id)  # short of the target, nobody to ask: idle
    assert core.idle_until(3.0) == core._next_shuffle
    core.offer(record(4))  # someone to ask: work now
    assert core.idle_until(3.0) == 3.0


async def test_idle_views_tick_rarely_and_still_repair(anyio_backend: Any) -> None:
    async with open_swarm(8, partial_views=True, peer_timeout=8, heartbeat_interval=1) as swarm:
        await swarm.converged()
        await anyio.sleep(30)  # (the views settle)
        ticks: Counter[str] = Counter()
        for node in swarm.nodes:
            views = node.membership.views
            assert views is not None
            tick = views.tick

            def counted(tick: Any = tick, name: str = node.name) -> None:
                ticks[name] += 1
                tick()

            views.tick = counted  # type: ignore[method-assign]
        await anyio.sleep(120)
        print("ticks in 120 s idle:", dict(ticks))
        assert max(ticks.values()) <= 120 / _live_views.VIEW_IDLE_TICK + 6  # (was 120)
        victim = swarm.nodes[3]
        swarm.kill(victim.name)
        survivors = [n for n in swarm.nodes if n is not victim]
        with anyio.fail_after(60):
            while True:
                views_now = [n.membership.views for n in survivors]
                if all(
                    v is not None
                    and v.core is not None
                    and victim.node_id not in v.active_ids()
                    and len(v.active_ids()) >= v.core.target()
                    for v in views_now
                ):
                    break
                await anyio.sleep(0.1)
        await swarm.converged(survivors)
