"""Webhooks (SPEC §9): every audit event POSTed to a real local receiver, signed per Standard
Webhooks (checked with the `standardwebhooks` verifier), from the outbox: retried until the
receiver takes it, exactly once after that, through a restart, and by the operator's retry."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mfa_service.config import Settings
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    cli,
    free_port,
    registered_login,
    running_app,
    settings_for,
)
from tests.webhooks.receiver import WAIT_SECONDS, Receiver


def hook_settings(backend: Backend, url: str, secret: str, **overrides: Any) -> Settings:
    # The worker looks for due rows often: the clock the test moves decides what is due.
    return settings_for(
        backend, webhook_url=url, webhook_secret=secret, outbox_poll_seconds=0.05, **overrides
    )


async def user_with_events(client: httpx.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    """A user who registered, logged in and failed one login: (id, audit events)."""
    email, tokens = await registered_login(client)
    wrong = await client.post("/auth/login", json={"email": email, "password": "not it at all"})
    assert wrong.status_code == 401
    headers = bearer(tokens["access_token"])
    me = await client.get("/users/me", headers=headers)
    events = await client.get("/users/me/events", headers=headers)
    assert me.status_code == events.status_code == 200
    items: list[dict[str, Any]] = events.json()["items"]
    assert len(items) >= 2
    return me.json()["id"], items


async def until_accepted(hooks: Receiver, user_id: str, count: int, clock: FakeClock) -> None:
    """Move the clock past each retry's backoff until `count` deliveries were taken."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while len(hooks.accepted(user_id)) < count:
        assert asyncio.get_running_loop().time() < deadline, hooks.accepted(user_id)
        clock.advance(120)
        await asyncio.sleep(0.1)


async def test_every_audit_event_is_delivered_signed(
    backend: Backend, clock: FakeClock, hooks: Receiver, secret: str
) -> None:
    async with running_app(hook_settings(backend, hooks.url, secret), clock) as client:
        user_id, events = await user_with_events(client)
        got = await hooks.wait_for(user_id, len(events))
    assert sorted(r.event["type"] for r in got) == sorted(e["type"] for e in events)
    for r in got:  # `accepted` verified each signature
        event = r.event
        assert event["type"] == event["data"]["type"]
        assert r.message_id == f"msg_{uuid.UUID(event['data']['id']).hex}"
        assert r.headers["content-type"] == "application/json"
        assert event["data"]["ip"] == "203.0.113.7"
        assert PASSWORD not in r.body.decode()
    assert len({r.message_id for r in got}) == len(got)
    # The signature holds for this secret only.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another secret, 24 bytes").decode()).verify(
            got[0].body, got[0].headers
        )


async def test_a_failing_receiver_gets_each_event_once_after_retries(
    backend: Backend, clock: FakeClock, hooks: Receiver, secret: str
) -> None:
    hooks.failures = 3
    async with running_app(hook_settings(backend, hooks.url, secret), clock) as client:
        before = await deliveries_counted(client)
        # The receiver fails every first try: the requests answer as usual all the same.
        user_id, events = await user_with_events(client)
        await until_accepted(hooks, user_id, len(events), clock)
        clock.advance(86_400)  # nothing left to send: no delivery comes twice
        await asyncio.sleep(0.5)
        got = hooks.accepted(user_id)
        after = await deliveries_counted(client)
    assert len(got) == len(events)
    assert len({r.message_id for r in got}) == len(events)
    assert all(hooks.tries(r.message_id) == 4 for r in got)
    # /metrics counted the attempts (this process's counters: other tests' apps add to them).
    assert after["delivered"] - before["delivered"] >= len(events)
    assert after["failed"] - before["failed"] >= 3 * len(events)


async def deliveries_counted(client: httpx.AsyncClient) -> dict[str, float]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    counted = {"delivered": 0.0, "failed": 0.0}
    for line in r.text.splitlines():
        for outcome in counted:
            if line.startswith(f'mfa_webhook_deliveries_total{{outcome="{outcome}"}}'):
                counted[outcome] = float(line.split()[-1])
    return counted


async def test_a_restart_mid_backlog_loses_nothing(
    backend: Backend, clock: FakeClock, hooks: Receiver, secret: str
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hooks/mfa"  # nothing listens there
    async with running_app(hook_settings(backend, nobody, secret), clock) as client:
        user_id, events = await user_with_events(client)
        await asyncio.sleep(0.5)  # first tries fail: a backlog of retries
    async with running_app(hook_settings(backend, hooks.url, secret), clock):
        await until_accepted(hooks, user_id, len(events), clock)
        got = hooks.accepted(user_id)
    assert sorted(r.event["type"] for r in got) == sorted(e["type"] for e in events)
    assert len({r.message_id for r in got}) == len(events)


async def test_given_up_then_retried_by_the_operator(
    backend: Backend, clock: FakeClock, hooks: Receiver, secret: str
) -> None:
    hooks.failures = 10**6
    settings = hook_settings(backend, hooks.url, secret, outbox_max_age=600)
    async with running_app(settings, clock) as client:
        user_id, events = await user_with_events(client)
        # Fail until every delivery of the user's events is given up.
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while True:
            listed = await cli(
                settings, "webhooks", "list", "--failed", "--json", "--limit", "1000"
            )
            assert listed.returncode == 0, listed.stderr
            failed = [json.loads(line) for line in listed.stdout.splitlines()]
            mine = [d for d in failed if d["event_id"] in _event_ids(hooks, user_id)]
            if len(mine) == len(events):
                break
            assert asyncio.get_running_loop().time() < deadline, mine
            clock.advance(120)
            await asyncio.sleep(0.1)
        assert all(d["last_error"] == "DeliveryError: the receiver answered 503" for d in mine)
        assert hooks.accepted(user_id) == []

        hooks.failures = 0
        retried = await cli(settings, "webhooks", "retry", *(d["id"] for d in mine))
        assert retried.returncode == 0, retried.stderr
        assert f"{len(events)} failed deliveries are due again" in retried.stdout
        got = await hooks.wait_for(user_id, len(events))
    assert len({r.message_id for r in got}) == len(events)


def _event_ids(hooks: Receiver, user_id: str) -> set[str]:
    """The audit event ids of `user_id` the receiver was offered (and refused)."""
    return {r.event["data"]["id"] for r in hooks.received if r.event["data"]["user_id"] == user_id}
