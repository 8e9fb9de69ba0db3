"""One pure ASGI middleware, the outermost of ours, for every HTTP exchange: the request id
(the client's `X-Request-ID` if it is sane, else a new one; echoed in the answer and on every
log line written meanwhile), one access log line, and the request metrics.

Cheap on purpose: the hot paths answer in about a millisecond of CPU, and this runs for each.
The route template is read from the scope after the app ran (the router writes the route it
matched there), so a label never holds a raw path with ids in it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mfa_service.observability import logs, metrics

access_log = logging.getLogger("mfa_service.access")

# Bounded and harmless in a header, a log line and a JSON string.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route took (404, 405)


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _VALID_REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class Observability:
    def __init__(self, app: ASGIApp, *, metrics_enabled: bool = True) -> None:
        self.app = app
        self.metrics_enabled = metrics_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id_from(scope["headers"])
        header = (b"x-request-id", rid.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = logs.request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            if self.metrics_enabled:
                metrics.observe_request(method, route, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
            logs.request_id.reset(token)
