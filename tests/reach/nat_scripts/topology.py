"""Real NATs in network namespaces the test creates (and deletes): a public segment and two
private segments behind masquerading routers.

::

    public 198.18.<n>.0/24 (a bridge in namespace "sw")
      relay  .1        pub  .2        r1 .11 ─┐            r2 .12 ─┐
                                             │ masquerade          │ masquerade
                              private 10.1.<n>.0/24      private 10.2.<n>.0/24
                                    p1 .2 (default via .1)     p2 .2 (default via .1)

Every link is a veth pair created directly inside the namespaces (nothing is added to the
root namespace, and nothing is routed out of these namespaces). The routers forward what the
private hosts send out and masquerade it (nft), and forward back only replies (``ct state
established,related``): a private host dials out, nobody dials in. Public hosts have no route
to the private segments at all. :meth:`NatLab.close` kills the processes it started and
deletes every namespace (an ``atexit`` hook does too if a run is interrupted).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence

from tests.discovery.mdns_scripts.netns import (
    SCRIPTS,
    JsonProcess,
    NetnsUnavailable,
    _delete,
    _ip,
    _live,
)

__all__ = ["NatLab", "NetnsUnavailable"]

_counter = itertools.count()

ROUTER_RULES = """
table ip nat {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
}
table ip filter {
    chain forwarding {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
    }
}
"""


def _run(ns: str, *argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=10
    )
    if done.returncode != 0:
        raise NetnsUnavailable(f"`{' '.join(argv)}` in {ns} failed: {done.stderr.strip()}")


class NatLab:
    """The topology of the module documentation; ``ns[host]`` names each namespace and
    ``ip[host]`` its address (hosts: relay, pub, p1, p2; routers r1, r2; switch sw)."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
            if shutil.which(tool) is None:
                raise NetnsUnavailable(f"`{tool}` is not installed (apt-get install {package})")
        n = next(_counter) % 200 + 20
        tag = f"{os.getpid() % 100000}-{uuid.uuid4().hex[:4]}"
        self.ns = {h: f"snnat-{tag}-{h}" for h in ("sw", "relay", "pub", "r1", "r2", "p1", "p2")}
        public = f"198.18.{n}"
        self.ip = {
            "relay": f"{public}.1",
            "pub": f"{public}.2",
            "r1": f"{public}.11",
            "r2": f"{public}.12",
            "p1": f"10.1.{n}.2",
            "p2": f"10.2.{n}.2",
        }
        self.processes: list[JsonProcess] = []
        try:
            self._build(public, n)
        except BaseException:
            self.close()
            raise

    def _build(self, public: str, n: int) -> None:
        ns = self.ns
        for name in ns.values():
            _ip("netns", "add", name)
            _live.add(name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", ns["sw"], "link", "add", "br0", "type", "bridge")
        _ip("-n", ns["sw"], "link", "set", "br0", "up")
        for i, host in enumerate(("relay", "pub", "r1", "r2")):
            ifname = "wan0" if host.startswith("r") and host != "relay" else "eth0"
            port = f"sw{i}"
            _ip("link", "add", ifname, "netns", ns[host], "type", "veth",
                "peer", "name", port, "netns", ns["sw"])  # fmt: skip
            _ip("-n", ns["sw"], "link", "set", port, "master", "br0", "up")
            _ip("-n", ns[host], "addr", "add", f"{self.ip[host]}/24", "dev", ifname)
            _ip("-n", ns[host], "link", "set", ifname, "up")
        for router, host, segment in (("r1", "p1", f"10.1.{n}"), ("r2", "p2", f"10.2.{n}")):
            _ip("link", "add", "lan0", "netns", ns[router], "type", "veth",
                "peer", "name", "eth0", "netns", ns[host])  # fmt: skip
            _ip("-n", ns[router], "addr", "add", f"{segment}.1/24", "dev", "lan0")
            _ip("-n", ns[router], "link", "set", "lan0", "up")
            _ip("-n", ns[host], "addr", "add", f"{self.ip[host]}/24", "dev", "eth0")
            _ip("-n", ns[host], "link", "set", "eth0", "up")
            _ip("-n", ns[host], "route", "add", "default", "via", f"{segment}.1")
            _run(ns[router], "sysctl", "-qw", "net.ipv4.ip_forward=1")
            _run(ns[router], "nft", "-f", "-", stdin=ROUTER_RULES)

    def spawn(self, host: str, argv: Sequence[str], *, env: dict[str, str]) -> JsonProcess:
        """Start ``argv`` inside ``host``'s namespace."""
        process = JsonProcess(["ip", "netns", "exec", self.ns[host], *argv], env=env, cwd=SCRIPTS)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(timeout=10)
        for name in self.ns.values():
            if name in _live:
                _delete(name)
