"""The teams tests marked ``slow`` (many multi-process runs) run only when asked for:
``pytest -m slow`` (or any ``-m`` expression naming ``slow``), or ``SYNAPSE_SLOW=1``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("SYNAPSE_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or SYNAPSE_SLOW=1")
    for item in items:
        if "slow" in item.keywords and HERE in Path(item.path).parents:
            item.add_marker(skip)
