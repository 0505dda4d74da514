"""Advertise an A2A endpoint on the LAN as a DNS-SD service ``_a2a._tcp.local.``.

The TXT record carries ``path`` (the agent card's path), ``url`` (the base URL) and
``protocol`` (the A2A protocol version), so a browser can fetch the card directly.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import uuid
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.to_thread
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_CURRENT

from ..discovery import MdnsError

if TYPE_CHECKING:
    from ._server import A2AServer

__all__ = ["SERVICE_TYPE", "advertise_a2a"]

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_a2a._tcp.local."


def _address(host: str) -> str:
    ip = ipaddress.ip_address(host)
    if not ip.is_unspecified:
        return host
    # a wildcard bind: advertise the address the default route would use
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


async def advertise_a2a(
    server: A2AServer,
    name: str,
    *,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Register the service until cancelled; ``started()`` gives the registered instance name.

    zeroconf runs in its own threads; registration and the goodbye at the end run in a worker
    thread (the goodbye is shielded, so cancellation unregisters too). Raises
    :class:`~synapse_p2p.errors.MdnsError` if mDNS cannot start or register.
    """
    from zeroconf import ServiceInfo, Zeroconf

    label = re.sub(r"[^A-Za-z0-9 _-]", "-", name)[:40] or "synapse"
    address = await anyio.to_thread.run_sync(_address, server.host)
    info = ServiceInfo(
        SERVICE_TYPE,
        f"{label} {uuid.uuid4().hex[:6]}.{SERVICE_TYPE}",
        port=server.port,
        properties={
            "path": AGENT_CARD_WELL_KNOWN_PATH,
            "url": server.url,
            "protocol": PROTOCOL_VERSION_CURRENT,
        },
        parsed_addresses=[address],
    )

    # only on the interface of a specific bind address; everywhere for a wildcard bind
    wildcard = ipaddress.ip_address(server.host).is_unspecified

    def register() -> Zeroconf:
        zc = (Zeroconf(use_asyncio=False) if wildcard
              else Zeroconf(interfaces=[address], use_asyncio=False))  # fmt: skip
        try:
            zc.register_service(info)
        except BaseException:
            zc.close()
            raise
        return zc

    try:
        zc = await anyio.to_thread.run_sync(register)
    except Exception as exc:
        raise MdnsError(f"mDNS could not advertise the A2A endpoint: {exc}") from exc
    try:
        logger.info("A2A endpoint advertised over mDNS as %s", info.name)
        task_status.started(info.name)
        await anyio.sleep_forever()
    finally:

        def goodbye() -> None:
            try:
                zc.unregister_service(info)
            finally:
                zc.close()

        with anyio.move_on_after(5, shield=True):
            await anyio.to_thread.run_sync(goodbye)
