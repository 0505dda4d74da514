"""The mDNS record encoding, parsing and event logic, with no network at all.

Nothing here opens a zeroconf instance: ServiceInfo objects are built and read in memory, and
the discovery's event handling is driven directly. The real thing runs in network namespaces
(test_mdns_netns.py).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
from typing import Any

import pytest

from synapse_p2p._config import accepts
from synapse_p2p.discovery import (
    SERVICE_TYPE,
    MdnsDiscovery,
    MdnsError,
    MdnsRecord,
    MdnsStatistics,
)
from synapse_p2p.discovery._mdns import peer_from_service, resolve_interfaces, service_info
from synapse_p2p.discovery._records import (
    instance_name,
    peer_from_txt,
    pick_address,
    service_label,
    txt_properties,
)
from synapse_p2p.types import NodeKind, Peer
from tests.discovery.mdns_scripts.netns import SCRIPTS

NODE_ID = "9a976b8a" + "1" * 56
OTHER_ID = "b" * 64


def record(**changes: Any) -> MdnsRecord:
    fields: dict[str, Any] = {
        "node_id": NODE_ID,
        "address": "192.168.1.20",
        "port": 9999,
        "name": "My Reviewer!",
        "kind": "node",
        "swarm": "reviews",
        "team": "default",
        "capabilities": ("review", "lint"),
    }
    fields.update(changes)
    return MdnsRecord(**fields)


def txt(**values: str | None) -> dict[bytes, bytes | None]:
    base: dict[str, str | None] = {
        "id": OTHER_ID,
        "name": "peer",
        "kind": "node",
        "swarm": "reviews",
        "team": "default",
        "host": "elsewhere",
        "capabilities": "a,b",
    }
    base.update(values)
    return {k.encode(): (None if v is None else v.encode()) for k, v in base.items()}


# -- instance names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("My Reviewer!", "My-Reviewer"),
        ("", "9a976b8a"),
        ("!!!", "9a976b8a"),
        ("--edge--", "edge"),
        ("a.b_c d", "a-b-c-d"),
        ("Café ünd", "Café-ünd"),  # str.isalnum() keeps non-ASCII letters, as the reference
        ("x-y", "x-y"),
    ],
)
def test_service_label(name: str, label: str) -> None:
    assert service_label(name, NODE_ID) == label


def test_instance_name_matches_the_reference_example() -> None:
    assert instance_name(record()) == "My-Reviewer-9a976b8a._synapse._tcp.local."
    assert instance_name(record(name="")) == "9a976b8a-9a976b8a._synapse._tcp.local."


def test_long_label_is_cut_to_a_valid_dns_label() -> None:
    label = service_label("é" * 100, NODE_ID)
    assert len(label.encode()) <= 54
    assert label == "é" * 27
    info = service_info(record(name="é" * 100), host="h")  # zeroconf rejects labels > 63
    assert info.name == f"{label}-9a976b8a.{SERVICE_TYPE}"
    assert service_label("ab-" * 30, NODE_ID).endswith("b")  # no trailing '-' after the cut


# -- TXT and ServiceInfo -----------------------------------------------------------------------


def test_txt_properties_are_the_reference_keys() -> None:
    assert txt_properties(record(), "host-1") == {
        b"id": NODE_ID.encode(),
        b"name": b"My Reviewer!",
        b"kind": b"node",
        b"swarm": b"reviews",
        b"team": b"default",
        b"host": b"host-1",
        b"capabilities": b"review,lint",
    }
    empty = txt_properties(record(swarm=None, team=None, capabilities=(), name=""), "h")
    assert empty[b"swarm"] == empty[b"team"] == empty[b"capabilities"] == empty[b"name"] == b""


def test_service_info() -> None:
    info = service_info(record(kind=NodeKind.BOOTSTRAP), host="h")
    assert info.type == SERVICE_TYPE
    assert info.name == "My-Reviewer-9a976b8a._synapse._tcp.local."
    assert info.port == 9999
    assert info.parsed_addresses() == ["192.168.1.20"]
    assert info.properties[b"kind"] == b"bootstrap"
    assert info.server is None  # as the reference: zeroconf uses the instance name
    with pytest.raises(ValueError):
        service_info(record(address="node.example"), host="h")  # resolved by the driver
    renamed = service_info(record(), host="h", name=f"x-2.{SERVICE_TYPE}", server="x.local.")
    assert (renamed.name, renamed.server) == (f"x-2.{SERVICE_TYPE}", "x.local.")


def test_txt_entries_over_255_bytes_are_shortened(caplog: pytest.LogCaptureFixture) -> None:
    caps = tuple(f"capability-{i:03d}" for i in range(40))  # 40 * 15 bytes
    with caplog.at_level(logging.WARNING, logger="synapse_p2p.discovery"):
        props = txt_properties(record(name="n" * 400, capabilities=caps), "h")
    assert len(b"name=" + props[b"name"]) == 255
    kept = props[b"capabilities"].decode().split(",")
    assert kept == list(caps[: len(kept)])  # whole names, in order
    assert len(b"capabilities=" + props[b"capabilities"]) <= 255
    assert "not advertised" in caplog.text
    service_info(record(name="n" * 400, capabilities=caps), host="h")  # zeroconf accepts it


def test_round_trip() -> None:
    peer = peer_from_service(service_info(record(), host="h"))
    assert peer is not None
    assert peer.to_dict() | {"last_seen": 0} == {
        "id": NODE_ID,
        "address": "192.168.1.20",
        "port": 9999,
        "swarm": "reviews",
        "team": "default",
        "name": "My Reviewer!",
        "kind": "node",
        "capabilities": ["review", "lint"],
        "last_seen": 0,
    }


# -- parsing what others advertise -------------------------------------------------------------


def test_parse_defaults() -> None:
    peer = peer_from_txt(
        txt(swarm="", team="", kind=None, capabilities=",a,,b,", name=None), ["10.0.0.7"], 4000
    )
    assert peer is not None
    assert (peer.swarm, peer.team, peer.kind, peer.name) == (None, None, NodeKind.NODE, "")
    assert peer.capabilities == ["a", "b"]
    bare = peer_from_txt({b"id": b"x"}, ["10.0.0.7"], 1)
    assert bare is not None
    assert (bare.kind, bare.swarm, bare.capabilities) == (NodeKind.NODE, None, [])


@pytest.mark.parametrize(
    ("properties", "addresses", "port"),
    [
        (txt(id=""), ["10.0.0.7"], 4000),
        ({k: v for k, v in txt().items() if k != b"id"}, ["10.0.0.7"], 4000),
        (txt(), [], 4000),
        (txt(), ["0.0.0.0", "fe80::1"], 4000),
        (txt(), ["10.0.0.7"], None),
        (txt(), ["10.0.0.7"], 0),
        (txt(kind="relay"), ["10.0.0.7"], 4000),
        ({**txt(), b"name": b"\xff\xfe"}, ["10.0.0.7"], 4000),
    ],
    ids=[
        "empty-id",
        "no-id",
        "no-address",
        "unusable-address",
        "no-port",
        "port-0",
        "bad-kind",
        "not-utf8",
    ],
)
def test_parse_discards(
    properties: dict[bytes, bytes | None], addresses: list[str], port: int | None
) -> None:
    assert peer_from_txt(properties, addresses, port) is None


def test_address_is_the_advertised_one_even_for_our_hostname() -> None:
    # The reference substitutes 127.0.0.1 when TXT host equals our hostname; two machines can
    # share a hostname, so we keep the advertised address.
    peer = peer_from_txt(txt(host=socket.gethostname()), ["192.168.1.77"], 4000)
    assert peer is not None
    assert peer.address == "192.168.1.77"


@pytest.mark.parametrize(
    ("addresses", "chosen"),
    [
        (["fe80::1", "2001:db8::5", "10.0.0.7"], "10.0.0.7"),
        (["0.0.0.0", "224.0.0.251", "192.168.1.4", "10.0.0.7"], "192.168.1.4"),
        (["2001:db8::5"], "2001:db8::5"),
        (["127.0.0.1"], "127.0.0.1"),
        (["not-an-ip"], None),
        ([], None),
    ],
)
def test_pick_address(addresses: list[str], chosen: str | None) -> None:
    assert pick_address(addresses) == chosen


@pytest.mark.parametrize(
    ("swarm", "team", "peer_swarm", "peer_team", "accepted"),
    [
        (None, None, "any", None, True),
        ("s", None, "s", "whatever", True),
        ("s", None, "t", "default", False),
        ("s", None, None, "default", False),
        (None, "default", "x", "default", True),
        (None, "default", "x", None, False),
        ("s", "default", "s", "default", True),
        ("s", "default", "s", "blue", False),
    ],
)
def test_membership_rule(
    swarm: str | None,
    team: str | None,
    peer_swarm: str | None,
    peer_team: str | None,
    accepted: bool,
) -> None:
    peer = Peer(id="p", address="10.0.0.1", port=1, swarm=peer_swarm, team=peer_team)
    assert accepts(peer, swarm=swarm, team=team) is accepted


# -- argument checking -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"node_id": ""}, ValueError, "node_id"),
        ({"address": ""}, ValueError, "address"),
        ({"address": "0.0.0.0"}, ValueError, "address"),
        ({"address": "::"}, ValueError, "address"),
        ({"port": 0}, ValueError, "port"),
        ({"port": 70000}, ValueError, "port"),
        ({"port": True}, TypeError, "port"),
        ({"kind": "relay"}, ValueError, "NodeKind"),
        ({"swarm": 3}, TypeError, "swarm"),
        ({"swarm": "s" * 300}, ValueError, "swarm"),
        ({"capabilities": "review"}, TypeError, "capabilities"),
        ({"capabilities": [1]}, TypeError, "capabilities"),
    ],
)
def test_record_validation(changes: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        record(**changes)


def test_record_normalises() -> None:
    r = record(kind=NodeKind.BOOTSTRAP, capabilities=["a", "b"], address="node.example")
    assert (r.kind, r.capabilities, r.address) == ("bootstrap", ("a", "b"), "node.example")
    assert hash(r) == hash(
        record(kind="bootstrap", capabilities=("a", "b"), address="node.example")
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"browse": False, "advertise": False, "record": record()}, ValueError),
        ({"advertise": True}, ValueError),
        ({"record": "nope"}, TypeError),
        ({"advertise": False, "interfaces": "eth0"}, TypeError),
        ({"advertise": False, "interfaces": []}, ValueError),
        ({"advertise": False, "max_peers": 0}, ValueError),
    ],
)
def test_discovery_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        MdnsDiscovery(**kwargs)


def test_resolve_interfaces() -> None:
    # Only lists local interfaces; sends nothing.
    assert "127.0.0.1" in resolve_interfaces(["lo"])
    assert resolve_interfaces(["10.1.2.3", "10.1.2.3"]) == ["10.1.2.3"]
    with pytest.raises(MdnsError, match="no-such-if0"):
        resolve_interfaces(["no-such-if0"])
    assert issubclass(MdnsError, OSError)


# -- event handling (the event-loop side, driven directly) -------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def found(self, peer: Peer) -> None:
        self.events.append(("found", (peer.id, peer.name, tuple(peer.capabilities))))

    def removed(self, node_id: str) -> None:
        self.events.append(("removed", node_id))


def discovery(recorder: Recorder, **kwargs: Any) -> MdnsDiscovery:
    return MdnsDiscovery(
        record=record(),
        swarm="reviews",
        team="default",
        on_found=recorder.found,
        on_removed=recorder.removed,
        **kwargs,
    )


def peer(node_id: str = OTHER_ID, **changes: Any) -> Peer:
    fields: dict[str, Any] = {
        "id": node_id,
        "address": "10.0.0.9",
        "port": 4000,
        "swarm": "reviews",
        "team": "default",
        "name": "peer",
        "capabilities": ["a"],
    }
    fields.update(changes)
    return Peer(**fields)


def test_found_updated_removed() -> None:
    rec = Recorder()
    d = discovery(rec)
    d._seen("p._synapse._tcp.local.", peer())
    d._seen("p._synapse._tcp.local.", peer())  # same data again (a refresh): no callback
    d._seen("p._synapse._tcp.local.", peer(capabilities=["a", "b"]))
    assert list(d.discovered) == [OTHER_ID]
    assert d.discovered[OTHER_ID].capabilities == ["a", "b"]
    d._forget("p._synapse._tcp.local.")
    d._forget("p._synapse._tcp.local.")  # a second Removed: nothing
    d._forget("unknown._synapse._tcp.local.")
    assert rec.events == [
        ("found", (OTHER_ID, "peer", ("a",))),
        ("found", (OTHER_ID, "peer", ("a", "b"))),
        ("removed", OTHER_ID),
    ]
    assert d.discovered == {}
    assert d.statistics() == MdnsStatistics(
        found=2, removed=1, ignored=0, unresolved=0, handoff_waits=0
    )


def test_filtering_own_id_and_invalid_records() -> None:
    rec = Recorder()
    d = discovery(rec)
    d._seen("own", peer(NODE_ID))
    d._seen("other-swarm", peer("c" * 64, swarm="elsewhere"))
    d._seen("other-team", peer("d" * 64, team="blue"))
    d._seen("no-team", peer("e" * 64, team=None))
    d._seen("junk", None)
    assert rec.events == []
    assert d.discovered == {}
    assert d.statistics().ignored == 5


def test_a_peer_that_moves_to_another_swarm_is_removed() -> None:
    rec = Recorder()
    d = discovery(rec)
    d._seen("p", peer())
    d._seen("p", peer(swarm="elsewhere"))
    d._seen("p", None)  # and a broken update is also a removal, reported once
    assert rec.events == [("found", (OTHER_ID, "peer", ("a",))), ("removed", OTHER_ID)]


def test_one_node_under_two_instance_names() -> None:
    rec = Recorder()
    d = discovery(rec)
    d._seen("old-name", peer())
    d._seen("new-name", peer(name="renamed"))
    d._forget("old-name")  # the node still answers under its new name
    assert OTHER_ID in d.discovered
    d._forget("new-name")
    assert rec.events == [
        ("found", (OTHER_ID, "peer", ("a",))),
        ("found", (OTHER_ID, "renamed", ("a",))),
        ("removed", OTHER_ID),
    ]


def test_an_instance_name_taken_over_by_another_node() -> None:
    rec = Recorder()
    d = discovery(rec)
    d._seen("p", peer())
    d._seen("p", peer("f" * 64))
    assert rec.events == [
        ("found", (OTHER_ID, "peer", ("a",))),
        ("removed", OTHER_ID),
        ("found", ("f" * 64, "peer", ("a",))),
    ]


def test_peer_table_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    d = discovery(rec, max_peers=2)
    with caplog.at_level(logging.WARNING, logger="synapse_p2p.discovery"):
        for i in range(5):
            d._seen(f"n{i}", peer(f"{i:064x}"))
    assert len(d.discovered) == 2
    assert caplog.text.count("at most 2 peers") == 1
    d._seen("n0", peer(f"{0:064x}", name="changed"))  # known peers still update
    assert d.discovered[f"{0:064x}"].name == "changed"


def test_callback_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def boom(_: object) -> None:
        raise RuntimeError("application bug")

    d = MdnsDiscovery(record=record(), on_found=boom, on_removed=boom)
    with caplog.at_level(logging.ERROR, logger="synapse_p2p.discovery"):
        d._seen("p", peer())
        d._forget("p")
    assert [r.getMessage() for r in caplog.records] == [
        "mDNS on_found callback failed",
        "mDNS on_removed callback failed",
    ]
    assert all(r.exc_info is not None for r in caplog.records)


def test_callbacks_get_their_own_copy() -> None:
    got: list[Peer] = []
    d = MdnsDiscovery(record=record(), on_found=got.append)
    d._seen("p", peer())
    got[0].capabilities.append("mutated")
    assert d.discovered[OTHER_ID].capabilities == ["a"]


@pytest.mark.anyio
async def test_update_when_not_running_only_stores() -> None:
    current = [record()]
    d = MdnsDiscovery(record=lambda: current[0], browse=False)
    before = d.record
    assert before is None  # a callable is read when run() starts
    current[0] = record(capabilities=("new",))
    await d.update()
    assert d.record == current[0]
    await d.update(record(name="explicit"))
    assert d.record is not None
    assert d.record.name == "explicit"
    assert d.service_name is None


# -- the reference's own encoder and parser agree ----------------------------------------------


@pytest.mark.interop
def test_reference_encoding_and_parsing_agree() -> None:
    from tests.interop.refenv import build_reference_venv

    python = build_reference_venv()
    nodes = [
        record(),
        record(name="", swarm=None, team=None, capabilities=()),
        record(name="--a.b_c Café--", kind="bootstrap", capabilities=("x",)),
        record(name="!!!", team="blue"),
    ]
    services = [
        service_info(r, host="some-other-host") for r in nodes
    ]  # parsed by the reference as a peer on another machine
    request = {
        "nodes": [
            {
                "name": r.name,
                "node_id": r.node_id,
                "port": r.port,
                "address": r.address,
                "kind": r.kind,
                "swarm": r.swarm,
                "team": r.team,
                "capabilities": list(r.capabilities),
            }
            for r in nodes
        ],
        "services": [
            {
                "name": info.name,
                "port": info.port,
                "addresses": info.parsed_addresses(),
                "properties": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
            }
            for info in services
        ],
    }
    done = subprocess.run(
        [str(python), str(SCRIPTS / "ref_encode.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=SCRIPTS,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    reference = json.loads(done.stdout)
    host = socket.gethostname()
    for r, theirs in zip(nodes, reference["nodes"], strict=True):
        ours = service_info(r, host=host)
        assert theirs == {
            "name": ours.name,
            "type": ours.type,
            "port": ours.port,
            "addresses": ours.parsed_addresses(),
            "properties": {k.decode(): (v or b"").decode() for k, v in ours.properties.items()},
        }
    for info, theirs in zip(services, reference["services"], strict=True):
        mine = peer_from_service(info)
        assert mine is not None
        assert theirs == {k: v for k, v in mine.to_dict().items() if k != "last_seen"}
