"""The paper exchange: a ``NodeKind.BOOTSTRAP`` node serving simulated quotes and paper orders.

    SYNAPSE_EXCHANGE=127.0.0.1:9100 python examples/stock_trading_team/exchange.py

It is the team's seed (the others join through it) and serves:

* ``exchange.market_status()``: moves the replayed session on by one 30-minute bar, then says
  whether the market is open (one call per trader scan walks through the day);
* ``exchange.quote(symbol)``: the current price and the last few bars;
* ``exchange.order(account, symbol, side, quantity)``: a paper order, filled at market;
* ``exchange.portfolio(account)``: cash, positions and value at current prices.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Any

from examples.stock_trading_team.common import SWARM, bind_from_env, exchange_from_env, split
from examples.stock_trading_team.market import PaperBroker, SimulatedMarket
from synapse_p2p import Node, NodeKind, RemoteError
from synapse_p2p.errors import BAD_REQUEST


def make_exchange(port: int, market: SimulatedMarket | None = None, **options: Any) -> Node:
    """The exchange node on ``port`` (``options`` go to ``Node``)."""
    market = market or SimulatedMarket()
    broker = PaperBroker(market)
    node = Node(
        name="exchange",
        kind=NodeKind.BOOTSTRAP,
        description="Paper exchange on simulated market data",
        capabilities=["quotes", "paper-orders"],
        swarm=SWARM,
        port=port,
        **options,
    )

    @node.endpoint("exchange.market_status", description="Advance the replay; is it open?")
    async def market_status() -> dict[str, Any]:
        market.step()
        return market.status()

    @node.endpoint("exchange.quote", description="Price and recent bars of a symbol")
    async def quote(symbol: str) -> dict[str, Any]:
        if symbol not in market.prices:
            raise RemoteError(BAD_REQUEST, f"unknown symbol {symbol!r}")
        return market.quote(symbol)

    @node.endpoint("exchange.order", description="Place a paper order, filled at market")
    async def order(account: str, symbol: str, side: str, quantity: int) -> dict[str, Any]:
        if symbol not in market.prices:
            raise RemoteError(BAD_REQUEST, f"unknown symbol {symbol!r}")
        try:
            return broker.order(account, symbol, side, quantity)
        except ValueError as exc:
            raise RemoteError(BAD_REQUEST, str(exc)) from None

    @node.endpoint("exchange.portfolio", description="Cash, positions and value of an account")
    async def portfolio(account: str) -> dict[str, Any]:
        return broker.portfolio(account)

    return node


if __name__ == "__main__":
    _, port = split(exchange_from_env())
    make_exchange(port, bind=bind_from_env()).run()
