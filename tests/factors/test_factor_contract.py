"""One contract, every factor (django-otp's shared test class): a proof works once, even
under concurrency; wrong proofs count toward the shared lock; a locked user is refused
before the proof is looked at, and the refusal does not use the proof up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from tests.support import FakeClock, MfaUser, challenge, mfa_user, totp_code

Proof = dict[str, str]


@pytest.fixture(params=["totp", "backup_code"])
def prove(request: pytest.FixtureRequest, clock: FakeClock) -> Callable[[MfaUser], Proof]:
    if request.param == "totp":
        return lambda user: {"code": totp_code(user.secret, clock)}
    return lambda user: {"backup_code": user.backup_codes[0]}


WRONG: dict[str, Proof] = {
    "totp": {"code": "000000"},
    "backup_code": {"backup_code": "zzzzz-zzzzz"},
}


async def answer(client: httpx.AsyncClient, user: MfaUser, proof: Proof) -> httpx.Response:
    token = await challenge(client, user.email)
    return await client.post("/mfa/challenge", json={"challenge_token": token, **proof})


class TestFactorContract:
    async def test_a_proof_works_once(
        self, client: httpx.AsyncClient, clock: FakeClock, prove: Callable[[MfaUser], Proof]
    ) -> None:
        user = await mfa_user(client, clock)
        assert (await answer(client, user, prove(user))).status_code == 200
        again = await answer(client, user, prove(user))
        assert again.status_code == 401
        assert again.json()["code"] == "invalid_code"

    async def test_a_proof_works_once_under_concurrency(
        self, client: httpx.AsyncClient, clock: FakeClock, prove: Callable[[MfaUser], Proof]
    ) -> None:
        user = await mfa_user(client, clock)
        tokens = [await challenge(client, user.email) for _ in range(10)]
        answers = await asyncio.gather(
            *[
                client.post("/mfa/challenge", json={"challenge_token": t, **prove(user)})
                for t in tokens
            ]
        )
        assert sorted(a.status_code for a in answers) == [200] + [401] * 9

    async def test_lock_refuses_the_right_proof_without_using_it(
        self,
        client: httpx.AsyncClient,
        clock: FakeClock,
        prove: Callable[[MfaUser], Proof],
    ) -> None:
        user = await mfa_user(client, clock)
        kind = "totp" if "code" in prove(user) else "backup_code"
        for _ in range(10):
            assert (await answer(client, user, WRONG[kind])).status_code == 401
        locked = await answer(client, user, prove(user))
        assert locked.status_code == 429
        clock.advance(900)
        assert (await answer(client, user, prove(user))).status_code == 200
