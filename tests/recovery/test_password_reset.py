"""Forgotten passwords (SPEC §10), against a real SMTP server: the links are followed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.recovery.smtp import SmtpServer
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    login,
    mfa_user,
    new_email,
    register,
    running_app,
    settings_for,
    totp_code,
)

NEW_PASSWORD = "a brand new passphrase"
RESET_URL = "https://app.example/reset"


def mail_settings(backend: Backend, smtp: SmtpServer, **overrides: Any) -> Any:
    return settings_for(
        backend,
        smtp_url=smtp.url,
        mail_from="Example <security@example.com>",
        password_reset_url=RESET_URL,
        **overrides,
    )


async def reset_link(client: httpx.AsyncClient, smtp: SmtpServer, email: str, nth: int = 1) -> str:
    """Ask for a link and return the token of the `nth` mail to `email`."""
    r = await client.post("/auth/password/forgot", json={"email": email})
    assert r.status_code == 202, r.text
    received = await smtp.wait_for(email, nth, subject="Reset your")
    return received[nth - 1].token


async def test_forgot_mail_reset_login(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        email = new_email()
        await register(client, email)
        token = await reset_link(client, smtp, email)
        (mail,) = smtp.to(email, "Reset your")
        assert mail.subject.startswith("Reset your")
        assert f"{RESET_URL}?token={token}" in mail.text
        assert mail.message["From"] == "Example <security@example.com>"
        assert len(token) >= 43  # 256 bits, base64url

        r = await client.post(
            "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert r.status_code == 204, r.text
        assert (await login(client, email, NEW_PASSWORD))["status"] == "authenticated"
        old = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401


async def test_unknown_email_same_answer_and_no_mail(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        known = new_email()
        unknown = new_email()
        await register(client, known)
        answers = []
        for email in (unknown, known):
            started = time.monotonic()
            r = await client.post("/auth/password/forgot", json={"email": email})
            answers.append((r.status_code, r.content, r.headers.get("content-type")))
            assert time.monotonic() - started < 30
        assert answers[0] == answers[1]
        assert answers[0][0] == 202
        # The unknown email's request was handled before the known one's mail was sent.
        await smtp.wait_for(known)
        assert smtp.to(unknown) == []


async def test_token_single_use_expiry_and_supersession(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        email = new_email()
        await register(client, email)

        async def reset(token: str, password: str = NEW_PASSWORD) -> httpx.Response:
            return await client.post(
                "/auth/password/reset", json={"token": token, "new_password": password}
            )

        first = await reset_link(client, smtp, email, 1)
        second = await reset_link(client, smtp, email, 2)
        voided = await reset(first)
        assert voided.status_code == 401
        assert voided.json()["code"] == "invalid_reset_token"
        assert (await reset(second)).status_code == 204
        used = await reset(second, "yet another passphrase")
        assert used.status_code == 401
        assert used.content == voided.content  # one body for every bad token
        garbage = await reset("x" * 43)
        assert garbage.content == voided.content

        third = await reset_link(client, smtp, email, 3)
        clock.advance(30 * 60 + 1)
        expired = await reset(third)
        assert expired.status_code == 401
        assert expired.content == voided.content


async def test_concurrent_use_of_one_token(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        email = new_email()
        await register(client, email)
        token = await reset_link(client, smtp, email)
        answers = await asyncio.gather(
            *(
                client.post(
                    "/auth/password/reset",
                    json={"token": token, "new_password": f"{NEW_PASSWORD} {i}"},
                )
                for i in range(5)
            )
        )
        assert sorted(r.status_code for r in answers) == [204, 401, 401, 401, 401]
        winner = next(i for i, r in enumerate(answers) if r.status_code == 204)
        assert (await login(client, email, f"{NEW_PASSWORD} {winner}"))["access_token"]


async def test_reset_of_an_mfa_user_needs_a_factor(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        user = await mfa_user(client, clock)
        token = await reset_link(client, smtp, user.email)
        body = {"token": token, "new_password": NEW_PASSWORD}

        bare = await client.post("/auth/password/reset", json=body)
        assert bare.status_code == 401
        assert bare.json()["code"] == "invalid_code"
        wrong = await client.post("/auth/password/reset", json={**body, "code": "000000"})
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_code"
        # The link still works with the factor; a backup code is one.
        ok = await client.post(
            "/auth/password/reset", json={**body, "backup_code": user.backup_codes[0]}
        )
        assert ok.status_code == 204, ok.text
        # MFA stays on: the new password leads to a challenge, not tokens.
        token = await challenge(client, user.email, NEW_PASSWORD)
        r = await client.post(
            "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
        )
        assert r.status_code == 200, r.text


async def test_reset_with_a_totp_code_and_the_factor_lock(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        user = await mfa_user(client, clock)
        token = await reset_link(client, smtp, user.email)
        body = {"token": token, "new_password": NEW_PASSWORD}
        for _ in range(10):  # the per-user factor limit holds for resets too
            r = await client.post("/auth/password/reset", json={**body, "code": "000000"})
            assert r.status_code == 401
        locked = await client.post(
            "/auth/password/reset", json={**body, "code": totp_code(user.secret, clock)}
        )
        assert locked.status_code == 429
        assert "Retry-After" in locked.headers
        clock.advance(15 * 60 + 1)
        ok = await client.post(
            "/auth/password/reset", json={**body, "code": totp_code(user.secret, clock)}
        )
        assert ok.status_code == 204, ok.text


async def test_reset_ends_every_session_challenge_and_device(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        user = await mfa_user(client, clock)
        pending = await challenge(client, user.email)  # a challenge in progress
        remembered = await client.post(
            "/mfa/challenge",
            json={
                "challenge_token": await challenge(client, user.email),
                "code": totp_code(user.secret, clock),
                "remember_device": True,
            },
        )
        assert remembered.status_code == 200, remembered.text
        session = remembered.json()
        clock.advance(30)

        token = await reset_link(client, smtp, user.email)
        r = await client.post(
            "/auth/password/reset",
            json={
                "token": token,
                "new_password": NEW_PASSWORD,
                "code": totp_code(user.secret, clock),
            },
        )
        assert r.status_code == 204, r.text

        for access in (user.access_token, session["access_token"]):
            assert (await client.get("/users/me", headers=bearer(access))).status_code == 401
        refresh = await client.post(
            "/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert refresh.status_code == 401
        clock.advance(30)
        answer = await client.post(
            "/mfa/challenge",
            json={"challenge_token": pending, "code": totp_code(user.secret, clock)},
        )
        assert answer.status_code == 401
        assert answer.json()["code"] == "challenge_expired"
        # The remembered device no longer skips the challenge.
        again = await client.post(
            "/auth/login",
            json={
                "email": user.email,
                "password": NEW_PASSWORD,
                "device_token": session["device_token"],
            },
        )
        assert again.status_code == 200
        assert again.json()["status"] == "mfa_required"


async def test_forgot_is_limited_per_account_and_ip(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    settings = mail_settings(backend, smtp, password_reset_account_max=2, password_reset_ip_max=4)
    async with running_app(settings, clock) as client:
        email = new_email()
        answers = [
            (await client.post("/auth/password/forgot", json={"email": email})).status_code
            for _ in range(3)
        ]
        assert answers == [202, 202, 429]
        other = [
            (await client.post("/auth/password/forgot", json={"email": new_email()})).status_code
            for _ in range(3)
        ]
        assert other == [202, 429, 429]  # this IP's 4 are spent (the refused one counted)
