"""Redis Cluster (SPEC §4: counters keyed so a cluster can shard them).

Every Redis step keeps to one hash slot: the flows that touch Redis run against the single
server while MONITOR lists every command and the keys each script was given, and against a
real cluster, where a cross-slot step fails. A cluster that loses a shard answers 503 (never
500, never a token), and serves again once the shard is back, without a restart; a failover
moves scripts to a node that never loaded them, and nothing fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import pkgutil
import re
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

import mfa_service
from mfa_service.config import Settings
from mfa_service.redis_keys import UserKeys, deny_key, passkey_key
from mfa_service.secretbox import generate_data_key
from tests import redis_cluster
from tests.conftest import CLUSTER_BACKEND
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    fallback,
    login,
    mfa_user,
    new_email,
    postgres_database,
    register,
    registered_login,
    running_app,
    settings_for,
    totp_code,
)
from tests.webauthn.authenticator import SoftAuthenticator, tamper_signature
from tests.webauthn.flows import ORIGIN, key_login, key_user, passkey_login, passkey_options

INTROSPECTION = "flows:a-secret-for-the-redis-flow-tests-only"

# --- Every Redis step of the service ---------------------------------------------------------


async def every_redis_step(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """The requests that send Redis something, each answered as it should be: limits (reserve,
    settle), challenges (create, begin, finish, void), WebAuthn challenges (put, take), the
    deny list (logout, checked by every bearer route and by introspection)."""
    email, tokens = await registered_login(client)
    wrong = await client.post("/auth/login", json={"email": email, "password": "not it at all"})
    assert wrong.status_code == 401, wrong.text
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    tokens = r.json()
    reauth = await client.post(
        "/auth/reauthenticate", headers=bearer(tokens["access_token"]), json={"password": PASSWORD}
    )
    assert reauth.status_code == 200, reauth.text
    client_id, secret = INTROSPECTION.split(":")
    seen = await client.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
    )
    assert seen.json()["active"] is True, seen.text
    assert (await client.post("/auth/logout", headers=bearer(tokens["access_token"]))).is_success
    me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 401, me.text

    # TOTP: enrolment voids pending challenges; a wrong code, the right one, a step-up.
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    r = await client.post("/mfa/challenge", json={"challenge_token": token, "code": "000000"})
    assert r.status_code == 401, r.text
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 200, r.text
    clock.advance(30)
    r = await client.post(
        "/mfa/step-up",
        headers=bearer(r.json()["access_token"]),
        json={"code": totp_code(user.secret, clock)},
    )
    assert r.status_code == 200, r.text
    token = await challenge(client, user.email)
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "backup_code": user.backup_codes[0]}
    )
    assert r.status_code == 200, r.text

    # WebAuthn: a security key (registration, then a login with it), a passkey login, a forgery.
    key = await key_user(client)
    await key_login(client, key)
    device = SoftAuthenticator(origin=ORIGIN)
    await key_user(client, device, passkey=True)
    r = await passkey_login(client, device.get(await passkey_options(client)))
    assert r.status_code == 200, r.text
    r = await passkey_login(client, tamper_signature(device.get(await passkey_options(client))))
    assert r.status_code == 401, r.text


def flow_settings(backend: Backend) -> Settings:
    return settings_for(backend, introspection_clients=INTROSPECTION)


# --- The keys each Redis command is given, from MONITOR --------------------------------------

_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LINE = re.compile(r"^\d+\.\d+ \[\d+ (?P<client>[^\]]+)\] (?P<args>.*)$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def _unescape(text: str) -> str:
    """MONITOR quotes arguments like sdscatrepr: \\xHH and the C escapes."""
    return re.sub(
        r"\\(x[0-9a-fA-F]{2}|.)",
        lambda m: chr(int(m[1][1:], 16)) if m[1][0] == "x" else _ESCAPES.get(m[1], m[1]),
        text,
    )


@dataclass
class Sent:
    """One command a client sent, the keys it names, and (for a script) the commands it ran."""

    client: str
    args: list[str]
    keys: list[str]
    inner: list[Sent] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.args[0].upper()


async def _keys_of(redis: Redis, args: list[str]) -> list[str]:
    """The keys of a command, as Redis itself finds them (COMMAND GETKEYS)."""
    try:
        keys = await redis.command_getkeys(*args)
    except ResponseError:  # a command without keys
        return []
    return [k.decode() if isinstance(k, bytes) else str(k) for k in keys]


@asynccontextmanager
async def monitored(url: str) -> AsyncIterator[list[str]]:
    """The raw MONITOR lines of everything the server is sent meanwhile (redis-py's own
    parser joins the arguments with spaces, so their bounds are read here)."""
    redis = Redis.from_url(url)
    lines: list[str] = []
    marker = f"end-of-monitoring-{uuid.uuid4().hex}"
    try:
        async with redis.monitor() as monitor:
            connection = monitor.connection
            assert connection is not None

            async def read() -> None:
                while True:
                    line = await connection.read_response()
                    text = line.decode() if isinstance(line, bytes) else str(line)
                    if marker in text:
                        return
                    lines.append(text)

            reader = asyncio.create_task(read())
            try:
                yield lines
                await redis.echo(marker)
                await asyncio.wait_for(reader, 30)
            finally:
                reader.cancel()
    finally:
        await redis.aclose()


async def commands_of(url: str, lines: list[str], prefix: str) -> list[Sent]:
    """The commands that named our prefix's keys; a script's own calls (MONITOR shows them
    right after it, as client `lua`) are kept with it. Other clients' lines are skipped."""
    redis = Redis.from_url(url)
    sent: list[Sent] = []
    last: Sent | None = None  # our script whose calls may follow
    try:
        for line in lines:
            match = _LINE.match(line)
            if match is None:
                continue
            if match["client"] == "lua":
                if last is not None:
                    args = [_unescape(a) for a in _ARG.findall(match["args"])]
                    last.inner.append(Sent("lua", args, await _keys_of(redis, args)))
                continue
            last = None
            if prefix not in line:
                continue
            args = [_unescape(a) for a in _ARG.findall(match["args"])]
            command = Sent(match["client"], args, await _keys_of(redis, args))
            if any(key.startswith(prefix) for key in command.keys):
                sent.append(command)
                if command.name in ("EVAL", "EVALSHA"):
                    last = command
    finally:
        await redis.aclose()
    return sent


