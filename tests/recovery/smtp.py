"""A real SMTP server for the mail tests (aiosmtpd, on a free loopback port, in its own
thread), and what it received."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support import free_port

TOKEN = re.compile(r"(?:[?&]|&amp;)token=([A-Za-z0-9_\-]+)")  # HTML escapes the &


@dataclass
class Received:
    to: list[str]
    message: EmailMessage
    tls: bool = False  # the session was encrypted (smtps:// or after STARTTLS)
    login: str | None = None  # the user it authenticated as

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
    """Started and stopped at will on one port (a server that is down, then back).

    `implicit_tls`: TLS from the first byte (smtps://) with `tls_context`; else `tls_context`
    offers STARTTLS. `logins`: user → password it accepts with AUTH (also without TLS when
    `auth_in_clear`); every AUTH attempt is recorded in `auth_attempts`."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    logins: dict[str, str] = field(default_factory=dict)
    auth_in_clear: bool = False
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)  # (user, over TLS)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.decode() if session.authenticated else None
        received = Received(list(envelope.rcpt_tos), message, _encrypted(server), login)
        with self._lock:
            self.received.append(received)
        return "250 OK"

    def _authenticate(
        self, server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        with self._lock:
            self.auth_attempts.append((user, _encrypted(server)))
        if self.logins.get(user) == password:
            return AuthResult(success=True, auth_data=data.login)
        return AuthResult(success=False, handled=False)

    def start(self) -> None:
        options: dict[str, Any] = {}
        if self.tls_context is not None and self.implicit_tls:
            options["ssl_context"] = self.tls_context
        elif self.tls_context is not None:
            options["tls_context"] = self.tls_context
        if self.logins:
            options.update(
                authenticator=self._authenticate, auth_require_tls=not self.auth_in_clear
            )
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
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


def _encrypted(server: Any) -> bool:
    """Whether the aiosmtpd session's connection is TLS now (smtps://, or after STARTTLS)."""
    return server.transport.get_extra_info("ssl_object") is not None
