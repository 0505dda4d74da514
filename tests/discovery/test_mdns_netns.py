"""mDNS for real, between two test hosts made of network namespaces joined by a veth pair.

Network rule: nothing here runs mDNS on the machine's real interfaces. Every process that
speaks mDNS runs inside namespaces created by the ``netns`` fixture (see
``mdns_scripts/netns.py``), which are deleted afterwards. Skipped when namespaces are not
available (not root, no iproute2, no permission).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from tests.discovery.mdns_scripts.netns import ROOT, SCRIPTS, NetnsPair

ID_A = "a1" * 32
ID_OTHER = "0f" * 32
ID_B = "b2" * 32
SEEN_WITHIN = 10.0  # registration probes for about 1.5 s; discovery follows at once


def ours(pair: NetnsPair, ns: str, *args: str, hostname: str | None = None) -> Any:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return pair.spawn(
        ns, [sys.executable, str(SCRIPTS / "mdns_peer.py"), *args], env=env, hostname=hostname
    )


def is_found(node_id: str, **fields: Any) -> Any:
    def check(event: dict[str, Any]) -> bool:
        if event["event"] != "found" or event["peer"]["id"] != node_id:
            return False
        return all(event["peer"][k] == v for k, v in fields.items())

    return check


def is_event(name: str, **fields: Any) -> Any:
    return lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items())


@pytest.mark.parametrize(
    ("advertiser", "browser"),
    [("trio", "asyncio"), ("asyncio", "trio")],
    ids=["a-trio", "a-asyncio"],
)
def test_advertise_browse_update_remove(netns: NetnsPair, advertiser: str, browser: str) -> None:
    b = ours(
        netns, netns.b, "--browse", "--backend", browser, "--node-id", ID_B,
        "--interfaces", netns.if_b, "--filter-swarm", "sw", "--filter-team", "default",
    )  # fmt: skip
    a = ours(
        netns, netns.a, "--advertise", "--backend", advertiser, "--node-id", ID_A,
        "--name", "My Reviewer!", "--address", netns.addr_a, "--port", "4242",
        "--swarm", "sw", "--team", "default", "--capabilities", "review,lint",
        "--interfaces", netns.addr_a,
    )  # fmt: skip
    other = ours(
        netns, netns.a, "--advertise", "--node-id", ID_OTHER, "--name", "outsider",
        "--address", netns.addr_a, "--port", "4243", "--swarm", "elsewhere", "--team", "default",
    )  # fmt: skip
    b.expect(is_event("started"), SEEN_WITHIN, "browser started")
    started = a.expect(is_event("started"), SEEN_WITHIN, "advertiser started")
    assert started["service"] == f"My-Reviewer-{ID_A[:8]}._synapse._tcp.local."

    found = b.expect(is_found(ID_A), SEEN_WITHIN, "browser sees the advertiser")
    # Same hostname in both namespaces (like two machines sharing a name, reference §5.7): we
    # still report the advertised address, never 127.0.0.1.
    assert found["peer"] | {"last_seen": 0} == {
        "id": ID_A,
        "address": netns.addr_a,
        "port": 4242,
        "swarm": "sw",
        "team": "default",
        "name": "My Reviewer!",
        "kind": "node",
        "capabilities": ["review", "lint"],
        "last_seen": 0,
    }

    a.send({"op": "update", "capabilities": ["review", "lint", "test"]})
    a.expect(is_event("updated"), SEEN_WITHIN, "advertiser updated")
    b.expect(
        is_found(ID_A, capabilities=["review", "lint", "test"]), SEEN_WITHIN, "browser sees update"
    )

    a.send({"op": "update", "name": "Renamed", "kind": "bootstrap"})
    renamed = a.expect(is_event("updated"), SEEN_WITHIN, "advertiser re-registered")
    assert renamed["service"] == f"Renamed-{ID_A[:8]}._synapse._tcp.local."
    b.expect(is_found(ID_A, name="Renamed", kind="bootstrap"), SEEN_WITHIN, "browser sees rename")

    assert a.stop() == 0, a.stderr
    b.expect(is_event("removed", id=ID_A), SEEN_WITHIN, "browser sees the goodbye")

    assert other.stop() == 0, other.stderr
    assert b.stop() == 0, b.stderr
    stopped = b.expect(is_event("stopped"), 2, "browser stopped")
    assert stopped["statistics"]["ignored"] >= 1  # the outsider was resolved, then filtered
    assert all(e.get("peer", {}).get("id") != ID_OTHER for e in b.seen), "swarm filter failed"
    assert all(e.get("id") != ID_OTHER for e in b.seen)


@pytest.mark.interop
def test_reference_node_is_seen_by_our_browser(netns: NetnsPair) -> None:
    from tests.interop.refenv import build_reference_venv

    ref_python = build_reference_venv()
    b = ours(
        netns, netns.b, "--browse", "--backend", "asyncio", "--node-id", ID_B,
        "--filter-swarm", "sw", "--filter-team", "default",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ref = netns.spawn(
        netns.a,
        [str(ref_python), str(SCRIPTS / "ref_mdns_node.py"), "--address", netns.addr_a,
         "--name", "Ref Node!", "--swarm", "sw", "--capabilities", "ref,legacy"],
        env=env,
    )  # fmt: skip
    started = ref.expect(is_event("started"), SEEN_WITHIN, "reference node started")
    found = b.expect(is_found(started["id"]), SEEN_WITHIN, "our browser sees the reference")
    assert found["peer"] | {"last_seen": 0} == {
        "id": started["id"],
        "address": netns.addr_a,
        "port": started["port"],
        "swarm": "sw",
        "team": "default",
        "name": "Ref Node!",
        "kind": "node",
        "capabilities": ["ref", "legacy"],
        "last_seen": 0,
    }
    # No removal to expect: the reference's stop() closes zeroconf without awaiting the goodbye
    # task async_unregister_service returns, so its goodbyes are not sent and browsers only
    # drop it when its records expire. Liveness of reference peers comes from heartbeats.
    assert ref.stop() == 0, ref.stderr
    assert b.stop() == 0, b.stderr


@pytest.mark.interop
def test_our_advertiser_is_seen_by_reference(netns: NetnsPair) -> None:
    from tests.interop.refenv import build_reference_venv

    ref_python = build_reference_venv()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The reference swaps in 127.0.0.1 when the TXT host equals its own hostname; give it a
    # hostname of its own (a separate UTS namespace) so it reports the advertised address.
    ref = netns.spawn(
        netns.b,
        [str(ref_python), str(SCRIPTS / "ref_mdns_node.py"), "--address", netns.addr_b,
         "--name", "ref-b", "--swarm", "sw"],
        env=env,
        hostname="ref-host-b",
    )  # fmt: skip
    a = ours(
        netns, netns.a, "--advertise", "--backend", "trio", "--node-id", ID_A,
        "--name", "our node", "--address", netns.addr_a, "--port", "4242",
        "--swarm", "sw", "--team", "default", "--capabilities", "review",
    )  # fmt: skip
    ref.expect(is_event("started"), SEEN_WITHIN, "reference node started")
    a.expect(is_event("started"), SEEN_WITHIN, "our advertiser started")

    def ref_sees(**fields: Any) -> Any:
        def check(event: dict[str, Any]) -> bool:
            return event["event"] == "peers" and any(
                p["id"] == ID_A and all(p[k] == v for k, v in fields.items())
                for p in event["peers"]
            )

        return check

    ref.expect(
        ref_sees(
            address=netns.addr_a, port=4242, name="our node", swarm="sw", team="default",
            kind="node", capabilities=["review"],
        ),
        SEEN_WITHIN,
        "reference sees our node",
    )  # fmt: skip
    a.send({"op": "update", "capabilities": ["review", "summarise"]})
    ref.expect(ref_sees(capabilities=["review", "summarise"]), SEEN_WITHIN, "reference update")
    assert a.stop() == 0, a.stderr
    assert ref.stop() == 0, ref.stderr


def test_browse_swarms_and_bad_interface(netns: NetnsPair) -> None:
    one = ours(
        netns, netns.a, "--advertise", "--node-id", ID_A, "--name", "one", "--address",
        netns.addr_a, "--swarm", "red", "--team", "default",
    )  # fmt: skip
    two = ours(
        netns, netns.a, "--advertise", "--backend", "asyncio", "--node-id", ID_OTHER,
        "--address", netns.addr_a, "--swarm", "blue", "--team", "night",
    )  # fmt: skip
    bad = ours(netns, netns.b, "--list-swarms", "1", "--interfaces", "no-such-if0")
    one.expect(is_event("started"), SEEN_WITHIN, "first advertiser started")
    two.expect(is_event("started"), SEEN_WITHIN, "second advertiser started")
    listing = ours(netns, netns.b, "--list-swarms", "1.5", "--interfaces", netns.if_b)
    swarms = listing.expect(is_event("swarms"), SEEN_WITHIN, "browse_swarms result")
    # Sorted by swarm, team, name, id; nothing filtered out.
    assert [(p["swarm"], p["team"], p["name"], p["id"]) for p in swarms["peers"]] == [
        ("blue", "night", "", ID_OTHER),
        ("red", "default", "one", ID_A),
    ]
    assert listing.stop() == 0, listing.stderr
    assert bad.stop() != 0
    assert bad.stderr.strip().splitlines()[-1] == (  # a plain exception, not a group
        "synapse_p2p.errors.MdnsError: "
        "mDNS interface 'no-such-if0' not found or has no IPv4 address"
    )
    assert one.stop() == 0, one.stderr
    assert two.stop() == 0, two.stderr


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_many_services_and_a_slow_application(netns: NetnsPair, backend: str) -> None:
    # 80 services announced at once (more than the 32-event hand-off stream holds) and an
    # application whose callback blocks 10 ms: zeroconf's browser thread waits, nothing is lost.
    count = 80
    b = ours(
        netns, netns.b, "--browse", "--backend", backend, "--node-id", ID_B,
        "--filter-swarm", "bulk", "--callback-delay", "0.01",
    )  # fmt: skip
    b.expect(is_event("started"), SEEN_WITHIN, "browser started")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bulk = netns.spawn(
        netns.a,
        [sys.executable, str(SCRIPTS / "bulk_advertiser.py"), netns.addr_a, str(count)],
        env=env,
    )
    bulk.expect(is_event("started"), 30, "bulk services registered")
    expected = {f"{i:064x}" for i in range(count)}
    found: set[str] = set()
    while found != expected:
        event = b.expect(is_event("found"), 15, f"bulk discovery ({len(found)}/{count})")
        assert event["peer"]["port"] == 5000 + int(event["peer"]["id"], 16)
        found.add(event["peer"]["id"])
    assert bulk.stop() == 0, bulk.stderr
    removed: set[str] = set()
    while removed != expected:
        event = b.expect(is_event("removed"), 15, f"bulk removal ({len(removed)}/{count})")
        removed.add(event["id"])
    assert b.stop() == 0, b.stderr
    stats = b.expect(is_event("stopped"), 2, "browser stopped")["statistics"]
    print("browser statistics:", stats)
    assert stats["found"] == count
    assert stats["removed"] == count
