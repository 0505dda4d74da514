"""The analyst: answers ``synapse.ask`` with a technical signal for the quoted symbol.

    SYNAPSE_EXCHANGE=127.0.0.1:9100 python examples/stock_trading_team/analyst.py

joins the team through the exchange and runs until Ctrl+C. Its "model" is a deterministic
stand-in (moving averages over the bars in the ask's context); put a real one here.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from statistics import fmean
from typing import Any

import anyio

from examples.stock_trading_team.common import SWARM, bind_from_env, exchange_from_env
from synapse_p2p import Node


def signal(history: list[float]) -> dict[str, Any]:
    """Bullish when the short average is above the long one and the last bar went up."""
    short, long, move = fmean(history[-3:]), fmean(history), history[-1] - history[-2]
    if short > long and move > 0:
        verdict = "bullish"
    elif short < long and move < 0:
        verdict = "bearish"
    else:
        verdict = "neutral"
    return {
        "role": "analyst",
        "signal": verdict,
        "reason": f"3-bar average {short:.2f} vs {len(history)}-bar {long:.2f}, last {move:+.2f}",
    }


def make_analyst(exchange: str, **options: Any) -> Node:
    """The analyst node; joins through ``exchange`` (``options`` go to ``Node``)."""
    node = Node(
        name="analyst",
        role="analyst",
        capabilities=["technical-analysis"],
        swarm=SWARM,
        seeds=[exchange],
        **options,
    )

    @node.ask
    async def analyse(task: str, context: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.05)  # crunching numbers
        return {"symbol": context["symbol"], **signal(context["history"])}

    return node


if __name__ == "__main__":
    make_analyst(exchange_from_env(), bind=bind_from_env()).run()
