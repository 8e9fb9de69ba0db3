"""The delivery worker: one per instance, started and stopped with the app.

It claims due rows (a lease), hands each to the handler registered for its kind, and records
the outcome: delivered, or retried with exponential backoff and jitter until the row is
`MFA_OUTBOX_MAX_AGE` old, then dead. Delivery is at least once: a worker that dies after a
send and before recording it sends again when the lease ends. It is woken right after a
commit that enqueued something (`service.enqueue`), and polls every `MFA_OUTBOX_POLL_SECONDS`
for what other instances enqueued and for retries that fell due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from mfa_service.clock import Clock, now
from mfa_service.config import Settings
from mfa_service.outbox import repository

logger = logging.getLogger(__name__)

BATCH = 10
RETRY_BASE_SECONDS = 15
RETRY_CAP_SECONDS = 3600


@dataclass(frozen=True)
class Item:
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int  # this one included


Handler = Callable[[Item], Awaitable[None]]


class DeliveryError(Exception):
    """A failed delivery worth retrying; its message is recorded, so it holds no secret."""


class Undeliverable(DeliveryError):
    """A delivery that can never succeed (its user is gone): the row is dead at once."""


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failures: doubling from 15 s to an hour,
    each drawn from its upper half so instances that failed together do not retry together."""
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 20))
    return float(delay * random.uniform(0.5, 1.0))


def describe(exc: BaseException) -> str:
    """What `last_error` and the log keep: our own messages, otherwise only the class (an
    SMTP server's reply may repeat the address)."""
    if isinstance(exc, DeliveryError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


class Outbox:
    def __init__(self, engine: AsyncEngine, settings: Settings, clock: Clock) -> None:
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def register(self, kind: str, handler: Handler) -> None:
        """Deliver rows of `kind` with `handler`; it raises to have the row retried. Rows of
        kinds no handler is registered for are left to instances that know them."""
        self._handlers[kind] = handler

    def wake(self) -> None:
        """Look for due rows now (called after a commit that enqueued one)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None and self._handlers:
            self._task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self) -> None:
        """Stop; a delivery cut short is retried by whoever claims the row after its lease."""
        if self._task is not None:
            # The flag ends the loop even if the cancellation is lost (below).
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        poll = self._settings.outbox_poll_seconds
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self.run_once()
            except Exception as exc:  # the database is down: try again at the next poll
                logger.warning("outbox: claiming failed (%s); retrying", describe(exc))
                claimed = 0
            if claimed >= BATCH:
                continue  # there may be more due now
            # Not asyncio.wait_for: on Python 3.11 it loses a cancellation that arrives as
            # the wait ends (a wake right before stop), and this loop then never ended: the
            # app's shutdown hung on it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()

    async def run_once(self) -> int:
        """Claim and deliver one batch of due rows; how many were claimed."""
        at = now(self._clock)
        lease_id = uuid.uuid4()
        lease_until = at + timedelta(seconds=self._settings.outbox_lease_seconds)
        async with self._engine.begin() as conn:
            rows = await repository.claim(
                conn, sorted(self._handlers), at, lease_until, lease_id, BATCH
            )
        items = [Item(r.id, r.kind, dict(r.payload), r.created_at, r.attempts) for r in rows]
        # A task group, not gather: on stop, gather ended as soon as one delivery had unwound
        # and left the others running past the app's shutdown (each closing its database
        # connection); the group waits for every one of them.
        async with asyncio.TaskGroup() as group:
            for item in items:
                group.create_task(self._deliver(item, lease_id))
        return len(items)

    async def _deliver(self, item: Item, lease_id: uuid.UUID) -> None:
        try:
            await self._handlers[item.kind](item)
        except Exception as exc:
            await self._failed(item, lease_id, exc)
            return
        async with self._engine.begin() as conn:
            await repository.delivered(conn, item.id, lease_id, now(self._clock))

    async def _failed(self, item: Item, lease_id: uuid.UUID, exc: Exception) -> None:
        at = now(self._clock)
        retry_at = at + timedelta(seconds=backoff(item.attempts))
        too_old = retry_at - item.created_at > timedelta(seconds=self._settings.outbox_max_age)
        dead = isinstance(exc, Undeliverable) or too_old
        error = describe(exc)
        logger.warning(
            "outbox: %s %s attempt %d failed (%s)%s",
            item.kind,
            item.id,
            item.attempts,
            error,
            ": giving up" if dead else "",
        )
        async with self._engine.begin() as conn:
            await repository.failed(conn, item.id, lease_id, error, retry_at, at if dead else None)
