"""Email verification and MFA_REQUIRE_VERIFIED_EMAIL (SPEC §10)."""

from __future__ import annotations

import httpx

from tests.recovery.smtp import SmtpServer
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    login,
    new_email,
    register,
    registered_login,
    running_app,
    settings_for,
)
from tests.webauthn.flows import key_user, passkey_login, passkey_options

VERIFY_URL = "https://app.example/verify?lang=en"
SUBJECT = "Confirm your email"


async def verify(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/email/verify", json={"token": token})


async def test_required_verification(backend: Backend, smtp: SmtpServer, clock: FakeClock) -> None:
    settings = settings_for(
        backend, smtp_url=smtp.url, email_verify_url=VERIFY_URL, require_verified_email=True
    )
    async with running_app(settings, clock) as client:
        email = new_email()
        await register(client, email)
        (sent,) = await smtp.wait_for(email, subject=SUBJECT)  # registration sends a link
        assert f"{VERIFY_URL}&token={sent.token}" in sent.text

        wrong = await client.post("/auth/login", json={"email": email, "password": "not it!!"})
        assert wrong.status_code == 401  # a guesser learns nothing
        refused = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert refused.status_code == 403
        assert refused.json()["code"] == "email_not_verified"
        assert "access_token" not in refused.text
        # The refused login sent a fresh link, which voids the first.
        first, fresh = await smtp.wait_for(email, 2, subject=SUBJECT)
        assert (await verify(client, first.token)).status_code == 401
        assert (await verify(client, fresh.token)).status_code == 204
        again = await verify(client, fresh.token)
        assert again.status_code == 401
        assert again.json()["code"] == "invalid_verification_token"

        assert (await login(client, email))["status"] == "authenticated"


async def test_verification_on_request(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(settings_for(backend, smtp_url=smtp.url), clock) as client:
        email, tokens = await registered_login(client)  # no link: MFA_EMAIL_VERIFY_URL unset
        headers = bearer(tokens["access_token"])
        asked = await client.post("/auth/email/verification", headers=headers)
        assert asked.status_code == 202, asked.text
        (sent,) = await smtp.wait_for(email, subject=SUBJECT)
        assert f"http://mfa.test/account/verify-email?token={sent.token}" in sent.text
        assert smtp.to(email) == [sent]  # and nothing at registration
        clock.advance(86400 + 1)
        expired = await verify(client, sent.token)
        assert expired.status_code == 401

        tokens = await login(client, email)
        headers = bearer(tokens["access_token"])
        assert (await client.get("/users/me", headers=headers)).json()["email_verified"] is False
        await client.post("/auth/email/verification", headers=headers)
        _, sent = await smtp.wait_for(email, 2, subject=SUBJECT)
        assert (await verify(client, sent.token)).status_code == 204
        assert (await client.get("/users/me", headers=headers)).json()["email_verified"] is True
        done = await client.post("/auth/email/verification", headers=headers)
        assert done.status_code == 409
        assert done.json()["code"] == "email_already_verified"


async def test_verification_requests_are_limited(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    settings = settings_for(backend, smtp_url=smtp.url, email_verify_max=2)
    async with running_app(settings, clock) as client:
        _, tokens = await registered_login(client)
        headers = bearer(tokens["access_token"])
        answers = [
            (await client.post("/auth/email/verification", headers=headers)).status_code
            for _ in range(3)
        ]
        assert answers == [202, 202, 429]


async def test_registration_without_smtp_or_url_sends_nothing(
    backend: Backend, clock: FakeClock
) -> None:
    async with running_app(settings_for(backend), clock) as client:
        await register(client, new_email())  # no verification wanted: works as before


async def test_required_verification_holds_for_passkey_logins(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(settings_for(backend), clock) as client:
        user = await key_user(client, passkey=True)  # made before the policy was turned on
    settings = settings_for(backend, smtp_url=smtp.url, require_verified_email=True)
    async with running_app(settings, clock) as client:
        assertion = user.authenticator.get(await passkey_options(client))
        refused = await passkey_login(client, assertion)
        assert refused.status_code == 403
        assert refused.json()["code"] == "email_not_verified"
        (sent,) = await smtp.wait_for(user.email, subject=SUBJECT)
        assert (await verify(client, sent.token)).status_code == 204
        assertion = user.authenticator.get(await passkey_options(client))
        assert (await passkey_login(client, assertion)).status_code == 200
