"""`mfa-service keys rotate` on a running service: no downtime, old keys leave when unused."""

from __future__ import annotations

import time

import httpx
import jwt

from tests.support import (
    Backend,
    FakeClock,
    bearer,
    cli,
    registered_login,
    running_app,
    settings_for,
)


async def published_kids(client: httpx.AsyncClient) -> set[str]:
    r = await client.get("/.well-known/jwks.json")
    return {k["kid"] for k in r.json()["keys"]}


async def test_rotation_publishes_first_then_signs_then_drops_the_old_key(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        _, before = await registered_login(client)
        listed = await cli(settings, "keys", "list")
        assert listed.returncode == 0, listed.stderr
        # The key `keys rotate` retires. (The database is shared with other tests, whose clocks
        # differ: `before` may have been signed by an even older key, still published.)
        old_kid = next(line.split()[0] for line in listed.stdout.splitlines() if "active" in line)

        # The CLI stamps the retirement with the real time, somewhere in [t0, t1].
        t0 = time.time()
        rotated = await cli(settings, "keys", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        t1 = time.time()
        new_kid = rotated.stdout.split("new active signing key ")[1].split()[0]

        # Within seconds the JWKS publishes the new key (next to the old one)...
        clock.advance(6)
        assert {old_kid, new_kid} <= await published_kids(client)
        # ...a minute before this instance signs with it (its key ring reloads every 60 s).
        _, still_old = await registered_login(client)
        # (The database is shared with other tests: whichever key signs, it is not the new one.)
        signer = jwt.get_unverified_header(still_old["access_token"])["kid"]
        assert signer != new_kid
        assert signer in await published_kids(client)
        clock.advance(61)
        _, after = await registered_login(client)
        assert jwt.get_unverified_header(after["access_token"])["kid"] == new_kid

        # Tokens from before and after the rotation both work.
        for tokens in (before, after):
            r = await client.get("/users/me", headers=bearer(tokens["access_token"]))
            assert r.status_code == 200, r.text

        # The old key stays published while a token it signed can be alive (900 s after it
        # was retired, plus a minute), then leaves the JWKS.
        clock.advance(t0 + 900 + 60 - 5 - clock.time())
        assert old_kid in await published_kids(client)
        clock.advance(t1 + 900 + 60 + 5 - clock.time())
        kids = await published_kids(client)
        assert old_kid not in kids
        assert new_kid in kids
