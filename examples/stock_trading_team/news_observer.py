"""The news observer: answers ``synapse.ask`` with the latest (mock) headline and its sentiment.

    SYNAPSE_EXCHANGE=127.0.0.1:9100 python examples/stock_trading_team/news_observer.py

joins the team through the exchange and runs until Ctrl+C. The headlines are made up and
deterministic (the same symbol at the same market time always gets the same one); a real
observer would read a news feed and ask a model for the sentiment.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import random
from typing import Any

import anyio

from examples.stock_trading_team.common import SWARM, bind_from_env, exchange_from_env
from synapse_p2p import Node

HEADLINES: dict[str, list[str]] = {
    "positive": [
        "{symbol} beats earnings expectations",
        "{symbol} wins a multi-year government contract",
        "analysts upgrade {symbol} to buy",
    ],
    "neutral": [
        "{symbol} schedules its annual shareholder meeting",
        "{symbol} names a new head of investor relations",
    ],
    "negative": [
        "{symbol} recalls a flagship product",
        "regulators open an inquiry into {symbol}",
    ],
}
WEIGHTS = {"positive": 5, "neutral": 2, "negative": 3}


def headline(symbol: str, time: str) -> dict[str, Any]:
    """The mock headline for ``symbol`` at market ``time``, and its sentiment."""
    rng = random.Random(f"{symbol}@{time}")  # a string seed: the same on every run
    sentiment = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    text = rng.choice(HEADLINES[sentiment]).format(symbol=symbol)
    return {"role": "news", "sentiment": sentiment, "headline": text}


def make_news_observer(exchange: str, **options: Any) -> Node:
    """The news observer node; joins through ``exchange`` (``options`` go to ``Node``)."""
    node = Node(
        name="news-observer",
        role="news",
        capabilities=["news", "sentiment"],
        swarm=SWARM,
        seeds=[exchange],
        **options,
    )

    @node.ask
    async def read_the_news(task: str, context: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.05)  # reading the wires
        return {"symbol": context["symbol"], **headline(context["symbol"], context["time"])}

    return node


if __name__ == "__main__":
    make_news_observer(exchange_from_env(), bind=bind_from_env()).run()
