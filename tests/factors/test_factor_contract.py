"""One contract, every factor (django-otp's shared test class): a proof works once, even
under concurrency; wrong proofs count toward the shared lock; a locked user is refused
before the proof is looked at, and the refusal does not use the proof up.

TOTP and backup codes are one-step factors (a proof answers any challenge); WebAuthn is a
two-step one (an assertion answers the options its challenge was given)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import FakeClock, login, mfa_user, totp_code
from tests.webauthn.authenticator import tamper_signature
from tests.webauthn.flows import key_user

Proof = dict[str, Any]
Login = dict[str, Any]  # the ChallengeResponse a proof answers


@dataclass(frozen=True)
class Kind:
    name: str
    enrol: Callable[[httpx.AsyncClient, FakeClock], Awaitable[Any]]
    right: Callable[[Any, Login, FakeClock], Proof]
    wrong: Callable[[Any, Login], Proof]
    two_step: bool = False


KINDS = [
    Kind(
        "totp",
        mfa_user,
        lambda user, _, clock: {"code": totp_code(user.secret, clock)},
        lambda *_: {"code": "000000"},
    ),
    Kind(
        "backup_code",
        mfa_user,
        lambda user, *_: {"backup_code": user.backup_codes[0]},
        lambda *_: {"backup_code": "zzzzz-zzzzz"},
    ),
    Kind(
        "webauthn",
        lambda client, _: key_user(client),
        lambda user, body, _: {"webauthn": user.authenticator.get(body["webauthn"])},
        lambda user, body: {"webauthn": tamper_signature(user.authenticator.get(body["webauthn"]))},
        two_step=True,
    ),
]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    k: Kind = request.param
    return k


async def post(client: httpx.AsyncClient, body: Login, proof: Proof) -> httpx.Response:
    return await client.post(
        "/mfa/challenge", json={"challenge_token": body["challenge_token"], **proof}
    )


async def started(client: httpx.AsyncClient, user: Any) -> Login:
    body = await login(client, user.email)
    assert body["status"] == "mfa_required", body
    return body


class TestFactorContract:
    async def test_a_proof_works_once(
        self, client: httpx.AsyncClient, clock: FakeClock, kind: Kind
    ) -> None:
        user = await kind.enrol(client, clock)
        first = await started(client, user)
        proof = kind.right(user, first, clock)
        assert (await post(client, first, proof)).status_code == 200
        again = await post(client, await started(client, user), proof)
        assert again.status_code == 401
        assert again.json()["code"] == "invalid_code"

    async def test_a_proof_works_once_under_concurrency(
        self, client: httpx.AsyncClient, clock: FakeClock, kind: Kind
    ) -> None:
        user = await kind.enrol(client, clock)
        first = await started(client, user)
        proof = kind.right(user, first, clock)
        # A one-step proof raced over ten challenges; an assertion, over its own challenge.
        if kind.two_step:
            bodies = [first] * 10
        else:
            bodies = [first] + [await started(client, user) for _ in range(9)]
        answers = await asyncio.gather(*[post(client, b, proof) for b in bodies])
        assert sorted(a.status_code for a in answers) == [200] + [401] * 9

    async def test_lock_refuses_the_right_proof_without_using_it(
        self, client: httpx.AsyncClient, clock: FakeClock, kind: Kind
    ) -> None:
        user = await kind.enrol(client, clock)
        for _ in range(10):
            body = await started(client, user)
            assert (await post(client, body, kind.wrong(user, body))).status_code == 401
        body = await started(client, user)
        proof = kind.right(user, body, clock)
        locked = await post(client, body, proof)
        assert locked.status_code == 429
        clock.advance(900)
        # A backup code refused while locked is still unused: the same code works now.
        later = await started(client, user)
        assert (await post(client, later, kind.right(user, later, clock))).status_code == 200
