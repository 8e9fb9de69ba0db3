from __future__ import annotations

import asyncio
import base64
import re
import urllib.parse
import uuid

import cv2
import httpx
import jwt
import numpy as np

from tests.support import (
    FakeClock,
    bearer,
    challenge,
    login,
    mfa_login,
    mfa_user,
    registered_login,
    totp_code,
)


def decode_qr(png: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "not a PNG"
    # OpenCV's classic detector misses about 1 code in 300 that its ArUco-based one reads.
    for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
        text, _, _ = detector.detectAndDecode(image)
        if text:
            return str(text)
    return ""


async def test_the_whole_journey(client: httpx.AsyncClient, clock: FakeClock) -> None:
    email, tokens = await registered_login(client)
    auth = bearer(tokens["access_token"])
    before = (await client.get("/mfa", headers=auth)).json()
    assert before == {
        "mfa_enabled": False,
        "totp": {"enabled": False, "pending": False},
        "backup_codes": {"remaining": 0},
        "webauthn": {"credentials": 0},
    }

    setup = await client.post("/mfa/totp/setup", headers=auth)
    assert setup.status_code == 200
    assert setup.headers["cache-control"] == "no-store"
    uri = setup.json()["otpauth_uri"]
    secret = setup.json()["secret"]

    # Key Uri Format: label Issuer:account, issuer parameter, base32 secret without padding.
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "otpauth"
    assert parsed.netloc == "totp"
    assert urllib.parse.unquote(parsed.path) == f"/mfa-service:{email}"
    query = urllib.parse.parse_qs(parsed.query)
    assert query["issuer"] == ["mfa-service"]
    assert query["secret"] == [secret]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), "160-bit base32 secret without padding"
    assert len(base64.b32decode(secret)) == 20

    png = await client.get("/mfa/totp/qr.png", headers=auth)
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.headers["cache-control"] == "no-store"
    assert decode_qr(png.content) == uri
    svg = await client.get("/mfa/totp/qr.svg", headers=auth)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.headers["cache-control"] == "no-store"
    assert b"<svg" in svg.content
    assert setup.json()["qr_svg"].startswith("data:image/svg+xml")
    pending = (await client.get("/mfa", headers=auth)).json()
    assert pending["totp"] == {"enabled": False, "pending": True}
    assert pending["mfa_enabled"] is False

    confirm = await client.post(
        "/mfa/totp/confirm", headers=auth, json={"code": totp_code(secret, clock)}
    )
    assert confirm.status_code == 200
    body = confirm.json()
    assert body["mfa_enabled"] is True
    codes = body["backup_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(re.fullmatch(r"[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}", c) for c in codes)
    after = (await client.get("/mfa", headers=auth)).json()
    assert after == {
        "mfa_enabled": True,
        "totp": {"enabled": True, "pending": False},
        "backup_codes": {"remaining": 10},
        "webauthn": {"credentials": 0},
    }

    clock.advance(30)
    login = await client.post(
        "/auth/login", json={"email": email, "password": "correct horse battery staple"}
    )
    assert login.status_code == 200
    challenge_body = login.json()
    assert set(challenge_body) == {"status", "challenge_token", "expires_in", "methods"}
    assert challenge_body["status"] == "mfa_required"
    assert challenge_body["expires_in"] == 300
    assert challenge_body["methods"] == ["totp", "backup_code"]
    opaque = challenge_body["challenge_token"]
    assert len(opaque) >= 43  # >= 256 random bits
    assert "." not in opaque  # not a JWT
    user_id = uuid.UUID((await client.get("/users/me", headers=auth)).json()["id"])
    assert user_id.hex not in opaque  # it names nobody
    assert str(user_id) not in opaque

    answer = await client.post(
        "/mfa/challenge",
        json={
            "challenge_token": challenge_body["challenge_token"],
            "code": totp_code(secret, clock),
        },
    )
    assert answer.status_code == 200, answer.text
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "mfa", "otp"]
    assert claims["auth_time"] == int(clock.time())
    assert (await client.get("/users/me", headers=bearer(answer.json()["access_token"]))).json()[
        "mfa_enabled"
    ] is True


