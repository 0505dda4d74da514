"""``sn dashboard``: a live web view of a swarm, served by a node on its own event loop.

Serve the dashboard of a running node from an application::

    async with Node(swarm="lab", seeds=["127.0.0.1:9999"]) as node, anyio.create_task_group() as tg:
        dashboard = await tg.start(serve_dashboard, node, port=8377)
        print("open", dashboard.url)

How it is built:

* :mod:`._state` is a sans-IO model (peers, conversations, asks, team tasks, who talks to
  whom) that turns node events into JSON deltas; it is tested directly.
* The server speaks HTTP/1.1 with h11 and WebSocket with wsproto, on anyio streams. Both are
  sans-IO engines (wsproto is the one trio-websocket runs on), so one small driver serves the
  page under trio and under asyncio alike; trio-websocket itself runs under trio only and would
  have needed a second driver for asyncio.
* The page (HTML, CSS, JavaScript in ``static/``) ships inside the package: no CDN, no build
  step, works offline. It receives a snapshot, then one coalesced delta per interval.

Security: loopback by default; on loopback, requests whose Host is not a loopback name are
refused (DNS rebinding); a WebSocket whose Origin is not the dashboard's own is refused
(cross-site WebSocket hijacking). The page is read-only unless the server was started with
``allow_ask=True``, and then an ask is sent only for a loopback client that presents the session
token (printed with the URL, carried in its ``#token=`` fragment).
"""

from __future__ import annotations

from ._server import Dashboard, serve_dashboard
from ._state import DashboardState, Limits

__all__ = ["Dashboard", "DashboardState", "Limits", "serve_dashboard"]
