"""The NAT proof: two nodes behind two real masquerading NATs (network namespaces and nft,
built by :mod:`tests.reach.nat_scripts.topology` and deleted afterwards), each told nothing
but the seed, become full members through a relay they pick by themselves.

Checked, for each backend: both private nodes learn they are private and reserve on the
relay; every node lists every other; a private-to-private call; an ask answered by all,
through circuits; a conversation synced from one private node by the other; a team task
granted to a private worker; the relay restarted (a crash) and re-reserved within seconds;
its byte limit refused with a clear error while it keeps serving; and a capture of every
frame on the relay's interface holds the relay's preamble but never the ask's text.

Skipped, with the reason printed, when namespaces cannot be made (not root, no ``ip`` or
``nft``).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_p2p.relay import PREAMBLE
from tests.discovery.mdns_scripts.netns import ROOT, JsonProcess
from tests.reach.nat_scripts.topology import NatLab, NetnsUnavailable

SCRIPTS = Path(__file__).resolve().parent / "nat_scripts"
RELAY_PORT = 7400  # each namespace has its own ports
SECRET_TEXT = "approve the budget of project kestrel-4"
JOIN_WITHIN = 40.0
_ids = itertools.count(1)


@pytest.fixture
def lab() -> Iterator[NatLab]:
    try:
        made = NatLab()
    except NetnsUnavailable as exc:
        print(f"NAT namespace test skipped: {exc}")
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        yield made
    finally:
        made.close()


def member(lab: NatLab, host: str, backend: str, *args: str) -> JsonProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, str(SCRIPTS / "nat_member.py"), "--backend", backend, *args]
    return lab.spawn(host, argv, env=env)


def ask(process: JsonProcess, timeout: float = 40, **command: Any) -> dict[str, Any]:
    """Send ``command`` and wait for its answer (which must not be an error)."""
    ident = next(_ids)
    process.send({"id": ident, **command})
    answer = process.expect(lambda e: e.get("id") == ident, timeout, f"answer to {command}")
    return answer


def status(process: JsonProcess, check: Any, what: str, timeout: float = JOIN_WITHIN) -> Any:
    return process.expect(lambda e: "status" in e and check(e), timeout, what)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_private_nodes_behind_nats_are_full_members_through_a_relay(
    lab: NatLab, backend: str, tmp_path: Path
) -> None:
    ip = lab.ip
    seed = f"{ip['relay']}:{RELAY_PORT}"
    key = str(tmp_path / "relay.key")
    frames = tmp_path / "relay-eth0.bin"
    capture = lab.spawn(
        "relay",
        [sys.executable, str(SCRIPTS / "capture.py"), "eth0", str(frames)],
        env=dict(os.environ),
    )
    capture.expect(lambda e: "capturing" in e, 20, "capture started")

    def start_relay(*extra: str) -> JsonProcess:
        process = member(lab, "relay", backend, "--name", "relay", "--relay",
                         "--port", str(RELAY_PORT), "--advertise", ip["relay"],
                         "--identity", key, *extra)  # fmt: skip
        process.expect(lambda e: "port" in e, 30, "relay serving")
        return process

    relay = start_relay()
    pub = member(lab, "pub", backend, "--name", "pub", "--advertise", ip["pub"], "--seed", seed)
    # the private nodes are told the seed and nothing else
    p1 = member(lab, "p1", backend, "--name", "p1", "--seed", seed)
    p2 = member(lab, "p2", backend, "--name", "p2", "--seed", seed,
                "--capability", "gpu", "--worker")  # fmt: skip
    ports = {name: proc.expect(lambda e: "port" in e, 30, f"{name} serving")["port"]
             for name, proc in (("pub", pub), ("p1", p1), ("p2", p2))}  # fmt: skip
    where = {"relay": seed, **{name: f"{ip[name]}:{port}" for name, port in ports.items()}}

    # Both private nodes learn they are private and reserve on the relay by themselves.
    for proc in (p1, p2):
        status(proc, lambda e: e["reach"] == "private" and e["reserved"] == [seed], "reserved")
    status(pub, lambda e: e["reach"] == "public", "pub is public")
    # Every node lists every other at its own address: the private ones are full members.
    for name, proc in (("relay", relay), ("pub", pub), ("p1", p1), ("p2", p2)):
        others = {k: v for k, v in where.items() if k != name}
        status(proc, lambda e, o=others: e["peers"] == o, f"{name} lists everyone")

    # private to private: a call, an ask with replies, a conversation sync
    called = ask(p1, op="call", peer="p2", endpoint="whoami")
    assert called.get("result") == "p2", called
    asked = ask(p1, op="ask", text=SECRET_TEXT)
    assert asked["replies"] == {n: f"{n} read {SECRET_TEXT}" for n in ("relay", "pub", "p2")}
    synced = ask(p2, op="sync", peer="p1", conversation=asked["conversation"], text=SECRET_TEXT)
    assert synced["has_text"] is True, synced
    # a team task granted to the private worker
    offered = ask(pub, op="offer", title="the render job", requires=["gpu"])
    assert offered.get("result") == "p2 did the render job", offered

    # The relay crashes and comes back (with a byte limit now): re-reserved within seconds.
    relay.proc.kill()
    relay.proc.wait(timeout=10)
    relay = start_relay("--relay-bytes", "1000000")
    back = time.monotonic()
    # The new relay's own statuses (a fresh process: none is stale) say when both hold a
    # reservation again; the private nodes' queued statuses may predate the crash, so only
    # those written since count.
    status(relay, lambda e: len(e["holding"]) == 2, "both re-reserved", timeout=15)
    assert time.monotonic() - back < 8
    for proc in (p1, p2):
        status(proc, lambda e: e["at"] > back and e["reserved"] == [seed], "re-reserved")
    status(p1, lambda e: e["at"] > back and "p2" in e["peers"], "p1 still lists p2")
    status(relay, lambda e: e["holding"] == ["p1", "p2"], "relay holds both, by name")

    # Over the relay's limit: a clear error to the caller; the relay keeps serving.
    big = ask(p1, op="call", peer="p2", endpoint="echo", args=["x" * 1_500_000])
    assert "limit" in big.get("error", ""), big
    again = ask(p1, op="call", peer="p2", endpoint="whoami")
    assert again.get("result") == "p2", again

    capture.stop()
    seen = frames.read_bytes()
    assert PREAMBLE in seen  # the capture saw relay connections start...
    assert len(seen) > 100_000
    assert SECRET_TEXT.encode() not in seen  # ...and never the ask's text
    assert b"kestrel" not in seen
    for proc in (relay, pub, p1, p2):
        proc.stop()
