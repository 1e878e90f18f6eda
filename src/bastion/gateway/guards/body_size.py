"""The first guard: a cap on request bodies, before anything reads or parses them.

An ASGI middleware: a declared ``Content-Length`` above the cap is refused at once (413), and a
body streamed without one (chunked) is counted as it arrives and refused as soon as it passes
the cap, so an unauthenticated client cannot make the server buffer an unbounded body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodySizeLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLargeError(Exception):
    pass


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413 and a JSON error.

    Example::

        >>> app = BodySizeLimit(app, max_bytes=16 << 20)   # doctest: +SKIP
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, on_reject: Callable[[], None] | None = None
    ) -> None:
        if max_bytes < 1:
            from bastion.exceptions import ConfigError

            raise ConfigError(f"max_bytes must be >= 1; received {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reject(send, 400, "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    self._rejected()
                    await _reject(send, 413, self._message())
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLargeError
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooLargeError:
            self._rejected()
            if not started:
                await _reject(send, 413, self._message())

    def _rejected(self) -> None:
        if self.on_reject is not None:
            self.on_reject()

    def _message(self) -> str:
        return f"the request body exceeds this server's limit of {self.max_bytes} bytes"


async def _reject(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