async def test_after_activation_the_secret_is_never_served(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    auth = bearer((await mfa_login(client, user, clock))["access_token"])  # recent, with mfa
    again = await client.post("/mfa/totp/setup", headers=auth)
    assert again.status_code == 409
    assert again.json()["code"] == "totp_already_enabled"
    for path in ("/mfa/totp/qr.png", "/mfa/totp/qr.svg"):
        assert (await client.get(path, headers=auth)).status_code == 404
    answers = [again, await client.get("/mfa", headers=auth)]
    answers.append(await client.get("/users/me", headers=auth))
    for answer in answers:
        assert user.secret not in answer.text


async def test_setup_again_replaces_the_pending_secret(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, tokens = await registered_login(client)
    auth = bearer(tokens["access_token"])
    first = (await client.post("/mfa/totp/setup", headers=auth)).json()["secret"]
    second = (await client.post("/mfa/totp/setup", headers=auth)).json()["secret"]
    assert first != second
    stale = await client.post(
        "/mfa/totp/confirm", headers=auth, json={"code": totp_code(first, clock)}
    )
    assert stale.status_code == 401
    assert stale.json()["code"] == "invalid_code"
    fresh = await client.post(
        "/mfa/totp/confirm", headers=auth, json={"code": totp_code(second, clock)}
    )
    assert fresh.status_code == 200


async def test_confirm_without_pending_setup_is_400(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.post(
        "/mfa/totp/confirm", headers=bearer(tokens["access_token"]), json={"code": "123456"}
    )
    assert r.status_code == 400
    assert r.json()["code"] == "totp_not_pending"
    qr = await client.get("/mfa/totp/qr.png", headers=bearer(tokens["access_token"]))
    assert qr.status_code == 404


async def test_concurrent_confirmations_hand_out_one_set_of_backup_codes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A double-click on "confirm": one request enables TOTP and shows the backup codes; the
    others are refused. Two successes would each show codes, and only the last set would
    work."""
    email, tokens = await registered_login(client)
    auth = bearer(tokens["access_token"])
    secret = (await client.post("/mfa/totp/setup", headers=auth)).json()["secret"]
    code = totp_code(secret, clock)
    answers = await asyncio.gather(
        *(client.post("/mfa/totp/confirm", headers=auth, json={"code": code}) for _ in range(5))
    )
    statuses = sorted(a.status_code for a in answers)
    # The others find nothing pending (400), or, run after the winner (SQLite serialises),
    # find that a password-only authentication is no longer recent enough for a user with MFA.
    assert statuses.count(200) == 1, [a.text for a in answers]
    assert set(statuses) <= {200, 400, 401}, [a.text for a in answers]
    codes = next(a.json()["backup_codes"] for a in answers if a.status_code == 200)
    status = (await client.get("/mfa", headers=auth)).json()
    assert status["backup_codes"] == {"remaining": 10}
    token = await challenge(client, email)
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "backup_code": codes[0]}
    )
    assert r.status_code == 200, r.text


async def test_mfa_routes_need_an_access_token(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/mfa"),
        ("POST", "/mfa/totp/setup"),
        ("GET", "/mfa/totp/qr.png"),
        ("POST", "/mfa/step-up"),
    ):
        r = await client.request(method, path, json={"code": "123456"})
        assert r.status_code == 401, path


async def test_enabling_mfa_ends_other_sessions(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    email, tokens = await registered_login(client)
    other = await login(client, email)
    auth = bearer(tokens["access_token"])
    secret = (await client.post("/mfa/totp/setup", headers=auth)).json()["secret"]
    await client.post("/mfa/totp/confirm", headers=auth, json={"code": totp_code(secret, clock)})
    assert (await client.get("/users/me", headers=auth)).status_code == 200
    assert (await client.get("/users/me", headers=bearer(other["access_token"]))).status_code == 401
    stale = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert stale.status_code == 401
    clock.advance(30)
    assert await challenge(client, email)