def service_scripts() -> dict[str, str]:
    """Every Lua script of the service (its text, by its name): the module-level strings that
    call Redis and are not a part of another (the shared `limits.attempts.LIB`)."""
    found: dict[str, str] = {}
    for module in pkgutil.walk_packages(mfa_service.__path__, "mfa_service."):
        if module.name.startswith("mfa_service.alembic"):
            continue  # migration scripts run on import
        for name, value in vars(importlib.import_module(module.name)).items():
            if name.isupper() and isinstance(value, str) and "redis.call(" in value:
                found[value] = f"{module.name}.{name}"
    return {
        name: text
        for text, name in found.items()
        if not any(text != other and text in other for other in found)
    }


def slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


async def test_every_redis_step_keeps_to_one_slot(redis_url: str | None, tmp_path: Path) -> None:
    """Each command (a script or a plain one; no MULTI) names keys of one slot, and a script
    touches only the keys it was given: so each runs on a cluster as it does here."""
    if redis_url is None:
        pytest.skip("MONITOR needs a Redis server (the emulation was announced)")
    database = f"sqlite+aiosqlite:///{tmp_path / 'mfa.db'}"
    backend = Backend("sqlite", database, redis_url, tmp_path, generate_data_key())
    settings = flow_settings(backend)
    clock = FakeClock()
    scripts = {_sha(text): name for name, text in service_scripts().items()}
    # Loaded first: an EVALSHA refused with NOSCRIPT (then sent again by EVAL) runs nothing.
    await load_scripts(redis_url)
    async with running_app(settings, clock) as client, monitored(redis_url) as lines:
        await every_redis_step(client, clock)
    sent = await commands_of(redis_url, lines, settings.redis_prefix)

    run: set[str] = set()
    for command in sent:
        where = f"{command.name} {command.keys}"
        assert len(slots(command.keys)) == 1, f"keys of several slots: {where}"
        if command.name in ("EVAL", "EVALSHA"):
            sha = command.args[1] if command.name == "EVALSHA" else _sha(command.args[1])
            assert sha in scripts, f"a script that is not the service's: {where}"
            run.add(scripts[sha])
            assert command.inner, f"no command of the script was seen: {where}"
            touched = {key for inner in command.inner for key in inner.keys}
            assert touched <= set(command.keys), f"{scripts[sha]} touched {touched}: {where}"
    # Every script the service has was exercised above.
    assert run == set(scripts.values()), sorted(set(scripts.values()) - run)
    # The plain commands: WebAuthn challenges and the deny list.
    assert {c.name for c in sent} >= {"SET", "GETDEL", "EXISTS"}
    # No transaction: a MULTI block would have to keep to one slot too.
    ours = {c.client for c in sent}
    assert not [line for line in lines if _client_of(line) in ours and '] "MULTI"' in line]


