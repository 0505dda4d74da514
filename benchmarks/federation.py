"""Federation benchmarks: routing latency and Redis registry throughput, side by side.

    python benchmarks/federation.py [--seconds 0.3] [--agents 100] [--skvenv /tmp/skvenv]

Measures, in one run:

* ``select_agent`` latency with 10, 1,000 and 10,000 agents in the in-memory registry,
  including the worst case right after a registration (the discovery cache is rebuilt);
* ``discover`` and ``heartbeat`` operations per second against a ``redis-server`` that the
  script starts on a free 127.0.0.1 port (no persistence) and stops at the end;
* the baseline: raw redis-py round trips moving the same data with no decoding or checks
  (discover: one MULTI of HGETALL + ZRANGE + TIME; heartbeat: one ZADD; get: one HGET),
  measured in interleaved rounds with ours so both see the same machine load;
* synapsekit 2.0.1's figures for the same calls, when it is installed (or installable) in a
  separate virtual environment (``--skvenv``); it runs in a subprocess.

Targets: select_agent under 50 us at 1,000 agents; Redis registry operations within 2x of
the raw round trips. Each figure is measured for about ``--seconds``; the whole run is bounded
(about a minute, plus a one-off synapsekit install).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

SIZES = (10, 1_000, 10_000)


def measure(func: Callable[[], object], seconds: float) -> float:
    """Seconds per call: the best of three batches, each about ``seconds / 3`` long."""
    func()
    batch, best = 1, float("inf")
    budget = seconds / 3
    for _ in range(3):
        while True:
            start = time.perf_counter()
            for _ in range(batch):
                func()
            elapsed = time.perf_counter() - start
            if elapsed >= budget / 4 or batch >= 1 << 20:
                break
            batch *= 2
        best = min(best, elapsed / batch)
    return best


# -- ours ------------------------------------------------------------------------------


def ours_select(seconds: float) -> dict[str, float]:
    from synapse_p2p.federation import AgentFederation, AgentMetadata, InMemoryAgentRegistry

    results = {}
    for size in SIZES:
        registry = InMemoryAgentRegistry()
        fed = AgentFederation(registry)
        for n in range(size):
            agent = AgentMetadata(f"agent-{n:05d}", "m", tools=["search"], tags=[f"t{n % 10}"])
            agent.capacity, agent.cost_multiplier = 1 + n % 7, 1.0 + n % 5
            fed.register_agent(agent)
        for strategy in ("round_robin", "cost_aware"):

            def by_strategy(f: AgentFederation = fed, s: str = strategy) -> object:
                return f.select_agent(strategy=s)

            results[f"select {strategy} n={size}"] = measure(by_strategy, seconds)

        def by_tags(f: AgentFederation = fed) -> object:
            return f.select_agent(tags="t3")

        results[f"select tags=t3 n={size}"] = measure(by_tags, seconds)

        def after_change(f: AgentFederation = fed, r: InMemoryAgentRegistry = registry) -> None:
            r.heartbeat("agent-00001")  # refreshing a healthy agent keeps the cache
            f.select_agent()

        results[f"select after a heartbeat n={size}"] = measure(after_change, seconds)
        first = registry.get("agent-00001")

        def after_register(f: AgentFederation = fed, a: AgentMetadata | None = first) -> None:
            assert a is not None
            f.register_agent(a)  # a metadata change: the next select re-discovers
            f.select_agent()

        results[f"select after a register n={size}"] = measure(after_register, seconds)
    return results


def ours_redis(url: str, agents: int, seconds: float) -> dict[str, float]:
    import redis

    from synapse_p2p.federation import AgentMetadata, RedisAgentRegistry

    prefix = f"bench:{uuid.uuid4().hex}"
    registry = RedisAgentRegistry(url, prefix=prefix)
    for n in range(agents):
        registry.register(AgentMetadata(f"agent-{n:04d}", "m", tools=["search"], tags=["t"]))
    raw = redis.Redis.from_url(url, decode_responses=True)
    agents_key, beats_key = f"{prefix}:agents", f"{prefix}:heartbeats"

    def raw_discover() -> object:
        pipe = raw.pipeline(transaction=True)
        pipe.hgetall(agents_key)
        pipe.zrange(beats_key, 0, -1, withscores=True)
        pipe.time()
        return pipe.execute()

    pairs = {
        "discover": (lambda: registry.discover(tags="t"), raw_discover),
        "heartbeat": (
            lambda: registry.heartbeat("agent-0001"),
            lambda: raw.zadd(beats_key, {"agent-0001": time.time()}),
        ),
        "get": (lambda: registry.get("agent-0001"), lambda: raw.hget(agents_key, "agent-0001")),
    }
    results: dict[str, float] = {}
    for op, (mine, baseline) in pairs.items():
        # Interleaved rounds, so that both sides see the same machine load; the ratio is the
        # median of the per-round ratios, the rates the best rounds.
        rounds = [(measure(mine, seconds / 3), measure(baseline, seconds / 3)) for _ in range(5)]
        results[f"redis {op}"] = min(a for a, _ in rounds)
        results[f"raw {op}"] = min(b for _, b in rounds)
        results[f"ratio {op}"] = sorted(a / b for a, b in rounds)[2]
    raw.delete(agents_key, beats_key)
    raw.close()
    registry.close()
    return results


# -- synapsekit (in its own virtual environment) ------------------------------------------

SYNAPSEKIT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, uuid
    sys.path.insert(0, sys.argv[4])
    from federation import measure, SIZES
    from synapsekit.agents import AgentFederation, AgentMetadata, InMemoryAgentRegistry
    from synapsekit.agents.agent_registry import RedisAgentRegistry

    url, agents, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    results = {}
    for size in SIZES:
        fed = AgentFederation(InMemoryAgentRegistry())
        for n in range(size):
            fed.register_agent(AgentMetadata(f"agent-{n:05d}", "m", tools=["search"],
                tags=[f"t{n % 10}"], capacity=1 + n % 7, cost_multiplier=1 + n % 5))
        for strategy in ("round_robin", "cost_aware"):
            results[f"select {strategy} n={size}"] = measure(
                lambda s=strategy: fed.select_agent(strategy=s), seconds)
        results[f"select tags=t3 n={size}"] = measure(lambda: fed.select_agent(tags="t3"),
                                                      seconds)
        results[f"select after a heartbeat n={size}"] = measure(
            lambda: (fed.registry.heartbeat("agent-00001"), fed.select_agent()), seconds)
        first = fed.registry.get("agent-00001")
        results[f"select after a register n={size}"] = measure(
            lambda: (fed.register_agent(first), fed.select_agent()), seconds)
    registry = RedisAgentRegistry(url=url, prefix=f"skbench:{uuid.uuid4().hex}")
    for n in range(agents):
        registry.register(AgentMetadata(f"agent-{n:04d}", "m", tools=["search"], tags=["t"]))
    results["redis discover"] = measure(lambda: registry.discover(tags="t"), seconds)
    results["redis heartbeat"] = measure(lambda: registry.heartbeat("agent-0001"), seconds)
    results["redis get"] = measure(lambda: registry.get("agent-0001"), seconds)
    for agent in registry.list():
        registry.unregister(agent.id)
    print(json.dumps(results))
    """
)


