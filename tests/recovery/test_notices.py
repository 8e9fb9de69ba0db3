"""Security notices (SPEC §10): one mail per event, with when, where from and what to do."""

from __future__ import annotations

from tests.recovery.smtp import SmtpServer
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    mfa_user,
    running_app,
    settings_for,
    totp_code,
)

AGENT = {"User-Agent": "NoticeTest/1.0"}


async def test_each_notice_once(backend: Backend, smtp: SmtpServer, clock: FakeClock) -> None:
    async with running_app(settings_for(backend, smtp_url=smtp.url), clock) as client:
        client.headers.update(AGENT)
        user = await mfa_user(client, clock)
        headers = bearer(user.access_token)
        (added,) = await smtp.wait_for(user.email, subject="authenticator app added")
        assert "203.0.113.7" in added.text
        assert "NoticeTest/1.0" in added.text
        assert "If it was not you" in added.text
        assert "UTC" in added.text

        r = await client.post(
            "/mfa/backup-codes", headers=headers, json={"code": totp_code(user.secret, clock)}
        )
        assert r.status_code == 200, r.text
        clock.advance(30)
        r = await client.post(
            "/auth/password",
            headers=headers,
            json={
                "current_password": PASSWORD,
                "new_password": "another long passphrase",
                "code": totp_code(user.secret, clock),
            },
        )
        assert r.status_code == 204, r.text
        clock.advance(30)
        r = await client.request(
            "DELETE",
            "/mfa/totp",
            headers=headers,
            json={"password": "another long passphrase", "code": totp_code(user.secret, clock)},
        )
        assert r.status_code == 204, r.text
        (removed,) = await smtp.wait_for(user.email, subject="authenticator app removed")
        assert "multi-factor authentication is now OFF" in removed.text

        subjects = sorted(m.subject.split(": ", 1)[1] for m in smtp.to(user.email))
        assert subjects == [
            "authenticator app added",
            "authenticator app removed",
            "new backup codes",
            "password changed",
        ]
        # HTML is escaped, not markup from the request.
        assert "NoticeTest/1.0" in removed.part("html")


async def test_factor_lock_notice_once(
    backend: Backend, smtp: SmtpServer, clock: FakeClock
) -> None:
    async with running_app(settings_for(backend, smtp_url=smtp.url), clock) as client:
        user = await mfa_user(client, clock)
        await smtp.wait_for(user.email, subject="authenticator app added")
        statuses = []
        for _ in range(3):  # 5 wrong codes burn a challenge; the 10th locks the user
            token = await challenge(client, user.email)
            for _ in range(5):
                r = await client.post(
                    "/mfa/challenge", json={"challenge_token": token, "code": "000000"}
                )
                statuses.append(r.status_code)
                if r.status_code != 401:
                    break
        assert statuses[:10] == [401] * 10
        assert 429 in statuses[10:]
        (locked,) = await smtp.wait_for(user.email, subject="second factor locked")
        assert "15 minutes" in locked.text
        # Another mail after it (the worker keeps order): still one lock notice.
        await client.post("/auth/password/forgot", json={"email": user.email})
        await smtp.wait_for(user.email, subject="Reset your")
        assert len(smtp.to(user.email, "second factor locked")) == 1
