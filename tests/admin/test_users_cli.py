"""`mfa-service users …`, `audit export` and `db prune` as an operator runs them: a separate
process with the same MFA_* settings, against a service that is running (the app in this
process, on the same database and Redis). Every effect is checked through the HTTP API."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from typing import Any

import httpx
import pytest

from mfa_service.config import Settings
from tests.mail.test_file_outbox import wait_for_file
from tests.recovery.smtp import TOKEN
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    cli,
    login,
    mfa_login,
    mfa_user,
    new_email,
    register,
    registered_login,
    require_shared_redis,
    run_cli,
    running_app,
    settings_for,
    totp_code,
)
from tests.webauthn.authenticator import SoftAuthenticator
from tests.webauthn.flows import ORIGIN, key_user, passkey_login, passkey_options


async def cli_json(settings: Settings, *args: str) -> dict[str, Any]:
    result = await cli(settings, *args, "--json")
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


async def events(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    r = await client.get("/users/me/events", headers=bearer(token), params={"limit": 100})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_disable_refuses_login_and_refresh_and_ends_sessions_until_enable(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        email, tokens = await registered_login(client)
        assert (await client.get("/users/me", headers=bearer(tokens["access_token"]))).is_success

        result = await cli_json(settings, "users", "disable", email.upper())
        assert result["action"] == "disable"
        assert result["sessions_revoked"] == 1
        assert result["already_disabled"] is False

        me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
        refresh = await client.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refresh.status_code == 401
        # The right password learns that the account is disabled; a wrong one learns nothing.
        right = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert right.status_code == 403
        assert right.headers["content-type"] == "application/problem+json"
        assert right.json()["code"] == "account_disabled"
        wrong = await client.post("/auth/login", json={"email": email, "password": "nope nope"})
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_credentials"

        again = await cli_json(settings, "users", "disable", email)
        assert again["already_disabled"] is True

        human = await cli(settings, "users", "enable", email)
        assert human.returncode == 0, human.stderr
        assert human.stdout.strip() == f"{email} enabled"
        back = await login(client, email)
        assert back["status"] == "authenticated"
        # Sessions ended by the disable stay ended.
        me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
        seen = {
            (e["type"], e["detail"].get("actor"))
            for e in await events(client, back["access_token"])
        }
        assert ("account.disabled", "cli") in seen
        assert ("account.enabled", "cli") in seen
        assert ("login.refused", None) in seen


async def test_disable_refuses_a_passkey_login(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        device = SoftAuthenticator(origin=ORIGIN)
        user = await key_user(client, device, passkey=True)
        await cli_json(settings, "users", "disable", user.email)
        r = await passkey_login(client, device.get(await passkey_options(client)))
        assert r.status_code == 403
        assert r.json()["code"] == "account_disabled"
        await cli_json(settings, "users", "enable", user.email)
        r = await passkey_login(client, device.get(await passkey_options(client)))
        assert r.status_code == 200, r.text


async def test_disable_refuses_a_challenge_in_flight(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        user = await mfa_user(client, clock)
        token = await challenge(client, user.email)
        await cli_json(settings, "users", "disable", user.email)
        r = await client.post(
            "/mfa/challenge",
            json={"challenge_token": token, "code": totp_code(user.secret, clock)},
        )
        assert r.status_code == 401
        assert r.json()["code"] == "challenge_expired"


@pytest.mark.redis_cluster  # the account's counters are found by SCAN on every primary
async def test_unlock_clears_the_factor_lock_and_password_limits_of_a_running_service(
    backend: Backend, clock: FakeClock
) -> None:
    require_shared_redis(backend)  # the CLI reaches the service's Redis, not its own emulation
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        user = await mfa_user(client, clock)
        for _ in range(10):
            token = await challenge(client, user.email)
            r = await client.post(
                "/mfa/challenge", json={"challenge_token": token, "code": "000000"}
            )
            assert r.status_code == 401
        token = await challenge(client, user.email)
        code = totp_code(user.secret, clock)
        locked = await client.post("/mfa/challenge", json={"challenge_token": token, "code": code})
        assert locked.status_code == 429
        for _ in range(10):
            r = await client.post(
                "/auth/login", json={"email": user.email, "password": "nope nope"}
            )
            assert r.status_code == 401
        r = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
        assert r.status_code == 429

        shown = await cli_json(settings, "users", "show", user.email)
        assert shown["factor_locked_until"] is not None

        result = await cli_json(settings, "users", "unlock", user.email)
        assert result["factor_counter"] is True
        assert result["password_counters"] == 2  # this (account, IP) pair, and all IPs

        session = await mfa_login(client, user, clock)
        assert session["status"] == "authenticated"
        types = {e["type"] for e in await events(client, session["access_token"])}
        assert "account.unlocked" in types


async def test_reset_mfa_removes_every_factor_and_ends_sessions(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        user = await mfa_user(client, clock)
        session = await mfa_login(client, user, clock)
        before = await cli_json(settings, "users", "show", user.email)
        assert before["mfa_enabled"] is True
        assert before["totp"] is True
        assert before["backup_codes_left"] == 10

        result = await cli_json(settings, "users", "reset-mfa", user.email)
        assert result["removed"] == {"totp": 1, "webauthn_credentials": 0, "backup_codes": 10}
        assert result["sessions_revoked"] >= 1

        for token in (user.access_token, session["access_token"]):
            assert (await client.get("/users/me", headers=bearer(token))).status_code == 401
        refresh = await client.post(
            "/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert refresh.status_code == 401
        # The password alone signs in now; the user enrolls again.
        again = await login(client, user.email)
        assert again["status"] == "authenticated"
        state = await client.get("/mfa", headers=bearer(again["access_token"]))
        assert state.json()["mfa_enabled"] is False
        assert state.json()["totp"]["enabled"] is False
        after = await cli_json(settings, "users", "show", user.email)
        assert (after["totp"], after["backup_codes_left"], after["mfa_enabled"]) == (
            False,
            0,
            False,
        )


async def test_revoke_sessions_ends_every_session(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        email, first = await registered_login(client)
        second = await login(client, email)
        human = await cli(settings, "users", "revoke-sessions", email)
        assert human.returncode == 0, human.stderr
        assert human.stdout.strip() == f"ended 2 session(s) of {email}"
        for tokens in (first, second):
            me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
            assert me.status_code == 401
            r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 401
        assert (await login(client, email))["status"] == "authenticated"


@pytest.mark.parametrize(
    "action", ["show", "unlock", "reset-mfa", "revoke-sessions", "disable", "enable"]
)
async def test_an_unknown_email_is_one_line_and_exit_1(
    backend: Backend, clock: FakeClock, action: str
) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock):
        for args in (
            ("users", action, "nobody@example.com"),
            ("audit", "export", "--user", "x@y.z"),
        ):
            result = await cli(settings, *args)
            assert result.returncode == 1, result.stderr
            assert result.stdout == ""
            assert result.stderr.startswith("mfa-service: no user with email"), result.stderr
            assert "Traceback" not in result.stderr


async def test_audit_export_writes_json_lines(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        email = new_email()
        await register(client, email)
        await login(client, email)
        other, _ = await registered_login(client)
        result = await cli(settings, "audit", "export", "--user", email)
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        # The export itself is an audit event, of that user (whose events were read).
        assert [e["type"] for e in lines] == ["login.succeeded", "audit.exported"]
        assert lines[1]["detail"] == {"actor": "cli"}
        assert lines[0]["email"] == email
        assert set(lines[0]) == {
            "id", "at", "type", "user_id", "email", "ip", "user_agent", "detail"
        }  # fmt: skip
        everyone = await cli(settings, "audit", "export")
        emails = {json.loads(line)["email"] for line in everyone.stdout.splitlines()}
        assert {email, other} <= emails
        future = await cli(settings, "audit", "export", "--since", "2999-01-01")
        assert future.returncode == 0
        assert future.stdout == ""
        bad = await cli(settings, "audit", "export", "--since", "yesterday")
        assert bad.returncode == 2
        assert "not an ISO 8601" in bad.stderr


async def test_db_prune_deletes_what_is_dead_and_keeps_what_lives(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend, device_token_days=1)
    mailbox = settings.data_dir / "outbox"  # no SMTP server: each mail an .eml file
    retention = {"MFA_AUDIT_RETENTION_DAYS": "2", "MFA_OUTBOX_RETENTION_DAYS": "2"}
    async with running_app(settings, clock) as client:
        email = new_email()
        clock.advance(-3 * 86400)  # three days ago: that session, device and events are old
        await register(client, email)
        old = await login(client, email)
        # A reset link of three days ago, long expired, and the mail's delivered outbox row.
        await client.post("/auth/password/forgot", json={"email": email})
        await wait_for_file(mailbox, email)
        clock.advance(3 * 86400)
        current = await login(client, email)
        prune = await cli(settings, "db", "prune", "--json", **retention)
        assert prune.returncode == 0, prune.stderr
        pruned = json.loads(prune.stdout)
        assert pruned["sessions"] >= 1
        assert pruned["refresh_tokens"] >= 1
        assert pruned["device_tokens"] >= 1
        assert pruned["account_tokens"] >= 1
        assert pruned["audit_events"] >= 1
        assert pruned["outbox"] >= 1
        # The live session works on; the old refresh token is gone (unknown, not reused).
        assert (await client.get("/users/me", headers=bearer(current["access_token"]))).is_success
        r = await client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert r.status_code == 401
        r = await client.post("/auth/refresh", json={"refresh_token": current["refresh_token"]})
        assert r.status_code == 200
        types = [e["type"] for e in await events(client, current["access_token"])]
        assert types == ["login.succeeded"]  # the one of three days ago is pruned
        # A link mailed now is kept, and works.
        shutil.rmtree(mailbox)
        await client.post("/auth/password/forgot", json={"email": email})
        _, mail = await wait_for_file(mailbox, email)
        again = await cli(settings, "db", "prune", "--json", **retention)
        assert again.returncode == 0, again.stderr
        body = mail.get_body(preferencelist=("plain",))
        assert body is not None
        link = TOKEN.search(body.get_content())
        assert link is not None
        reset = {"token": link.group(1), "new_password": "a brand new passphrase"}
        assert (await client.post("/auth/password/reset", json=reset)).status_code == 204
        human = await cli(settings, "db", "prune", **retention)
        assert human.returncode == 0, human.stderr
        assert human.stdout.startswith("pruned 0 session(s), 0 refresh token(s)")
        # The one just used, at least (the database is shared with other tests' links).
        assert re.search(r"\b[1-9]\d* link token\(s\)", human.stdout), human.stdout


async def test_db_prune_while_the_service_answers(backend: Backend, clock: FakeClock) -> None:
    """Requests racing the prune all answer as they would without it."""
    settings = settings_for(backend)
    async with running_app(settings, clock) as client:
        email = new_email()
        await register(client, email)
        clock.advance(-2 * 86400)
        for _ in range(15):
            await login(client, email)
        clock.advance(2 * 86400)
        live = [await login(client, email) for _ in range(6)]
        prune = asyncio.create_task(cli(settings, "db", "prune", "--json"))
        answers = []
        while not prune.done():
            batch = await asyncio.gather(
                *(client.get("/users/me", headers=bearer(t["access_token"])) for t in live)
            )
            answers += [r.status_code for r in batch]
            await asyncio.sleep(0.05)
        result = await prune
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["sessions"] >= 15
        assert answers
        assert set(answers) == {200}
        for tokens in live:
            r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 200


def test_the_operator_commands_have_help() -> None:
    for command in (
        ("users", "show"),
        ("users", "unlock"),
        ("users", "reset-mfa"),
        ("users", "revoke-sessions"),
        ("users", "disable"),
        ("users", "enable"),
        ("audit", "export"),
        ("db", "prune"),
    ):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, command
        assert result.stdout.startswith("usage: mfa-service " + " ".join(command))
    prune_help = run_cli("db", "prune", "--help").stdout
    assert "MFA_AUDIT_RETENTION_DAYS" in prune_help
    assert "MFA_OUTBOX_RETENTION_DAYS" in prune_help
    assert "--json" in run_cli("users", "disable", "--help").stdout
    usage = run_cli("users", "frobnicate", "a@b.c")
    assert usage.returncode == 2
    assert "invalid choice" in usage.stderr