def _client_of(line: str) -> str | None:
    match = _LINE.match(line)
    return match["client"] if match else None


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


async def load_scripts(url: str) -> None:
    redis = Redis.from_url(url)
    try:
        for text in service_scripts().values():
            await redis.script_load(text)
    finally:
        await redis.aclose()


def test_a_users_keys_share_one_slot() -> None:
    """The key builders: whatever a script is given of one user, or one passkey login, or one
    token's logout, lies in one slot."""
    for _ in range(50):
        keys = UserKeys("mfa:", uuid.uuid4())
        named = [
            keys.factor,
            keys.challenge_generation,
            keys.challenge("ab" * 32),
            keys.webauthn("challenge", "cd" * 32),
            keys.webauthn("step_up", "ef" * 32),
            keys.webauthn("registration", "01" * 32),
        ]
        assert len(slots(named)) == 1, named
    # The other keys name one thing each, spread over the slots by their tag.
    assert passkey_key("mfa:", "ab" * 32).endswith("{passkey:" + "ab" * 32 + "}")
    assert len(slots([passkey_key("mfa:", f"{i:064x}") for i in range(50)])) > 1
    assert len(slots([deny_key("mfa:", f"jti-{i}") for i in range(50)])) > 1


# --- The flows on a real cluster ---------------------------------------------------------------


@pytest.mark.redis_cluster(only=True)
async def test_every_redis_step_runs_on_a_cluster(backend: Backend, clock: FakeClock) -> None:
    """A step whose keys spanned slots would fail here (CROSSSLOT, or redis-py refusing it)."""
    assert backend.name == CLUSTER_BACKEND
    async with running_app(flow_settings(backend), clock) as client:
        await every_redis_step(client, clock)
        assert (await client.get("/readyz")).json() == {"status": "ready"}


