"""A real SMTP server for the mail tests (aiosmtpd, on a free loopback port, in its own
thread), and what it received."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support import free_port

TOKEN = re.compile(r"(?:[?&]|&amp;)token=([A-Za-z0-9_\-]+)")  # HTML escapes the &


@dataclass
class Received:
    to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        content: str = body.get_content()
        return content

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def token(self) -> str:
        found = TOKEN.search(self.text)
        assert found is not None, "no link with a token"
        html_found = TOKEN.search(self.part("html"))
        assert html_found is not None
        assert html_found.group(1) == found.group(1)
        return found.group(1)


@dataclass
class SmtpServer:
    """Started and stopped at will on one port (a server that is down, then back)."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str, subject: str = "") -> list[Received]:
        """Messages to `address` whose subject contains `subject`, in the order received."""
        with self._lock:
            return [r for r in self.received if address in r.to and subject in r.subject]

    async def wait_for(
        self, address: str, count: int = 1, subject: str = "", timeout: float = 60
    ) -> list[Received]:
        """The first `count` messages to `address` (with `subject` in their subject), waiting
        for the outbox worker to send them (generous: a loaded machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address, subject)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} message(s) to {address} not received in {timeout} s")
