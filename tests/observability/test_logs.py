"""Logs as an operator collects them: a real server process with MFA_LOG_FORMAT=json, a whole
flow against it, every line parsed. No password, code, token, secret or full email in any
line; every request one line with its request id, route template, status and duration."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp

from mfa_service.observability.logs import formatter
from tests.serve import embedded_env, serving
from tests.support import PASSWORD, bearer, free_port, new_email

REQUEST_LINE_FIELDS = {"timestamp", "level", "logger", "message", "request_id", "route"}


async def post(client: httpx.AsyncClient, url: str, expect: int, **kwargs: Any) -> Any:
    r = await client.post(url, **kwargs)
    assert r.status_code == expect, r.text
    return r.json() if r.content else None


async def full_flow(client: httpx.AsyncClient) -> list[str]:
    """Register, log in, enroll TOTP, a TOTP challenge, a backup-code challenge, refresh,
    step-up, logout, a wrong password and a wrong code; every secret it saw."""
    email = new_email()
    secrets = [PASSWORD, email, "wrong horse battery staple"]
    await post(client, "/auth/register", 201, json={"email": email, "password": PASSWORD})
    first = await post(client, "/auth/login", 200, json={"email": email, "password": PASSWORD})
    access = first["access_token"]
    secrets += [access, first["refresh_token"], first["device_token"]]
    setup = await post(client, "/mfa/totp/setup", 200, headers=bearer(access))
    secret = setup["secret"]
    secrets += [secret, setup["otpauth_uri"]]
    now = time.time()
    totp = pyotp.TOTP(secret)
    code = totp.at(now)
    confirm = await post(
        client, "/mfa/totp/confirm", 200, headers=bearer(access), json={"code": code}
    )
    backup = confirm["backup_codes"]
    secrets += [code, *backup]
    login = await post(client, "/auth/login", 200, json={"email": email, "password": PASSWORD})
    token = login["challenge_token"]
    secrets.append(token)
    wrong = await client.post("/mfa/challenge", json={"challenge_token": token, "code": "000000"})
    assert wrong.status_code == 401
    next_code = totp.at(now + 30)  # the next step: the enrolment used this one
    secrets.append(next_code)
    session = await post(
        client, "/mfa/challenge", 200, json={"challenge_token": token, "code": next_code}
    )
    secrets += [session["access_token"], session["refresh_token"], session["device_token"]]
    login = await post(client, "/auth/login", 200, json={"email": email, "password": PASSWORD})
    secrets.append(login["challenge_token"])
    by_backup = await post(
        client,
        "/mfa/challenge",
        200,
        json={"challenge_token": login["challenge_token"], "backup_code": backup[0]},
    )
    secrets += [by_backup["access_token"], by_backup["refresh_token"]]
    refreshed = await post(
        client, "/auth/refresh", 200, json={"refresh_token": by_backup["refresh_token"]}
    )
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    stepped = await post(
        client,
        "/mfa/step-up",
        200,
        headers=bearer(refreshed["access_token"]),
        json={"backup_code": backup[1]},
    )
    secrets += [stepped["access_token"], stepped["refresh_token"]]
    await client.post(
        "/auth/login", json={"email": email, "password": "wrong horse battery staple"}
    )
    r = await client.post(
        "/auth/logout",
        headers=bearer(stepped["access_token"]),
        json={"refresh_token": stepped["refresh_token"]},
    )
    assert r.status_code == 204
    return secrets


async def test_json_logs_of_a_whole_flow_carry_no_secret(tmp_path: Path) -> None:
    port = free_port()
    env = embedded_env(tmp_path / "data", port) | {"MFA_LOG_FORMAT": "json"}
    log = tmp_path / "server.log"
    async with serving(env, port, log):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            secrets = await full_flow(client)
            given = await client.get("/healthz", headers={"X-Request-ID": "trace-4711.a:b"})
            assert given.headers["x-request-id"] == "trace-4711.a:b"
            bad = await client.get("/healthz", headers={"X-Request-ID": "no spaces\tor tabs"})
            made = bad.headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{32}", made)
            too_long = await client.get("/healthz", headers={"X-Request-ID": "a" * 200})
            assert too_long.headers["x-request-id"] != "a" * 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines, "no log lines"
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line), line
    requests = [line for line in lines if line["logger"] == "mfa_service.access"]
    # One line per request, none from uvicorn's access log.
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert len(requests) >= 17
    for line in requests:
        assert REQUEST_LINE_FIELDS <= set(line), line
        assert isinstance(line["status"], int)
        assert isinstance(line["duration_ms"], float | int)
    routes = {(line["route"], line["status"]) for line in requests}
    assert ("/mfa/challenge", 401) in routes
    assert ("/auth/refresh", 200) in routes
    assert {line["request_id"] for line in requests} >= {"trace-4711.a:b", made}
    text = log.read_text()
    for secret in secrets:
        if re.fullmatch(r"\d{6}", secret):  # a TOTP code: not as a number of its own
            assert not re.search(rf"(?<![\d.]){secret}(?!\d)", text), secret
        else:
            assert secret not in text, secret
            assert secret.lower() not in text.lower(), secret


def test_a_careless_log_line_is_redacted() -> None:
    """The last step of the chain catches what a log call should never have written."""
    email = "alice.liddell@example.org"
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    refresh = "Q" * 10 + "x_-" * 12
    record = logging.LogRecord(
        "mfa_service.test",
        logging.WARNING,
        __file__,
        1,
        "login for %s with Authorization: Bearer %s and refresh %s, backup 7k3qz-9wm2x",
        (email, jwt, refresh),
        None,
    )
    record.password = PASSWORD
    record.challenge_token = "abc"
    record.body = {"code": "123456", "nested": {"new_password": "x"}, "email": email}
    record.route = "/auth/login"
    try:
        raise ValueError(f"boom {refresh}")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(formatter("json").format(record))
    text = json.dumps(line)
    for secret in (email, jwt, refresh, PASSWORD, "123456", "7k3qz-9wm2x"):
        assert secret not in text
    assert "a***@example.org" in line["message"]
    assert line["password"] == "[redacted]"
    assert line["challenge_token"] == "[redacted]"
    assert line["body"]["code"] == "[redacted]"
    assert line["body"]["nested"]["new_password"] == "[redacted]"
    assert line["route"] == "/auth/login"
    assert "ValueError" in line["exception"]
