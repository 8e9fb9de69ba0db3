"""Mail over TLS to a real SMTP server (aiosmtpd) whose certificate a private CA signed:
smtps://, STARTTLS, credentials only ever sent encrypted, and an untrusted certificate
refused (the mail waits in the outbox, nothing is sent in clear instead)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mail.pki import Pki, make_pki
from tests.outbox.test_delivery import NEW_PASSWORD, account, change_password, failed, wait_rows
from tests.recovery.smtp import Received, SmtpServer
from tests.support import Backend, FakeClock, running_app, settings_for

USER, PASSWORD = "relay-user", "relay pass: w0rd"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    smtp = SmtpServer()
    yield smtp
    smtp.stop()


def with_credentials(url: str) -> str:
    scheme, rest = url.split("://")
    return f"{scheme}://{USER}:{PASSWORD.replace(' ', '%20').replace(':', '%3A')}@{rest}"


async def delivered(
    backend: Backend, clock: FakeClock, server: SmtpServer, url: str, **settings: Any
) -> Received:
    """A password change's notice mail, as the server received it."""
    async with running_app(settings_for(backend, smtp_url=url, **settings), clock) as client:
        email, _, tokens = await account(client)
        await change_password(client, tokens, NEW_PASSWORD)
        [mail] = await server.wait_for(email, subject="password")
    return mail


async def refused(backend: Backend, clock: FakeClock, server: SmtpServer, url: str) -> str:
    """A password change's notice mail, not sent: the error its outbox row records."""
    settings = settings_for(backend, smtp_url=url, outbox_poll_seconds=0.2)
    async with running_app(settings, clock) as client:
        email, user_id, tokens = await account(client)
        await change_password(client, tokens, NEW_PASSWORD)
        [row] = await wait_rows(backend, user_id, failed(1))
    assert server.to(email) == []
    error: str = row.last_error
    return error


async def test_smtps_with_a_private_ca(
    backend: Backend, clock: FakeClock, pki: Pki, server: SmtpServer
) -> None:
    server.tls_context = pki.server_context()
    server.implicit_tls = True
    server.start()
    mail = await delivered(backend, clock, server, server.url, smtp_ca_file=pki.ca_file)
    assert mail.tls


async def test_starttls_before_the_credentials(
    backend: Backend, clock: FakeClock, pki: Pki, server: SmtpServer
) -> None:
    server.tls_context = pki.server_context()
    server.logins = {USER: PASSWORD}
    server.start()
    url = with_credentials(server.url)
    mail = await delivered(backend, clock, server, url, smtp_ca_file=pki.ca_file)
    assert (mail.tls, mail.login) == (True, USER)
    assert server.auth_attempts == [(USER, True)]


async def test_credentials_never_go_in_clear(
    backend: Backend, clock: FakeClock, server: SmtpServer
) -> None:
    """A server (or a man in the middle) that offers no STARTTLS but takes AUTH in clear text:
    the mail is not sent and the password never leaves."""
    server.logins = {USER: PASSWORD}
    server.auth_in_clear = True
    server.start()
    error = await refused(backend, clock, server, with_credentials(server.url))
    assert error == (
        "DeliveryError: the SMTP server offers no STARTTLS, which the URL's credentials require"
    )
    assert server.auth_attempts == []


@pytest.mark.parametrize("implicit_tls", [True, False], ids=["smtps", "starttls"])
async def test_an_untrusted_certificate_is_refused(
    backend: Backend, clock: FakeClock, pki: Pki, server: SmtpServer, implicit_tls: bool
) -> None:
    """The system's CAs do not know the private CA: without MFA_SMTP_CA_FILE, no mail."""
    server.tls_context = pki.server_context()
    server.implicit_tls = implicit_tls
    server.start()
    error = await refused(backend, clock, server, server.url)
    assert error == (
        "DeliveryError: the SMTP server's certificate is not trusted (see MFA_SMTP_CA_FILE)"
    )
