"""A real HTTP receiver for the webhook tests: a threaded stdlib server on a free loopback
port that records every POST and answers 503 to the first `failures` tries of each message."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

WAIT_SECONDS = 60.0  # a bound for a stuck test on a loaded machine, not a measurement


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver:
    def __init__(self, secret: str, failures: int = 0) -> None:
        self.secret = secret
        self.failures = failures
        self.received: list[Received] = []
        self._tries: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._answer(headers.get("webhook-id", ""))
                with receiver._lock:
                    receiver.received.append(Received(headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _answer(self, message_id: str) -> int:
        with self._lock:
            self._tries[message_id] += 1
            return 503 if self._tries[message_id] <= self.failures else 204

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/mfa"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def accepted(self, user_id: str | None = None) -> list[Received]:
        """The deliveries answered 2xx, each checked with the standardwebhooks verifier; of
        `user_id`'s events only, when given (other tests' rows share the database)."""
        with self._lock:
            found = [r for r in self.received if r.status < 300]
        for r in found:
            Webhook(self.secret).verify(r.body, r.headers)
        return [r for r in found if user_id is None or r.event["data"]["user_id"] == user_id]

    def tries(self, message_id: str) -> int:
        with self._lock:
            return self._tries[message_id]

    async def wait_for(self, user_id: str, count: int) -> list[Received]:
        """At least `count` accepted deliveries of `user_id`'s events."""
        deadline = time.monotonic() + WAIT_SECONDS
        while len(found := self.accepted(user_id)) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} deliveries arrived"
            await asyncio.sleep(0.05)
        return found
