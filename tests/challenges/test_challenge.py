from __future__ import annotations

import httpx
import jwt
import pytest

from tests.support import (
    FakeClock,
    bearer,
    challenge,
    login,
    mfa_user,
    totp_code,
)

pytestmark = pytest.mark.redis_cluster


async def test_login_with_mfa_gives_no_tokens(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    body = await login(client, user.email)
    assert body["status"] == "mfa_required"
    assert "access_token" not in body
    assert "refresh_token" not in body


async def test_challenge_token_in_the_authorization_header(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    r = await client.post(
        "/mfa/challenge", headers=bearer(token), json={"code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 200
    assert r.json()["status"] == "authenticated"


async def test_backup_code_gives_recovery_amr(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    # Case, hyphens and spaces do not matter.
    typed = user.backup_codes[0].upper().replace("-", " ")
    r = await client.post("/mfa/challenge", json={"challenge_token": token, "backup_code": typed})
    assert r.status_code == 200
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "mfa", "recovery"]
    state = (await client.get("/mfa", headers=bearer(r.json()["access_token"]))).json()
    assert state["backup_codes"]["remaining"] == 9


async def test_challenge_is_single_use(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    first = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
    )
    assert first.status_code == 200
    clock.advance(30)
    again = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
    )
    assert again.status_code == 401
    assert again.json()["code"] == "challenge_expired"


async def test_challenge_expires(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    clock.advance(299)
    live = await challenge(client, user.email)
    clock.advance(2)
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 401
    assert r.json()["code"] == "challenge_expired"
    # An expired challenge costs no attempt: a younger one still works with the same code.
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": live, "code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 200


async def test_challenge_token_is_not_an_access_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 401
    assert (await client.post("/auth/logout", headers=bearer(token))).status_code == 401
    assert (await client.post("/auth/refresh", json={"refresh_token": token})).status_code == 401


async def test_access_token_is_not_a_challenge_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    for token in (user.access_token, "garbage", "0" * 32 + ".x"):
        r = await client.post(
            "/mfa/challenge",
            json={"challenge_token": token, "code": totp_code(user.secret, clock)},
        )
        assert r.status_code == 401
        assert r.json()["code"] == "challenge_expired"
    missing = await client.post("/mfa/challenge", json={"code": totp_code(user.secret, clock)})
    assert missing.status_code == 401


async def test_another_users_code_does_not_answer_my_challenge(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    me = await mfa_user(client, clock)
    other = await mfa_user(client, clock)
    token = await challenge(client, me.email)
    for proof in (
        {"code": totp_code(other.secret, clock)},
        {"backup_code": other.backup_codes[0]},
    ):
        r = await client.post("/mfa/challenge", json={"challenge_token": token, **proof})
        assert r.status_code == 401
        assert r.json()["code"] == "invalid_code"


@pytest.mark.parametrize(
    "proof",
    [
        {},
        {"code": "123456", "backup_code": "abcde-fghjk"},
        {"code": 123456},
        {"code": None},
    ],
)
async def test_malformed_answers_are_422(
    client: httpx.AsyncClient, clock: FakeClock, proof: dict[str, object]
) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    r = await client.post("/mfa/challenge", json={"challenge_token": token, **proof})
    assert r.status_code == 422


async def test_code_is_normalised_once_then_six_ascii_digits(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    code = totp_code(user.secret, clock)
    fullwidth = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    token = await challenge(client, user.email)
    for wrong in (fullwidth, f"{code}0", code[:5], f"{code}\t"):
        r = await client.post("/mfa/challenge", json={"challenge_token": token, "code": wrong})
        assert r.status_code == 401
        assert r.json()["code"] == "invalid_code"
        assert wrong not in r.text
    # Four wrong attempts; the right code with spaces is the fifth and passes.
    spaced = f" {code[:3]} {code[3:]} "
    r = await client.post("/mfa/challenge", json={"challenge_token": token, "code": spaced})
    assert r.status_code == 200
