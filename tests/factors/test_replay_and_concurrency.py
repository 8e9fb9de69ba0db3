from __future__ import annotations

import asyncio

import httpx
import jwt
import pytest

from tests.support import FakeClock, bearer, challenge, mfa_user, totp_code

pytestmark = pytest.mark.redis_cluster


async def answer(client: httpx.AsyncClient, token: str, **proof: str) -> httpx.Response:
    return await client.post("/mfa/challenge", json={"challenge_token": token, **proof})


async def test_enrolment_code_is_refused_at_the_next_login(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)  # confirmed one step ago
    clock.advance(-30)  # back in the step whose code confirmed the enrolment
    token = await challenge(client, user.email)
    r = await answer(client, token, code=totp_code(user.secret, clock))
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_code"


async def test_a_code_works_once_across_challenges(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    code = totp_code(user.secret, clock)
    first = await answer(client, await challenge(client, user.email), code=code)
    assert first.status_code == 200
    replay = await answer(client, await challenge(client, user.email), code=code)
    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_code"


async def test_one_step_either_side_is_accepted_two_are_not(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    clock.advance(60)  # so that T-2 is still newer than the enrolment step
    for steps, expected in ((-2, 401), (2, 401), (-1, 200), (0, 200), (1, 200)):
        token = await challenge(client, user.email)
        r = await answer(client, token, code=totp_code(user.secret, clock, steps))
        assert r.status_code == expected, (steps, r.text)
    # T+1 was used, so every code up to T+1 is now spent.
    token = await challenge(client, user.email)
    assert (await answer(client, token, code=totp_code(user.secret, clock))).status_code == 401


async def test_twenty_concurrent_requests_with_one_code_yield_one_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    tokens = [await challenge(client, user.email) for _ in range(20)]
    code = totp_code(user.secret, clock)
    answers = await asyncio.gather(*[answer(client, t, code=code) for t in tokens])
    statuses = sorted(a.status_code for a in answers)
    # One token; the rest are replays (401), or refused unjudged (429) while the user's
    # failure limit was taken by attempts in flight.
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 401, 429}, statuses


async def test_twenty_concurrent_uses_of_one_backup_code_yield_one_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    tokens = [await challenge(client, user.email) for _ in range(20)]
    backup = user.backup_codes[3]
    answers = await asyncio.gather(*[answer(client, t, backup_code=backup) for t in tokens])
    winners = [a for a in answers if a.status_code == 200]
    assert len(winners) == 1, sorted(a.status_code for a in answers)
    assert all(a.status_code in (401, 429) for a in answers if a.status_code != 200)
    state = await client.get("/mfa", headers=bearer(winners[0].json()["access_token"]))
    assert state.json()["backup_codes"]["remaining"] == 9


async def test_concurrent_different_codes_on_one_challenge_mint_once(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Codes of T and T+1 (both valid) at once on one challenge: the challenge burns once."""
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    proofs = [{"code": totp_code(user.secret, clock, s)} for s in (0, 1)]
    proofs += [{"backup_code": c} for c in user.backup_codes[:3]]
    answers = await asyncio.gather(*[answer(client, token, **p) for p in proofs])
    assert sum(a.status_code == 200 for a in answers) == 1


@pytest.mark.parametrize("factor", ["totp", "backup_code"])
async def test_backup_and_totp_failures_share_the_user_lock(
    client: httpx.AsyncClient, clock: FakeClock, factor: str
) -> None:
    """Ten wrong codes, of either kind, across fresh logins, lock the second factor."""
    user = await mfa_user(client, clock)
    for i in range(10):
        token = await challenge(client, user.email)
        proof = {"code": "000000"} if i % 2 else {"backup_code": "zzzzz-zzzzz"}
        r = await answer(client, token, **proof)
        assert r.status_code == 401, (i, r.text)
    token = await challenge(client, user.email)  # login still answers with a challenge
    right = (
        {"code": totp_code(user.secret, clock)}
        if factor == "totp"
        else {"backup_code": user.backup_codes[0]}
    )
    locked = await answer(client, token, **right)
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"
    assert 0 < int(locked.headers["retry-after"]) <= 900
    clock.advance(901)
    token = await challenge(client, user.email)
    right = (
        {"code": totp_code(user.secret, clock)}
        if factor == "totp"
        else {"backup_code": user.backup_codes[0]}
    )
    ok = await answer(client, token, **right)
    assert ok.status_code == 200, ok.text
    claims = jwt.decode(ok.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"][-1] == ("otp" if factor == "totp" else "recovery")


async def test_five_wrong_codes_burn_the_challenge(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    for _ in range(5):
        r = await answer(client, token, code="000000")
        assert r.status_code == 401
        assert r.json()["code"] == "invalid_code"
    burned = await answer(client, token, code=totp_code(user.secret, clock))
    assert burned.status_code == 401
    assert burned.json()["code"] == "challenge_expired"
    # The right code was not used up by the refused attempt.
    fresh = await answer(
        client, await challenge(client, user.email), code=totp_code(user.secret, clock)
    )
    assert fresh.status_code == 200
