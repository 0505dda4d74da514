"""A small HTTP and WebSocket client on anyio streams (wsproto), for the dashboard tests."""

from __future__ import annotations

import json
from typing import Any

import anyio
from anyio.abc import SocketStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


async def http_get(port: int, path: str, *, host: str | None = None, method: str = "GET") -> bytes:
    """The raw response to one request (the server is asked to close afterwards)."""
    host = host or f"127.0.0.1:{port}"
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        await stream.send(head.encode())
        chunks = []
        with anyio.fail_after(10):
            while True:
                try:
                    chunks.append(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return b"".join(chunks)


class WsClient:
    """``status`` is 101 when accepted, else the HTTP status of the refusal."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.status = 0
        self.messages: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, port: int, *, origin: str | None = "same") -> WsClient:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        client = cls(stream)
        host = f"127.0.0.1:{port}"
        headers = []
        if origin is not None:
            headers.append((b"origin", (f"http://{host}" if origin == "same" else origin).encode()))
        await stream.send(client.ws.send(Request(host=host, target="/ws", extra_headers=headers)))
        with anyio.fail_after(10):
            while client.status == 0:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = None
                client.ws.receive_data(data)
                for event in client.ws.events():
                    if isinstance(event, AcceptConnection):
                        client.status = 101
                    elif isinstance(event, RejectConnection):
                        client.status = event.status_code
                    elif isinstance(event, RejectData):
                        pass
                if data is None and client.status == 0:
                    client.status = -1
        return client

    async def send(self, request: dict[str, Any]) -> None:
        await self.stream.send(self.ws.send(Message(data=json.dumps(request))))

    async def receive(self) -> dict[str, Any] | None:
        """The next JSON message (None once the server closed)."""
        text: list[str] = []
        while True:
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        message: dict[str, Any] = json.loads("".join(text))
                        self.messages.append(message)
                        return message
                elif isinstance(event, CloseConnection):
                    return None
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            self.ws.receive_data(data)

    async def until(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        """Read messages until one satisfies ``predicate``."""
        with anyio.fail_after(timeout):
            while True:
                message = await self.receive()
                assert message is not None, "the server closed the WebSocket"
                if predicate(message):
                    return message

    async def aclose(self) -> None:
        await self.stream.aclose()
