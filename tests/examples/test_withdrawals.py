"""The withdrawals example against the real mfa-service: both apps in-process, one clock,
the example's verifier reaching mfa-service's JWKS over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from examples.withdrawals.app import Settings, create_app
from mfa_verify import Verifier

from tests.support import FakeClock, bearer, free_port, totp_code
from tests.verifier.support import (
    Issuer,
    backup_code_login,
    foreign_key,
    forge,
    parse_bearer_challenge,
    password_only_token,
    step_up,
    totp_login,
    unsigned,
)

WITHDRAW = {"amount_cents": 2_500}


@asynccontextmanager
async def example(verifier: Verifier | Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(verifier)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as client:
            yield client


@pytest.fixture
async def bank(issuer: Issuer) -> AsyncIterator[httpx.AsyncClient]:
    async with issuer.verifier() as (verifier, _), example(verifier) as client:
        yield client


def insufficient(r: httpx.Response) -> dict[str, str]:
    """Checks a 401 insufficient_user_authentication answer; its challenge's parameters."""
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "insufficient_user_authentication"
    assert body["max_age"] == 300
    assert body["methods"] == ["otp"]
    params = parse_bearer_challenge(r.headers["www-authenticate"])
    assert set(params) == {"error", "error_description", "max_age"}
    assert params["error"] == "insufficient_user_authentication"
    assert params["max_age"] == "300"
    return params


async def withdraw(bank: httpx.AsyncClient, token: str, **body: Any) -> httpx.Response:
    return await bank.post("/withdrawals", headers=bearer(token), json=body or WITHDRAW)


async def test_password_only_token_reads_but_cannot_withdraw(
    issuer: Issuer, bank: httpx.AsyncClient
) -> None:
    token = await password_only_token(issuer.client)
    balance = await bank.get("/balance", headers=bearer(token))
    assert balance.status_code == 200, balance.text
    me = (await issuer.client.get("/users/me", headers=bearer(token))).json()
    assert balance.json() == {"user": me["id"], "balance_cents": 100_000}
    params = insufficient(await withdraw(bank, token))
    assert params["error_description"] == "A second factor is required"
    # Nothing moved.
    assert (await bank.get("/balance", headers=bearer(token))).json()["balance_cents"] == 100_000


