"""Test plumbing: real Redis and databases, an app per configuration, a movable clock."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from mfa_service import migrations
from mfa_service.app import create_app
from mfa_service.config import Settings
from mfa_service.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from mfa_service.redis_client import connect as connect_redis
from mfa_service.redis_url import is_cluster

REQUIRE_SERVICES = os.environ.get("MFA_TEST_REQUIRE_SERVICES") == "1"
PASSWORD = "correct horse battery staple"


class FakeClock:
    """Frozen time that the test moves; never sleeps. It starts 10 s into the latest TOTP
    step that is not in the future, so a test is never split by a step boundary it did not
    ask for, and tokens are never from the future for an outside verifier."""

    def __init__(self) -> None:
        self.start = ((int(time.time()) - 10) // 30) * 30 + 10.0
        self.offset = 0.0

    def time(self) -> float:
        return self.start + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def fallback(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"MFA_TEST_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    warnings.warn(reason, stacklevel=2)


def require_shared_redis(backend: Backend) -> None:
    """For tests that run several apps against one Redis: the in-process emulation gives each
    app its own, so they cannot run on it."""
    if backend.redis_url is None:
        fallback("no Redis server: a test of apps sharing one Redis is skipped")
        pytest.skip("several apps need one real Redis server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process the tests own (so they may stop and restart it)."""

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mfa-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextmanager
def redis_server_url() -> Iterator[str | None]:
    """MFA_TEST_REDIS_URL, else a redis-server of our own, else the in-process emulation."""
    if url := os.environ.get("MFA_TEST_REDIS_URL"):
        yield url
        return
    if shutil.which("redis-server"):
        server = RedisServer()
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
        return
    fallback("no MFA_TEST_REDIS_URL and no redis-server binary: using the in-process emulation")
    yield None


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh database on the server named by MFA_TEST_DATABASE_URL, dropped afterwards."""
    base = os.environ.get("MFA_TEST_DATABASE_URL")
    if not base:
        yield None
        return
    url = make_url(base)
    name = f"mfa_test_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        database_url = url.set(database=name).render_as_string(hide_password=False)
        asyncio.run(migrate(database_url))
        yield database_url
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def migrate(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str | None
    data_dir: Path
    data_key: str


def settings_for(backend: Backend, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "redis_prefix": f"mfa-test-{uuid.uuid4().hex[:12]}:",
        "data_dir": backend.data_dir,
        "data_key": backend.data_key,
        "issuer": "http://mfa.test",
        "audience": "mfa-test-clients",
        # Bursts in tests (50 concurrent answers on a pool of 20) queue for a connection; on a
        # loaded CI machine that wait can pass the 5 s production default and answer 503. What
        # they test is the limits, not overload (tests/test_overload.py sets its own).
        "database_pool_timeout": 60,
        # Likewise a Redis reply on a machine loaded past its cores can take seconds; the
        # tests of a stalled Redis set their own.
        "redis_timeout": 15,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def serving(
    settings: Settings, clock: FakeClock | None = None, client_ip: str = "203.0.113.7"
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The ASGI app with its lifespan, behind an httpx client; Redis keys cleaned afterwards.
    The app too, for tests that observe its collaborators (`app.state.services`)."""
    app = create_app(settings, clock or FakeClock())
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    before = asyncio.all_tasks()
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://mfa.test") as c:
                yield app, c
        # A stopped service leaves nothing running: a task that outlives the shutdown (an
        # outbox delivery once did) writes after the stop or hangs the event loop's close.
        left = [t for t in asyncio.all_tasks() - before - {asyncio.current_task()} if not t.done()]
        assert not left, f"tasks still running after the service stopped: {left}"
    finally:
        await clean_redis(settings)


