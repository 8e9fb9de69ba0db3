"""Two instances on one database: every row is delivered once (each claim skips the rows
another holds)."""

from __future__ import annotations

from collections import Counter

from tests.outbox.test_delivery import account, change_password
from tests.recovery.smtp import SmtpServer
from tests.support import Backend, FakeClock, bearer, running_app, settings_for


async def test_two_workers_deliver_each_mail_once(backend: Backend, clock: FakeClock) -> None:
    server = SmtpServer()
    server.start()
    try:
        settings = settings_for(backend, smtp_url=server.url, outbox_poll_seconds=0.1)
        async with running_app(settings, clock) as one, running_app(settings, clock) as two:
            addresses = []
            for i in range(6):
                client = one if i % 2 else two
                email, _, tokens = await account(client)
                addresses.append(email)
                await change_password(client, tokens, "a brand new passphrase")
                r = await client.post(
                    "/auth/email/verification", headers=bearer(tokens["access_token"])
                )
                assert r.status_code == 202
            for email in addresses:
                await server.wait_for(email, 2)
            # One more mail, sent after both workers polled many times over those rows.
            await one.post("/auth/password/forgot", json={"email": addresses[0]})
            await server.wait_for(addresses[0], subject="Reset your")
        counts = Counter((tuple(m.to), m.subject) for m in server.received)
        mine = {k: n for k, n in counts.items() if k[0][0] in addresses}
        assert len(mine) == 13
        assert set(mine.values()) == {1}
    finally:
        server.stop()
