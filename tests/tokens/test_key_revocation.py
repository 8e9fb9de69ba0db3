"""`mfa-service keys revoke KID` (SPEC 3): a new key signs at once and, within 10 s on every
instance, KID leaves the JWKS and every token it signed is refused, by our endpoints and by
introspection. No key older than the revoked one ever takes over the signing."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import jwt
import pytest

from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from mfa_service.tokens.keys import SIGN_AFTER_SECONDS
from tests.serve import serving
from tests.support import (
    Backend,
    FakeClock,
    bearer,
    clean_redis,
    free_port,
    login,
    new_email,
    register,
    registered_login,
    running_app,
    settings_for,
)

CLIENT_ID = "resource-server"
CLIENT_SECRET = secrets.token_urlsafe(24)
INTROSPECTION_CLIENTS = f"{CLIENT_ID}:{CLIENT_SECRET}"
REVOKED_WITHIN = 10.0  # SPEC 3
# The service meets the SPEC's 10 s by construction: no instance verifies or publishes with
# keys read longer ago than that. The poll below observes it from outside, and its own rounds
# (four requests each, against two servers sharing two cores with the test) can run late on
# a loaded machine: 5 s of room for the test's own lateness, none for the service's.
POLL_SECONDS = REVOKED_WITHIN + 5


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


async def keys_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m mfa_service.cli keys …` with exactly the MFA_ settings in `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mfa_service.cli", "keys", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def new_key(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.split("new active signing key ")[1].split()[0]


async def published(client: httpx.AsyncClient) -> set[str]:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    return {k["kid"] for k in r.json()["keys"]}


async def me(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/users/me", headers=bearer(token))).status_code


async def introspected(client: httpx.AsyncClient, token: str) -> bool:
    r = await client.post(
        "/oauth/introspect",
        data={"token": token},
        auth=httpx.BasicAuth(CLIENT_ID, CLIENT_SECRET),
    )
    assert r.status_code == 200, r.text
    active: bool = r.json()["active"]
    return active


async def accepted(client: httpx.AsyncClient, token: str) -> bool:
    """Accepted by our endpoints and by introspection alike (and refused by both alike)."""
    status, active = await me(client, token), await introspected(client, token)
    assert (status, active) in {(200, True), (401, False)}, (status, active)
    return active


# --- one instance, its clock moved by the test -------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_backend(request: pytest.FixtureRequest, redis_url: str | None, tmp_path: Path) -> Backend:
    """A database of the test's own: its keys are exactly the ones the test made."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'mfa.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    return Backend(request.param, url, redis_url, tmp_path, generate_data_key())


