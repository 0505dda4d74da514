"""``sn list-swarms`` and ``sn ask`` by mDNS, between two test hosts (network namespaces
joined by a veth pair): never on this machine's real interfaces."""

from __future__ import annotations

import subprocess
import sys

from tests.cli.conftest import ROOT, env
from tests.cli.conftest import SCRIPTS as CLI_SCRIPTS
from tests.discovery.mdns_scripts.netns import SCRIPTS, NetnsPair


def sn_in(ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "synapse_p2p", *args],
        capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT,
    )  # fmt: skip


def test_list_swarms_finds_a_node_on_the_lan(netns: NetnsPair) -> None:
    member = netns.spawn(netns.a, [sys.executable, str(SCRIPTS / "node_member.py"), "--name",
                                   "reviewer", "--address", netns.addr_a],
                         env=env())  # fmt: skip
    member.expect(lambda e: "peers" in e, 20, "member running")
    done = sn_in(netns.b, "list-swarms", "--seconds", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "lan  (1 node)"
    assert lines[1].startswith(f"  - reviewer  {netns.addr_a}:")
    empty = sn_in(netns.b, "list-swarms", "--seconds", "0.5", "--interface", "lo")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == "no local Synapse swarms found\n"


def test_ask_finds_the_swarm_by_mdns_without_a_seed(netns: NetnsPair) -> None:
    reviewer = netns.spawn(netns.a, [sys.executable, str(CLI_SCRIPTS / "swarm_node.py"),
                                     "--name", "reviewer", "--swarm", "lan", "--mdns",
                                     "--bind", netns.addr_a], env=env())  # fmt: skip
    reviewer.expect(lambda e: "port" in e, 20, "reviewer serving")
    done = sn_in(netns.b, "ask", "lan", "Review this diff", "--discover", "3",
                 "--bind", netns.addr_b)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "✓ reviewer acked" in done.stdout
    assert "- reviewer: reviewer: LGTM for 'Review this diff'" in done.stdout
    # Nobody by that name on the LAN: exit 3, one line.
    nobody = sn_in(netns.b, "ask", "empty-swarm", "hi", "--discover", "1", "--bind", netns.addr_b)
    assert nobody.returncode == 3
    assert nobody.stderr == "sn: no peers found in swarm 'empty-swarm' (give --seed HOST:PORT)\n"
