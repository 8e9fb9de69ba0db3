"""Audit events as Standard Webhooks (https://www.standardwebhooks.com/): enqueued in the
transaction that records the event (outbox kind `webhook`), signed and posted by the outbox
worker, retried with backoff for MFA_OUTBOX_MAX_AGE, at least once. Receivers deduplicate on
`webhook-id`, which stays the same across retries (it is the audit event's id)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks.webhooks import Webhook

from mfa_service.observability import metrics
from mfa_service.outbox.service import enqueue
from mfa_service.outbox.worker import DeliveryError, Item

if TYPE_CHECKING:
    from mfa_service.services import Services

KIND = "webhook"
USER_AGENT = "mfa-service-webhooks"


def enqueue_event(db: AsyncSession, svc: Services, event: dict[str, Any]) -> None:
    """Deliver the audit event `event` (the row being written) once this transaction commits."""
    at: datetime = event["at"]
    enqueue(
        db,
        svc,
        KIND,
        {
            "type": event["type"],
            "timestamp": at.isoformat(),
            "data": {
                "id": str(event["id"]),
                "type": event["type"],
                "at": at.isoformat(),
                "user_id": None if event["user_id"] is None else str(event["user_id"]),
                "ip": event["ip"],
                "user_agent": event["user_agent"],
                "detail": event["detail"],
            },
        },
    )


class Sender:
    """The outbox handler of kind `webhook`: one signed POST to MFA_WEBHOOK_URL; any answer
    but a 2xx, or no answer within MFA_WEBHOOK_TIMEOUT, is a failure to retry."""

    def __init__(self, url: str, secret: str, timeout: float) -> None:
        self._url = url
        self._signer = Webhook(secret)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def headers(self, message_id: str, body: str) -> dict[str, str]:
        # The signature's time is the wall clock's, not the service's clock: receivers
        # compare it with theirs to refuse replays (Standard Webhooks allows 5 minutes).
        sent_at = datetime.fromtimestamp(int(time.time()), UTC)
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self._signer.sign(message_id, sent_at, body),
        }

    async def deliver(self, item: Item) -> None:
        message_id = f"msg_{uuid.UUID(item.payload['data']['id']).hex}"
        body = json.dumps(item.payload, separators=(",", ":"))
        try:
            response = await self._client.post(
                self._url, content=body, headers=self.headers(message_id, body)
            )
        except httpx.HTTPError as exc:
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            # The class only: an error's text can repeat the URL, which may hold a token.
            raise DeliveryError(f"no answer ({type(exc).__name__})") from None
        if not response.is_success:
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            raise DeliveryError(f"the receiver answered {response.status_code}")
        metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()

    async def close(self) -> None:
        await self._client.aclose()


def install(svc: Services) -> Sender | None:
    """Register the sender when MFA_WEBHOOK_URL is set; None otherwise."""
    settings = svc.settings
    if settings.webhook_url is None or settings.webhook_secret is None:
        return None
    sender = Sender(
        settings.webhook_url, settings.webhook_secret.get_secret_value(), settings.webhook_timeout
    )
    svc.outbox.register(KIND, sender.deliver)
    return sender