async def test_revoked_keys_are_refused_unpublished_and_replaced_by_no_older_key(
    fresh_backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(fresh_backend, introspection_clients=INTROSPECTION_CLIENTS)
    env = {
        "MFA_DATABASE_URL": fresh_backend.database_url,
        "MFA_DATA_KEY": fresh_backend.data_key,
        "MFA_DATA_DIR": str(fresh_backend.data_dir),
    }
    async with running_app(settings, clock) as client:
        email, tokens = await registered_login(client)
        t0 = tokens["access_token"]
        k0 = kid_of(t0)  # the first key, made at startup

        # A rotation makes k1; revoked before it signed anything. Its replacement k2 signs at
        # once, although young: not k0, the key k1 replaced, though k0 is still published.
        k1 = new_key(await keys_cli(env, "rotate"))
        revoked_at = time.time()
        k2 = new_key(await keys_cli(env, "revoke", k1))
        clock.advance(REVOKED_WITHIN)
        # (The premise: k2 is young, the age at which a rotated key lets its predecessor sign.)
        assert clock.time() < revoked_at + SIGN_AFTER_SECONDS
        t2 = (await login(client, email))["access_token"]
        assert kid_of(t2) == k2
        assert await published(client) == {k0, k2}
        assert await accepted(client, t0)  # k0 was not revoked: its tokens live on

        # Revoking k0 (retired, still published) needs no new key: k2 signs on.
        revoked = await keys_cli(env, "revoke", k0)
        assert revoked.returncode == 0, revoked.stderr
        assert "new active signing key" not in revoked.stdout
        clock.advance(REVOKED_WITHIN)
        assert not await accepted(client, t0)
        assert await accepted(client, t2)
        assert await published(client) == {k2}

        # Revoking the key that signs: a new one signs at once, the old one's tokens refused.
        k3 = new_key(await keys_cli(env, "revoke", k2))
        clock.advance(REVOKED_WITHIN)
        assert not await accepted(client, t2)
        assert await published(client) == {k3}
        t3 = (await login(client, email))["access_token"]
        assert kid_of(t3) == k3
        assert await accepted(client, t3)


# --- the command line's answers ----------------------------------------------------------------


async def test_keys_revoke_explains_unknown_and_repeated_kids(tmp_path: Path) -> None:
    env = {
        "MFA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}",
        "MFA_DATA_DIR": str(tmp_path),
        "MFA_DATA_KEY": generate_data_key(),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    upgraded = subprocess.run(
        [sys.executable, "-m", "mfa_service.cli", "db", "upgrade"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    kid = new_key(await keys_cli(env, "rotate"))

    unknown = await keys_cli(env, "revoke", "no-such-kid")
    assert unknown.returncode == 1
    assert "no signing key with kid 'no-such-kid'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert unknown.stdout == ""

    replacement = new_key(await keys_cli(env, "revoke", kid))
    again = await keys_cli(env, "revoke", kid)
    assert again.returncode == 0, again.stderr
    assert f"signing key {kid} was already revoked at " in again.stdout
    assert "new active signing key" not in again.stdout

    listed = await keys_cli(env, "list")
    assert listed.returncode == 0, listed.stderr
    states = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(states) == {kid, replacement}  # the repeat made no key
    assert " revoked " in states[kid]
    assert states[replacement].endswith(" active")


# --- two running instances, one database -------------------------------------------------------


@asynccontextmanager
async def instance(env: dict[str, str], log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """`mfa-service serve` (one worker) on a port of its own, until ready; then SIGTERM."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    async with serving({**base, **env}, port, log):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            yield client
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture
def live_env(
    fresh_postgres_url: str, redis_url: str | None, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """One deployment's settings: the database, Redis (a prefix of its own, cleaned after) and
    data key that both instances share."""
    if redis_url is None:
        pytest.skip("two instances need a real Redis server")
    prefix = f"mfa-revoke-{uuid.uuid4().hex[:8]}:"
    yield {
        "MFA_DATABASE_URL": fresh_postgres_url,
        "MFA_REDIS_URL": redis_url,
        "MFA_REDIS_PREFIX": prefix,
        "MFA_DATA_DIR": str(tmp_path),
        "MFA_DATA_KEY": generate_data_key(),
        "MFA_ISSUER": "http://mfa.test",
        "MFA_AUDIENCE": "mfa-live-clients",
        "MFA_INTROSPECTION_CLIENTS": INTROSPECTION_CLIENTS,
    }
    asyncio.run(clean_redis(Settings(redis_url=redis_url, redis_prefix=prefix)))


async def test_keys_revoke_reaches_every_running_instance_within_10_s(
    live_env: dict[str, str], tmp_path: Path
) -> None:
    # A first, alone: its start makes the deployment's first key, which B then finds.
    async with instance(live_env, tmp_path / "a.log") as a:
        async with instance(live_env, tmp_path / "b.log") as b:
            email = new_email()
            await register(a, email)
            old = (await login(a, email))["access_token"]
            old_kid = kid_of(old)
            for client in (a, b):
                assert old_kid in await published(client)
                assert await accepted(client, old)

            new_kid = new_key(await keys_cli(live_env, "revoke", old_kid))
            assert new_kid != old_kid
            revoked = time.monotonic()

            # The tokens first, with no JWKS request meanwhile (serving one reloads the keys
            # of the instance): verification must see the revocation by itself.
            state = {"A": False, "B": False}
            while not all(state.values()):
                if time.monotonic() - revoked > POLL_SECONDS:
                    pytest.fail(f"instances that still accept the revoked key's token: {state}")
                await asyncio.sleep(0.2)
                for name, client in (("A", a), ("B", b)):
                    status, active = await me(client, old), await introspected(client, old)
                    # The instance may reload its keys between the two requests: accepted
                    # then refused is the revocation arriving; refused then accepted is a bug,
                    # and so is accepting again once refused.
                    assert (status, active) != (401, True), name
                    assert not (state[name] and (status, active) != (401, False)), name
                    state[name] = not active
            for client in (a, b):
                assert old_kid not in await published(client)

            # Both read the keys after the revocation, so both have the new key too: a token
            # from either works on both at once.
            for first, second in ((a, b), (b, a)):
                token = (await login(first, email))["access_token"]
                assert kid_of(token) == new_kid
                assert await accepted(first, token)
                assert await accepted(second, token)
            for client in (a, b):
                assert not await accepted(client, old)
                assert await published(client) == {new_kid}
