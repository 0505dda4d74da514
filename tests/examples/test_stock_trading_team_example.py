"""examples/stock_trading_team runs end to end (loopback only, simulated market data), both ways
it is documented to start. The market is a seeded random walk, so the trades are always the
same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "examples" / "stock_trading_team" / "run.py"


@pytest.mark.parametrize(
    "command",
    [["-m", "examples.stock_trading_team"], [str(RUN), "--backend", "asyncio"]],
    ids=["module-trio", "script-asyncio"],
)
def test_the_trading_team_trades(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "[09:00] market closed (pre-market), nothing to do" in lines
    scans = [line for line in lines if line.startswith("[")]
    assert len(scans) == 1 + 9 * 3  # one closed scan, then three symbols in nine open scans
    assert "no answer" not in done.stdout  # the analyst and the news observer always replied
    trades = [line for line in scans if "-> BUY" in line or "-> SELL" in line]
    assert [line.split()[:2] for line in trades] == [
        ["[09:30]", "ACME"],
        ["[11:00]", "ACME"],
        ["[11:30]", "INITECH"],
        ["[13:00]", "ACME"],
        ["[13:00]", "INITECH"],
    ]
    assert [line.split(maxsplit=3)[-1] for line in trades] == [
        "analyst=bullish  news=positive  -> BUY 10 @ 121.76",
        "analyst=bearish  news=negative  -> SELL 10 @ 117.60",
        "analyst=bullish  news=positive  -> BUY 10 @ 319.25",
        "analyst=bullish  news=positive  -> BUY 10 @ 121.09",
        "analyst=bullish  news=positive  -> BUY 10 @ 320.35",
    ]
    assert "          (ACME recalls a flagship product)" in lines
    assert lines[-5:] == [
        "final portfolio of paper account 'trader':",
        "  ACME       10 x  123.90 =   1,239.00",
        "  INITECH    20 x  312.20 =   6,244.00",
        "  cash                      92,351.50",
        "  total                     99,834.50  (P&L -165.50)",
    ]
