"""The trader: scans the watchlist on a schedule, asks the team, places paper orders.

    SYNAPSE_EXCHANGE=127.0.0.1:9100 python examples/stock_trading_team/trader.py [--every 5]

Each scan (``@node.periodic(every(seconds=...))``) asks the exchange whether the market is
open; if it is, then for every symbol it fetches a quote, broadcasts ``synapse.ask`` with the
symbol and its prices as context, waits for two replies (the analyst's signal and the news
observer's sentiment) and buys when the signal is bullish and the sentiment positive (it sells
what it holds when they are bearish and negative). Runs until Ctrl+C, or ``--rounds`` scans.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
from collections.abc import Callable
from typing import Any

from examples.stock_trading_team.common import SWARM, bind_from_env, exchange_from_env, split
from synapse_p2p import Node, every

WATCHLIST = ["ACME", "GLOBEX", "INITECH"]
ACCOUNT = "trader"  # the paper account at the exchange
LOT = 10  # shares per order
ADVISERS = {"analyst", "news-observer"}


def make_trader(
    exchange: str,
    *,
    scan_every: float = 5.0,
    rounds: int | None = None,
    on_finished: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
    **options: Any,
) -> Node:
    """The trader node; joins through ``exchange`` and trades there (``options`` go to
    ``Node``). After ``rounds`` scans it stops scanning and calls ``on_finished``."""
    node = Node(name="trader", role="trader", swarm=SWARM, seeds=[exchange], **options)
    venue = split(exchange)
    held: dict[str, int] = {}
    scans = 0

    async def opinions(quote: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Ask the team about one quote; the replies by role ("analyst", "news")."""
        broadcast = await node.broadcast(
            "synapse.ask",
            f"Should we buy {quote['symbol']} at {quote['price']:.2f}?",
            context={k: quote[k] for k in ("symbol", "price", "history", "time")},
        )
        views: dict[str, dict[str, Any]] = {}
        async for reply in node.iter_replies(broadcast, timeout=5):
            views[reply.result["role"]] = reply.result
            if len(views) == len(ADVISERS):
                break
        return views

    async def consider(symbol: str) -> None:
        quote = await node.call_peer(venue, "exchange.quote", symbol)
        views = await opinions(quote)
        signal = views.get("analyst", {}).get("signal", "no answer")
        sentiment = views.get("news", {}).get("sentiment", "no answer")
        line = (
            f"[{quote['time']}] {symbol:<8} {quote['price']:>7.2f}"
            f"  analyst={signal:<8} news={sentiment:<9}"
        )
        side = None
        if signal == "bullish" and sentiment == "positive":
            side = "buy"
        elif signal == "bearish" and sentiment == "negative" and held.get(symbol):
            side = "sell"
        if side is None:
            say(f"{line} -> hold")
            return
        quantity = LOT if side == "buy" else held[symbol]
        fill = await node.call_peer(venue, "exchange.order", ACCOUNT, symbol, side, quantity)
        held[symbol] = held.get(symbol, 0) + (quantity if side == "buy" else -quantity)
        say(f"{line} -> {side.upper()} {quantity} @ {fill['price']:.2f}")
        say(f"          ({views['news']['headline']})")

    @node.periodic(every(seconds=scan_every))
    async def scan() -> None:
        nonlocal scans
        if rounds is not None and scans >= rounds:
            return
        if not ADVISERS.issubset(peer.name for peer in node.peers.values()):
            say("trader: waiting for the analyst and the news observer to join")
            return
        status = await node.call_peer(venue, "exchange.market_status")
        if status["open"]:
            for symbol in WATCHLIST:
                await consider(symbol)
        else:
            say(f"[{status['time']}] market closed ({status['session']}), nothing to do")
        scans += 1
        if scans == rounds and on_finished is not None:
            on_finished()

    return node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=5.0, help="seconds between scans")
    parser.add_argument("--rounds", type=int, default=None, help="stop scanning after this many")
    args = parser.parse_args()
    node = make_trader(
        exchange_from_env(), scan_every=args.every, rounds=args.rounds, bind=bind_from_env()
    )
    node.run()


if __name__ == "__main__":
    main()
