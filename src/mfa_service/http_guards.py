"""Rules every HTTP exchange passes through: the request body limit, and `Cache-Control:
no-store` on every response that does not choose its own caching.

A pure ASGI middleware: Starlette's BaseHTTPMiddleware would run the app in another task and
buffer nothing less. Starlette's own RequestBodyLimitMiddleware is not used: it refuses a
declared Content-Length only once the app reads the body or starts its answer (a route
without a body runs first), and answers text/plain.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mfa_service.errors import PROBLEM_JSON, PayloadTooLarge

NO_STORE = (b"cache-control", b"no-store")

# Rendered once, as the error handlers render a ServiceError.
_TOO_LARGE = PayloadTooLarge()
_TOO_LARGE_BODY = JSONResponse(_TOO_LARGE.problem(), media_type=PROBLEM_JSON).body
_TOO_LARGE_START: Message = {
    "type": "http.response.start",
    "status": _TOO_LARGE.status,
    "headers": [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(_TOO_LARGE_BODY)).encode()),
        NO_STORE,
        # No "Connection: close": closing a socket with unread data sends a TCP reset, and
        # most clients (still sending) then lose this answer. The server reads the rest of
        # the body and drops it, keeping none of it: the app never sees another byte.
    ],
}


class HttpGuards:
    """Refuses a request body over `max_body_bytes` with 413 `payload_too_large`: at once
    when the Content-Length says so, else (chunked) as soon as the bytes received pass it.
    Adds `Cache-Control: no-store` to every response without a Cache-Control of its own:
    tokens, challenge tokens, secrets and backup codes must never sit in a cache, and a
    route that may be cached (the JWKS) says so itself."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope["headers"])
        if length is not None and length > self.max_body_bytes:
            await refuse(send)  # before the app runs: not one byte of the body is read
            return
        # With a Content-Length the server frames the body: it never passes on more than
        # that. Without one (chunked), each chunk is counted as it arrives.
        exchange = _Exchange(receive, send, self.max_body_bytes if length is None else None)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if not exchange.too_large or exchange.started:
                raise
            if not exchange.refused:
                await refuse(send)


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length; None when it has none or one that is not a number
    (its body is then counted as it arrives)."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():  # bytes.isdigit: ASCII digits only
                return None
            # Longer than any limit, and int() refuses numbers of over 4300 digits.
            declared = int(value) if len(value) < 19 else 10**18
            length = declared if length is None else max(length, declared)
    return length


async def refuse(send: Send) -> None:
    await send(_TOO_LARGE_START)
    await send({"type": "http.response.body", "body": _TOO_LARGE_BODY})


class _Exchange:
    """One request's receive and send, counting the body when `limit` is set."""

    __slots__ = ("_receive", "_send", "limit", "received", "too_large", "started", "refused")

    def __init__(self, receive: Receive, send: Send, limit: int | None) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.too_large = False  # the body passed the limit
        self.started = False  # the app's own answer has started
        self.refused = False  # our 413 went out in place of the app's answer

    async def receive(self) -> Message:
        if self.too_large:
            raise PayloadTooLarge()
        message = await self._receive()
        if self.limit is not None and message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.too_large = True
                raise PayloadTooLarge()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.too_large:
                # Whatever the app made of the refused read (FastAPI answers an error while
                # reading the body with 400), the answer is the 413.
                self.refused = True
                await refuse(self._send)
                return
            self.started = True
            message = with_no_store(message)
        elif self.refused:
            return  # the body of the answer the 413 replaced
        await self._send(message)


def with_no_store(start: Message) -> Message:
    headers = start.get("headers", ())
    for name, _ in headers:
        if name.lower() == b"cache-control":
            return start
    return {**start, "headers": [*headers, NO_STORE]}