async def test_totp_token_withdraws_until_max_age_then_steps_up(
    issuer: Issuer, bank: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await totp_login(issuer.client, clock)
    ok = await withdraw(bank, user.access_token)
    assert ok.status_code == 200, ok.text
    assert ok.json()["amount_cents"] == 2_500
    assert ok.json()["balance_cents"] == 97_500

    clock.advance(300)  # exactly max_age: still recent enough
    assert (await withdraw(bank, user.access_token)).status_code == 200
    clock.advance(1)  # 301 s: the token lives (900 s) but the proof is too old
    params = insufficient(await withdraw(bank, user.access_token))
    assert params["error_description"] == "A more recent authentication is required"
    assert (await bank.get("/balance", headers=bearer(user.access_token))).status_code == 200

    # The step-up loop: prove TOTP again at mfa-service, retry with the fresh token.
    fresh = await step_up(issuer.client, user.access_token, {"code": totp_code(user.secret, clock)})
    retried = await withdraw(bank, fresh)
    assert retried.status_code == 200, retried.text
    assert retried.json()["balance_cents"] == 92_500
    insufficient(await withdraw(bank, user.access_token))  # the old token stays too old


async def test_backup_code_login_must_step_up_with_totp(
    issuer: Issuer, bank: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await totp_login(issuer.client, clock)
    recovery = await backup_code_login(issuer.client, user)
    params = insufficient(await withdraw(bank, recovery))
    assert params["error_description"] == "Another authentication method is required"
    clock.advance(30)  # the TOTP login above used this time step
    fresh = await step_up(issuer.client, recovery, {"code": totp_code(user.secret, clock)})
    assert (await withdraw(bank, fresh)).status_code == 200


async def test_password_only_session_steps_up_after_enrolling(
    issuer: Issuer, bank: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The walkthrough's path: a token from before MFA, enrolment, step-up on that session."""
    token = await password_only_token(issuer.client)
    setup = await issuer.client.post("/mfa/totp/setup", headers=bearer(token))
    secret = setup.json()["secret"]
    confirm = await issuer.client.post(
        "/mfa/totp/confirm", headers=bearer(token), json={"code": totp_code(secret, clock)}
    )
    assert confirm.status_code == 200, confirm.text
    insufficient(await withdraw(bank, token))  # enrolling did not change this token
    clock.advance(30)
    fresh = await step_up(issuer.client, token, {"code": totp_code(secret, clock)})
    assert (await withdraw(bank, fresh)).status_code == 200


async def test_recent_backup_code_does_not_pass_for_recent_totp(
    issuer: Issuer, bank: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await totp_login(issuer.client, clock)
    clock.advance(600)  # the TOTP proof is old now
    fresh = await step_up(issuer.client, user.access_token, {"backup_code": user.backup_codes[0]})
    insufficient(await withdraw(bank, fresh))


async def test_invalid_forged_and_missing_tokens(
    issuer: Issuer, bank: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await totp_login(issuer.client, clock)
    head, body, signature = user.access_token.split(".")
    kid = (await issuer.services.keys.ring()).signing_kid
    forged = [
        "garbage",
        f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}",
        forge(foreign_key(), issuer.claims(), kid=kid),  # the issuer's kid, our own key
        forge(foreign_key(), issuer.claims()),  # a made-up kid
        unsigned({"alg": "none", "kid": kid, "typ": "at+jwt"}, issuer.claims()),
    ]
    for token in forged:
        for r in (await bank.get("/balance", headers=bearer(token)), await withdraw(bank, token)):
            assert r.status_code == 401, token
            assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "invalid_token"
            assert token not in r.text
    for headers in ({}, {"Authorization": f"Basic {user.access_token}"}, {"Authorization": ""}):
        r = await bank.post("/withdrawals", headers=headers, json=WITHDRAW)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["code"] == "invalid_token"
    clock.advance(900 + 30)  # past exp and the verifier's leeway
    expired = await bank.get("/balance", headers=bearer(user.access_token))
    assert expired.status_code == 401
    assert parse_bearer_challenge(expired.headers["www-authenticate"]) == {"error": "invalid_token"}


async def test_withdrawal_cannot_overdraw(
    issuer: Issuer, bank: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await totp_login(issuer.client, clock)
    assert (await withdraw(bank, user.access_token, amount_cents=100_000)).status_code == 200
    r = await withdraw(bank, user.access_token, amount_cents=1)
    assert r.status_code == 409
    assert r.json()["code"] == "insufficient_funds"
    assert (await withdraw(bank, user.access_token, amount_cents=0)).status_code == 422


async def test_unreachable_issuer_fails_closed() -> None:
    """Nothing listens on the configured port: every protected route answers 503."""
    settings = Settings(mfa_url=f"http://127.0.0.1:{free_port()}")
    async with example(settings) as bank:
        token = forge(foreign_key(), {"sub": "x"})
        for r in (
            await bank.get("/balance", headers=bearer(token)),
            await bank.post("/withdrawals", headers=bearer(token), json=WITHDRAW),
        ):
            assert r.status_code == 503
            assert r.json()["code"] == "service_unavailable"
            assert int(r.headers["retry-after"]) > 0
            assert token not in r.text


def test_settings_from_environment() -> None:
    assert Settings.from_env({}) == Settings(
        mfa_url="http://127.0.0.1:8000", issuer="http://localhost:8000", audience="mfa-service"
    )
    assert Settings.from_env(
        {
            "WITHDRAWALS_MFA_URL": "http://auth.internal:9000/",
            "WITHDRAWALS_MFA_ISSUER": "https://auth.example.com",
            "WITHDRAWALS_MFA_AUDIENCE": "bank",
        }
    ) == Settings("http://auth.internal:9000", "https://auth.example.com", "bank")
