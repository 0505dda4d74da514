"""Offline market data and a paper broker: everything here is simulated and deterministic.

Prices follow a seeded random walk, so every run sees the same day. The session is replayed one
30-minute bar at a time (``SimulatedMarket.step``): it opens at 09:30 and closes at 16:00, New
York time. No network, no API keys, no real money.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

SYMBOLS: dict[str, float] = {"ACME": 120.0, "GLOBEX": 48.0, "INITECH": 310.0}
HISTORY = 6  # bars of history a quote carries
BAR_MINUTES = 30
FIRST_BAR = 8 * 60 + 30  # 08:30, before the open
OPEN, CLOSE = 9 * 60 + 30, 16 * 60


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class SimulatedMarket:
    """A replayed trading day: one price per symbol and bar, from a seeded random walk."""

    def __init__(self, seed: int = 12, symbols: dict[str, float] | None = None) -> None:
        rng = random.Random(seed)
        self.bars = (24 * 60 - FIRST_BAR) // BAR_MINUTES
        self.prices: dict[str, list[float]] = {}
        for symbol, price in (symbols or SYMBOLS).items():
            walk = []
            for _ in range(HISTORY + self.bars):
                price *= 1 + rng.gauss(0.001, 0.012)
                walk.append(round(price, 2))
            self.prices[symbol] = walk
        self.bar = 0  # 08:30

    @property
    def minutes(self) -> int:
        return FIRST_BAR + self.bar * BAR_MINUTES

    def step(self) -> None:
        """Move the replay on by one bar (the session ends at midnight)."""
        self.bar = min(self.bar + 1, self.bars - 1)

    def status(self) -> dict[str, Any]:
        is_open = OPEN <= self.minutes < CLOSE
        session = "open" if is_open else ("pre-market" if self.minutes < OPEN else "after-hours")
        return {"open": is_open, "session": session, "time": clock(self.minutes),
                "tz": "America/New_York"}  # fmt: skip

    def quote(self, symbol: str) -> dict[str, Any]:
        walk = self.prices[symbol]  # KeyError: unknown symbol
        now = HISTORY + self.bar
        return {
            "symbol": symbol,
            "price": walk[now - 1],
            "history": walk[now - HISTORY : now],
            "time": clock(self.minutes),
        }


@dataclass
class Account:
    cash: float
    positions: dict[str, int] = field(default_factory=dict)


class PaperBroker:
    """Paper accounts: fills every order at the market price, if the account can pay."""

    def __init__(self, market: SimulatedMarket, *, starting_cash: float = 100_000.0) -> None:
        self.market = market
        self.starting_cash = starting_cash
        self.accounts: dict[str, Account] = {}

    def account(self, name: str) -> Account:
        return self.accounts.setdefault(name, Account(self.starting_cash))

    def order(self, name: str, symbol: str, side: str, quantity: int) -> dict[str, Any]:
        if not self.market.status()["open"]:
            raise ValueError("the market is closed")
        if side not in ("buy", "sell") or quantity <= 0:
            raise ValueError("side must be 'buy' or 'sell' and quantity positive")
        account = self.account(name)
        price = self.market.quote(symbol)["price"]
        held = account.positions.get(symbol, 0)
        if side == "buy":
            if price * quantity > account.cash:
                raise ValueError("insufficient cash")
            account.cash -= price * quantity
            account.positions[symbol] = held + quantity
        else:
            if quantity > held:
                raise ValueError(f"only {held} {symbol} held")
            account.cash += price * quantity
            account.positions[symbol] = held - quantity
        account.cash = round(account.cash, 2)
        return {"symbol": symbol, "side": side, "quantity": quantity, "price": price,
                "time": clock(self.market.minutes)}  # fmt: skip

    def portfolio(self, name: str) -> dict[str, Any]:
        account = self.account(name)
        positions = {
            symbol: {"quantity": qty, "price": (p := self.market.quote(symbol)["price"]),
                     "value": round(qty * p, 2)}
            for symbol, qty in sorted(account.positions.items()) if qty
        }  # fmt: skip
        value = round(account.cash + sum(p["value"] for p in positions.values()), 2)
        return {
            "cash": account.cash,
            "positions": positions,
            "value": value,
            "pnl": round(value - self.starting_cash, 2),
        }