def synapsekit_python(venv: Path, install: bool) -> tuple[Path | None, str]:
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import synapsekit, redis; assert synapsekit.__version__ == '2.0.1'",
    ]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    if not install:
        return None, f"synapsekit 2.0.1 is not installed in {venv}"
    print(f"installing synapsekit==2.0.1 into {venv} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "synapsekit==2.0.1", "redis"],
            check=True, timeout=600, capture_output=True,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not install synapsekit 2.0.1: {exc}"
    if subprocess.run(check, capture_output=True).returncode != 0:
        return None, "synapsekit 2.0.1 did not import after installation"
    return python, ""


def synapsekit_figures(python: Path, url: str, agents: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [str(python), "-c", SYNAPSEKIT_SCRIPT, url, str(agents), str(seconds),
         str(Path(__file__).resolve().parent)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- redis-server ----------------------------------------------------------------------


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    for _ in range(5):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
             "no", "--dir", directory, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=port, host="127.0.0.1")
        for _ in range(200):
            try:
                client.ping()
                client.close()
                return proc, f"redis://127.0.0.1:{port}/0"
            except redis.ConnectionError:
                if proc.poll() is not None:
                    break
                time.sleep(0.02)
        proc.kill()
        proc.wait()
    raise SystemExit("could not start redis-server")


# -- report ----------------------------------------------------------------------------


def fmt_latency(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e6:,.1f} us" if value < 0.1 else f"{value * 1e3:,.0f} ms"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{1 / value:,.0f}/s"


def report(ours: dict[str, float], sk: dict[str, float] | None, agents: int) -> None:
    print("\nselect_agent latency, in-memory registry (lower is better)")
    print(f"{'case':<34}{'synapse-p2p':>14}{'synapsekit 2.0.1':>18}{'speed-up':>10}")
    for key, value in ours.items():
        if not key.startswith("select"):
            continue
        theirs = sk.get(key) if sk else None
        ratio = f"{theirs / value:,.0f}x" if theirs else "-"
        print(f"{key:<34}{fmt_latency(value):>14}{fmt_latency(theirs):>18}{ratio:>10}")
    print(f"\nRedis registry, {agents} agents registered, loopback (higher is better)")
    print(f"{'operation':<12}{'synapse-p2p':>14}{'raw redis-py':>14}{'time ours/raw':>15}"
          f"{'synapsekit 2.0.1':>18}")  # fmt: skip
    for op in ("discover", "heartbeat", "get"):
        mine, raw = ours[f"redis {op}"], ours[f"raw {op}"]
        theirs = sk.get(f"redis {op}") if sk else None
        print(f"{op:<12}{fmt_rate(mine):>14}{fmt_rate(raw):>14}{ours[f'ratio {op}']:>14.2f}x"
              f"{fmt_rate(theirs):>18}")  # fmt: skip
    target = ours["select round_robin n=1000"]
    print(f"\ntarget select_agent < 50 us at 1,000 agents: {fmt_latency(target)} "
          f"({'met' if target < 50e-6 else 'MISSED'})")  # fmt: skip
    worst = max(ours[f"ratio {op}"] for op in ("discover", "heartbeat", "get"))
    print(f"target Redis ops within 2x of raw redis-py: worst {worst:.2f}x "
          f"({'met' if worst <= 2 else 'MISSED'})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time per figure")
    parser.add_argument("--agents", type=int, default=100, help="agents in the Redis registry")
    parser.add_argument("--skvenv", type=Path, default=Path("/tmp/skvenv"))
    parser.add_argument("--no-install", action="store_true", help="do not install synapsekit")
    parser.add_argument("--no-synapsekit", action="store_true", help="skip synapsekit")
    args = parser.parse_args()

    ours = ours_select(args.seconds)
    with tempfile.TemporaryDirectory() as directory:
        proc, url = start_redis(directory)
        try:
            ours.update(ours_redis(url, args.agents, args.seconds))
            sk: dict[str, float] | None = None
            if args.no_synapsekit:
                print("synapsekit: skipped (--no-synapsekit)")
            else:
                python, why = synapsekit_python(args.skvenv, not args.no_install)
                if python is None:
                    print(f"synapsekit: {why}")
                else:
                    sk = synapsekit_figures(python, url, args.agents, args.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    report(ours, sk, args.agents)


if __name__ == "__main__":
    main()
