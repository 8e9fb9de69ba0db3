"""Where a built message goes: an SMTP server, or a directory of .eml files."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from mfa_service.config import Settings
from mfa_service.data_dir import FILE_MODE, ensure_data_dir
from mfa_service.outbox.worker import DeliveryError, Undeliverable

logger = logging.getLogger(__name__)


class Transport(Protocol):
    async def send(self, message: EmailMessage, name: str) -> None:
        """Deliver `message`; `name` is unique per outbox row (a file name, a log line)."""


class SmtpTransport:
    """smtp:// (port 25 unless given) upgrades with STARTTLS when the server offers it, and
    insists on it when the URL has credentials: they never travel in clear text, even past a
    man in the middle who strips the offer. smtps:// (port 465) is TLS from the first byte.
    The server's certificate is always checked (against `ca_file`, else the system's CAs).
    Credentials come from the URL and are never logged."""

    def __init__(
        self, url: str, timeout: float, local_hostname: str, ca_file: Path | None = None
    ) -> None:
        parts = urlsplit(url)
        self._implicit_tls = parts.scheme == "smtps"
        self._hostname = parts.hostname or "localhost"
        self._port = parts.port or (465 if self._implicit_tls else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout
        # Given, so the client does not ask the resolver for this host's name (blocking).
        self._local_hostname = local_hostname
        self._ca_file = str(ca_file) if ca_file is not None else None
        if self._implicit_tls:
            self._start_tls: bool | None = False
        else:
            self._start_tls = True if self._username is not None else None  # None: if offered

    async def send(self, message: EmailMessage, name: str) -> None:  # noqa: ARG002
        try:
            await aiosmtplib.send(
                message,
                hostname=self._hostname,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._implicit_tls,
                start_tls=self._start_tls,
                cert_bundle=self._ca_file,
                timeout=self._timeout,
                local_hostname=self._local_hostname,
            )
        except aiosmtplib.SMTPRecipientsRefused:
            raise Undeliverable("the SMTP server refused the recipient") from None
        except aiosmtplib.SMTPResponseException as exc:
            # The code only: the server's text may repeat the address.
            raise DeliveryError(f"SMTP error {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(_failure(exc)) from None


def _failure(exc: BaseException) -> str:
    """What went wrong, in a fixed text (the outbox row, the log): never the server's words."""
    chain = (exc, exc.__cause__, exc.__context__)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return "the SMTP server's certificate is not trusted (see MFA_SMTP_CA_FILE)"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return f"TLS with the SMTP server failed ({type(exc).__name__})"
    if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in exc.message:
        return "the SMTP server offers no STARTTLS, which the URL's credentials require"
    return f"SMTP server unreachable ({type(exc).__name__})"


class FileTransport:
    """The embedded default: each message an .eml file (0600) in a private directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage, name: str) -> None:
        path = self.directory / f"{name}.eml"
        await asyncio.to_thread(self._write, path, message.as_bytes())
        # Never the link: whoever reads the log is not the mailbox's owner.
        logger.info("mail: no MFA_SMTP_URL, wrote %s (%s)", path, message["Subject"])

    def _write(self, path: Path, data: bytes) -> None:
        ensure_data_dir(self.directory)
        # Written under a temporary name and renamed: a reader never sees half a message.
        partial = path.with_suffix(".part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(partial, path)


def create_transport(settings: Settings) -> Transport:
    if settings.smtp_url is None:
        return FileTransport(settings.data_dir / "outbox")
    return SmtpTransport(
        settings.smtp_url.get_secret_value(),
        settings.smtp_timeout,
        sender_domain(settings),
        settings.smtp_ca_file,
    )


def sender_domain(settings: Settings) -> str:
    address = settings.mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return address.rpartition("@")[2] or "localhost"
