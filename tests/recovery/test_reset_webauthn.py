"""A password reset proven with a security key: options bound to the reset link."""

from __future__ import annotations

from tests.recovery.smtp import SmtpServer
from tests.recovery.test_password_reset import NEW_PASSWORD, mail_settings, reset_link
from tests.support import Backend, FakeClock, login, new_email, register, running_app
from tests.webauthn.flows import key_challenge, key_user


async def test_reset_with_a_security_key(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        user = await key_user(client)
        token = await reset_link(client, smtp, user.email)
        options = await client.post("/auth/password/reset/options", json={"token": token})
        assert options.status_code == 200, options.text
        body = {"token": token, "new_password": NEW_PASSWORD}

        # An assertion for other options (a login challenge's) is refused.
        _, login_options = await key_challenge(client, user.email)
        stray = user.authenticator.get(login_options)
        refused = await client.post("/auth/password/reset", json={**body, "webauthn": stray})
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_code"

        # Those options were used up by the refused answer: new ones, then the key.
        options = await client.post("/auth/password/reset/options", json={"token": token})
        assertion = user.authenticator.get(options.json())
        ok = await client.post("/auth/password/reset", json={**body, "webauthn": assertion})
        assert ok.status_code == 204, ok.text
        after = await login(client, user.email, NEW_PASSWORD)
        assert after["status"] == "mfa_required"  # MFA stays on
        assert "webauthn" in after["methods"]

        used = await client.post("/auth/password/reset/options", json={"token": token})
        assert used.status_code == 401
        assert used.json()["code"] == "invalid_reset_token"


async def test_reset_options_without_a_key(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(mail_settings(backend, smtp), clock) as client:
        email = new_email()
        await register(client, email)
        token = await reset_link(client, smtp, email)
        r = await client.post("/auth/password/reset/options", json={"token": token})
        assert r.status_code == 403
        assert r.json()["code"] == "no_webauthn_credential"