@asynccontextmanager
async def running_app(
    settings: Settings, clock: FakeClock | None = None, client_ip: str = "203.0.113.7"
) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app with its lifespan, behind an httpx client; Redis keys cleaned afterwards."""
    async with serving(settings, clock, client_ip) as (_, client):
        yield client


async def clean_redis(settings: Settings) -> None:
    """Delete the deployment's keys: on a cluster, SCAN visits every primary and DEL is sent
    per slot."""
    if settings.redis_url is None:
        return
    redis = connect_redis(settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}*", count=500)]
        if keys:
            await redis.delete(*keys)
    except REDIS_UNAVAILABLE:
        pass  # a test that pointed the app at an unreachable Redis left nothing behind
    finally:
        await redis.aclose()


def unreachable_redis_url(backend: Backend) -> str:
    """A Redis URL of the backend's kind (one server or a cluster) where nothing listens."""
    if backend.redis_url is not None and is_cluster(backend.redis_url):
        return f"redis+cluster://127.0.0.1:{free_port()}"
    return f"redis://127.0.0.1:{free_port()}/0"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def register(
    client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD
) -> dict[str, Any]:
    email = email or new_email()
    r = await client.post("/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = await client.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def totp_code(secret: str, clock: FakeClock, steps: int = 0) -> str:
    """The authenticator app's code at the clock's time, `steps` periods away."""
    return pyotp.TOTP(secret).at(clock.time() + 30 * steps)


@dataclass
class MfaUser:
    email: str
    secret: str
    backup_codes: list[str]
    access_token: str


async def mfa_user(client: httpx.AsyncClient, clock: FakeClock) -> MfaUser:
    """A registered user with TOTP enrolled and confirmed (the clock moves one step on, so
    the enrolment code's step is behind it)."""
    email, tokens = await registered_login(client)
    setup = await client.post("/mfa/totp/setup", headers=bearer(tokens["access_token"]))
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    confirm = await client.post(
        "/mfa/totp/confirm",
        headers=bearer(tokens["access_token"]),
        json={"code": totp_code(secret, clock)},
    )
    assert confirm.status_code == 200, confirm.text
    clock.advance(30)
    return MfaUser(email, secret, confirm.json()["backup_codes"], tokens["access_token"])


async def mfa_login(client: httpx.AsyncClient, user: MfaUser, clock: FakeClock) -> dict[str, Any]:
    """Log in with the password and the current TOTP code (which that uses up)."""
    token = await challenge(client, user.email)
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def challenge(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    body = await login(client, email, password)
    assert body["status"] == "mfa_required", body
    token: str = body["challenge_token"]
    return token


async def registered_login(client: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    email = new_email()
    await register(client, email)
    return email, await login(client, email)


def mfa_service_command() -> str:
    """The installed console script, from the same environment as the tests."""
    script = Path(sys.executable).with_name("mfa-service")
    if script.exists():
        return str(script)
    found = shutil.which("mfa-service")
    assert found is not None, "the mfa-service console script is not installed"
    return found


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    return subprocess.run(
        [mfa_service_command(), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_command(args: Sequence[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """A tool's result (npm, npx, node); on timeout its whole process group is killed and the
    test fails. npm is kept quiet and off the network for its notices."""
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
    }
    with subprocess.Popen(
        list(args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"`{' '.join(args)}` did not finish within {timeout:.0f} s", pytrace=False)
        return subprocess.CompletedProcess(list(args), process.returncode, stdout, stderr)


def command_must_succeed(
    args: Sequence[str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    result = run_command(args, cwd, timeout)
    assert result.returncode == 0, (
        f"`{' '.join(args)}` exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a CLI command needs to act on the same stores as `settings`' app."""
    env = {
        "MFA_DATABASE_URL": settings.effective_database_url,
        "MFA_REDIS_PREFIX": settings.redis_prefix,
        "MFA_DATA_DIR": str(settings.data_dir),
        "MFA_ISSUER": settings.issuer,
    }
    if settings.data_key is not None:
        env["MFA_DATA_KEY"] = settings.data_key.get_secret_value()
    if settings.redis_url is not None:
        env["MFA_REDIS_URL"] = settings.redis_url
    return {**env, **extra}


async def cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The command in its own process, off the event loop, while the test's app serves.

    `run_cli` would block the loop: an app request or outbox delivery caught holding
    SQLite's write lock would keep it until the command gave up waiting for that lock.
    """
    return await asyncio.to_thread(run_cli, *args, **cli_env(settings, **extra))