# --- A cluster of the test's own, to break -----------------------------------------------------


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[redis_cluster.LocalCluster]:
    if not redis_cluster.available():
        fallback("no redis-server or redis-cli binary: the Redis Cluster fault tests are skipped")
        pytest.skip("no redis-server or redis-cli binary")
    with redis_cluster.local_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def faulty_backend(
    private_cluster: redis_cluster.LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    with postgres_database() as url:
        if url is None:
            fallback("MFA_TEST_DATABASE_URL is not set: the Redis Cluster fault tests are skipped")
            pytest.skip("MFA_TEST_DATABASE_URL is not set")
        data_dir = tmp_path_factory.mktemp("data-faulty-cluster")
        yield Backend(CLUSTER_BACKEND, url, private_cluster.url, data_dir, generate_data_key())


def shard_of(cluster: redis_cluster.LocalCluster, keys: UserKeys) -> redis_cluster.Node:
    return cluster.primary_for_key(keys.factor)


async def user_keys_of(client: httpx.AsyncClient, token: str) -> UserKeys:
    me = await client.get("/users/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    return UserKeys("", uuid.UUID(me.json()["id"]))


@pytest.mark.redis_cluster
async def test_a_failover_moves_scripts_to_a_node_that_never_loaded_them(
    private_cluster: redis_cluster.LocalCluster, faulty_backend: Backend
) -> None:
    """CLUSTER FAILOVER on the replica of a user's shard: the new primary has no script cached
    (its SCRIPT FLUSH makes sure). The same app keeps serving that user, loading each script
    on the node that answers."""
    clock = FakeClock()
    settings = settings_for(faulty_backend)
    async with running_app(settings, clock) as client:
        user = await mfa_user(client, clock)
        keys = await user_keys_of(client, user.access_token)
        primary = private_cluster.primary_for_key(settings.redis_prefix + keys.factor)
        replica = private_cluster.replica_of(primary)
        await asyncio.to_thread(private_cluster.failover, replica)
        flushed = replica.client()
        try:
            flushed.script_flush()
        finally:
            flushed.close()
        assert private_cluster.primary_for_key(settings.redis_prefix + keys.factor) is replica

        token = await challenge(client, user.email)
        r = await client.post("/mfa/challenge", json={"challenge_token": token, "code": "000000"})
        assert r.status_code == 401, r.text
        r = await client.post(
            "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
        )
        assert r.status_code == 200, r.text
        assert (await client.get("/readyz")).status_code == 200


@pytest.mark.redis_cluster
async def test_a_lost_shard_answers_503_then_serves_again(
    private_cluster: redis_cluster.LocalCluster, faulty_backend: Backend
) -> None:
    """A primary and its replica die: the cluster is down (CLUSTERDOWN on every node once they
    agree). Every Redis-backed request answers 503 problem+json, never 500, never a token;
    readiness says 503, liveness 200. The shard restarts (empty: Redis holds only what may be
    lost): the same app serves again, no restart."""
    clock = FakeClock()
    settings = settings_for(faulty_backend)
    async with running_app(settings, clock) as client:
        user = await mfa_user(client, clock)
        plain = new_email()
        await register(client, plain)
        keys = await user_keys_of(client, user.access_token)
        primary = private_cluster.primary_for_key(settings.redis_prefix + keys.factor)
        replica = private_cluster.replica_of(primary)
        primary.kill()
        replica.kill()
        try:
            # First the requests that touch its slots (the user's challenge; readiness pings
            # every primary) fail: a refused connection.
            await assert_refused(
                client,
                client.post("/auth/login", json={"email": user.email, "password": PASSWORD}),
                client.get("/readyz"),
            )
            # Once the other nodes mark the shard failed, every request (CLUSTERDOWN).
            await asyncio.to_thread(wait_for_state, private_cluster, "fail")
            await assert_refused(
                client,
                client.post("/auth/login", json={"email": user.email, "password": PASSWORD}),
                client.post("/auth/login", json={"email": plain, "password": PASSWORD}),
                client.get("/users/me", headers=bearer(user.access_token)),
                client.post("/auth/register", json={"email": new_email(), "password": PASSWORD}),
                client.get("/readyz"),
            )
        finally:
            primary.start()
            replica.start()
        await asyncio.to_thread(private_cluster.wait_until_ok, 60)
        # Its data is gone (challenges, counters): a new login starts over, and works.
        token = await challenge(client, user.email)
        r = await client.post(
            "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
        )
        assert r.status_code == 200, r.text
        assert (await login(client, plain))["status"] == "authenticated"
        assert (await client.get("/readyz")).status_code == 200


@pytest.mark.redis_cluster
async def test_a_stalled_primary_answers_within_seconds(
    private_cluster: redis_cluster.LocalCluster, faulty_backend: Backend
) -> None:
    """SIGSTOP on the primary of a user's shard: its socket stays open and silent. A request
    on its slots answers within the short timeouts (503, or 200 once the replica took over
    and the client found it), never hangs and never 500s; once the node is back, the same app
    serves the user."""
    clock = FakeClock()
    settings = settings_for(faulty_backend, redis_timeout=2)  # the production default
    async with running_app(settings, clock) as client:
        user = await mfa_user(client, clock)
        keys = await user_keys_of(client, user.access_token)
        primary = private_cluster.primary_for_key(settings.redis_prefix + keys.factor)
        primary.pause()
        try:
            started = time.monotonic()
            r = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
            elapsed = time.monotonic() - started
            assert r.status_code in (200, 503), r.text
            assert elapsed < 10, elapsed
            if r.status_code == 503:
                assert r.json()["code"] == "service_unavailable"
            else:
                assert r.json()["status"] == "mfa_required"
        finally:
            primary.resume()
        await asyncio.to_thread(private_cluster.wait_until_ok, 60)
        token = await challenge(client, user.email)
        r = await client.post(
            "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
        )
        assert r.status_code == 200, r.text


def wait_for_state(cluster: redis_cluster.LocalCluster, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while {cluster.state(node) for node in cluster.running()} != {state}:
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster is not {state} after {timeout} s")
        time.sleep(0.1)


async def assert_refused(
    client: httpx.AsyncClient, *requests: Coroutine[Any, Any, httpx.Response]
) -> None:
    """Each request answers 503 problem+json, with no token; liveness stays 200."""
    for request in requests:
        r = await request
        where = (r.request.method, r.request.url.path, r.status_code, r.text)
        assert r.status_code == 503, where
        assert r.headers["content-type"] == "application/problem+json", where
        assert r.json()["code"] == "service_unavailable", where
        assert not {"access_token", "challenge_token"} & set(r.json()), where
    assert (await client.get("/healthz")).status_code == 200
