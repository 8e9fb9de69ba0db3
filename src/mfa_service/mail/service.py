"""Mails to a user: enqueued in the caller's transaction (outbox kind `mail`), built and
sent by the outbox worker. The payload names the user, not the address (read at delivery);
a link's token is sealed with the data key, so the outbox table holds no usable link."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import repository as accounts_repository
from mfa_service.clock import now
from mfa_service.mail import message
from mfa_service.mail.notices import NOTICES
from mfa_service.mail.transport import Transport, create_transport, sender_domain
from mfa_service.net import Client
from mfa_service.outbox.service import enqueue
from mfa_service.outbox.worker import Item, Undeliverable
from mfa_service.secretbox import DataKeyError

if TYPE_CHECKING:
    from mfa_service.services import Services

KIND = "mail"
PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
NOTICE = "notice"


def _context(template: str, user_id: str) -> bytes:
    return f"mail-token:{template}:{user_id}".encode()


def _enqueue_link(
    db: AsyncSession, svc: Services, template: str, user_id: uuid.UUID, token: str
) -> None:
    sealed = svc.box.seal(token.encode(), context=_context(template, str(user_id)))
    payload = {
        "template": template,
        "user_id": str(user_id),
        "token": base64.b64encode(sealed).decode(),
        "key_id": svc.box.key_id,
    }
    enqueue(db, svc, KIND, payload)


def send_password_reset(db: AsyncSession, svc: Services, user_id: uuid.UUID, token: str) -> None:
    _enqueue_link(db, svc, PASSWORD_RESET, user_id, token)


def send_verification(db: AsyncSession, svc: Services, user_id: uuid.UUID, token: str) -> None:
    _enqueue_link(db, svc, EMAIL_VERIFICATION, user_id, token)


def send_notice(
    db: AsyncSession,
    svc: Services,
    client: Client,
    event: str,
    user_id: uuid.UUID,
    at: datetime,
    detail: dict[str, str],
) -> None:
    """A security notice for an audit event of `NOTICES`, with when, from where and what."""
    payload = {
        "template": NOTICE,
        "user_id": str(user_id),
        "event": event,
        "at": at.isoformat(),
        "ip": client.ip,
        "user_agent": client.user_agent,
        "detail": detail,
    }
    enqueue(db, svc, KIND, payload)


def _link(base: str, token: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode({'token': token})}"


def _open_token(svc: Services, payload: dict[str, Any]) -> str:
    try:
        sealed = base64.b64decode(payload["token"])
        context = _context(payload["template"], payload["user_id"])
        return svc.box.open(sealed, key_id=payload["key_id"], context=context).decode()
    except (DataKeyError, ValueError, KeyError) as exc:
        raise Undeliverable("the link's token cannot be opened (data key changed?)") from exc


def _values(svc: Services, payload: dict[str, Any], email: str) -> dict[str, str]:
    s = svc.settings
    values = {"service": s.totp_issuer, "email": email}
    template = payload["template"]
    if template == PASSWORD_RESET:
        token = _open_token(svc, payload)
        link = _link(s.effective_password_reset_url, token)
        return {**values, "link": link, "minutes": str(s.password_reset_ttl // 60)}
    if template == EMAIL_VERIFICATION:
        token = _open_token(svc, payload)
        link = _link(s.effective_email_verify_url, token)
        return {**values, "link": link, "hours": str(max(1, s.email_verify_ttl // 3600))}
    notice = NOTICES[payload["event"]]
    at = datetime.fromisoformat(payload["at"])
    return {
        **values,
        "title": notice.title,
        "what": notice.what(payload.get("detail") or {}, s),
        "advice": notice.advice,
        "at": at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "ip": payload["ip"],
        "user_agent": payload["user_agent"] or "unknown",
    }


class Mailer:
    """The outbox handler of kind `mail`."""

    def __init__(self, svc: Services, transport: Transport) -> None:
        self._svc = svc
        self.transport = transport

    async def deliver(self, item: Item) -> None:
        svc = self._svc
        payload = item.payload
        # One read: no transaction (on SQLite a transaction would queue for the write lock).
        async with svc.statement_sessionmaker() as db:
            user = await accounts_repository.get(db, uuid.UUID(payload["user_id"]))
        if user is None:
            raise Undeliverable("the user no longer exists")
        built = message.build(
            payload["template"],
            to=user.email,
            sender=svc.settings.mail_from,
            domain=sender_domain(svc.settings),
            at=now(svc.clock),
            values=_values(svc, payload, user.email),
        )
        # The dot keeps the name from reading as one opaque token to the log redactor.
        await self.transport.send(built, f"{item.created_at:%Y%m%d-%H%M%S}.{item.id}")


def install(svc: Services) -> Mailer:
    mailer = Mailer(svc, create_transport(svc.settings))
    svc.outbox.register(KIND, mailer.deliver)
    return mailer
