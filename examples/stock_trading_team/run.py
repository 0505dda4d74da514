"""The whole trading team in one process, on free loopback ports; it exits by itself.

    python -m examples.stock_trading_team      (or: python examples/stock_trading_team/run.py)
    python examples/stock_trading_team/run.py --backend asyncio

The exchange starts, the analyst, the news observer and the trader join through it, and the
trader scans every 0.2 s for a bounded number of rounds (the replayed session moves on 30
minutes per scan): its trades are printed as they happen, then the final paper portfolio.
Offline, deterministic, no API keys; a few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from typing import Any

import anyio

from examples.stock_trading_team.analyst import make_analyst
from examples.stock_trading_team.exchange import make_exchange
from examples.stock_trading_team.news_observer import make_news_observer
from examples.stock_trading_team.trader import ACCOUNT, make_trader
from synapse_p2p import Client

LOOPBACK: dict[str, Any] = {"bind": "127.0.0.1"}
SCAN_EVERY = 0.2  # seconds between scans (30 s would be more like it for a real desk)
ROUNDS = 10  # 09:00 (closed), then 09:30 to 13:30


def show_portfolio(portfolio: dict[str, Any]) -> None:
    print(f"final portfolio of paper account {ACCOUNT!r}:")
    for symbol, position in portfolio["positions"].items():
        print(
            f"  {symbol:<8} {position['quantity']:>4} x {position['price']:>7.2f}"
            f" = {position['value']:>10,.2f}"
        )
    print(f"  {'cash':<8} {portfolio['cash']:>26,.2f}")
    print(f"  {'total':<8} {portfolio['value']:>26,.2f}  (P&L {portfolio['pnl']:+,.2f})")


async def main() -> None:
    finished = anyio.Event()
    exchange = make_exchange(0, **LOOPBACK)  # port 0: any free port
    async with anyio.create_task_group() as tg:
        await tg.start(exchange.serve)
        address = f"127.0.0.1:{exchange.port}"
        print(f"paper exchange listening on {address}")
        for node in (make_analyst(address, **LOOPBACK), make_news_observer(address, **LOOPBACK)):
            await tg.start(node.serve)
        trader = make_trader(
            address, scan_every=SCAN_EVERY, rounds=ROUNDS, on_finished=finished.set, **LOOPBACK
        )
        await tg.start(trader.serve)
        with anyio.fail_after(60):
            await finished.wait()
        show_portfolio(await Client("127.0.0.1", exchange.port).call("exchange.portfolio", ACCOUNT))
        tg.cancel_scope.cancel()


def cli() -> None:
    backend = "asyncio" if "asyncio" in sys.argv[1:] else "trio"
    anyio.run(main, backend=backend)


if __name__ == "__main__":
    cli()
