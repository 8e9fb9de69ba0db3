"""Against real servers: two uvicorn workers sharing the factor lock through Redis, and the
service failing closed while Redis or PostgreSQL is unreachable, then recovering by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy.engine import make_url

from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from tests.serve import serving
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    RedisServer,
    bearer,
    challenge,
    clean_redis,
    fallback,
    free_port,
    login,
    mfa_user,
    new_email,
    register,
    running_app,
    settings_for,
    totp_code,
)

# Long enough for a slow CI machine, short enough that a hang is reported as one.
REQUEST_TIMEOUT = 15.0


async def send(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; a request that never answers is a failure of its own (not a hung test)."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            return await client.request(method, url, **kwargs)
    except TimeoutError:
        pytest.fail(f"{method} {url} did not answer within {REQUEST_TIMEOUT} s", pytrace=False)


def assert_unavailable(r: httpx.Response) -> None:
    """Fail closed: 503 service_unavailable as problem+json, with Retry-After, no token."""
    what = f"{r.request.method} {r.request.url.path} -> {r.status_code} {r.text}"
    assert r.status_code == 503, what
    assert r.headers["content-type"] == "application/problem+json", what
    assert r.json()["code"] == "service_unavailable", what
    assert int(r.headers["retry-after"]) >= 1, what
    assert "access_token" not in r.text, what
    assert "refresh_token" not in r.text, what


# --- 1. two workers, one lock --------------------------------------------------------------


def child_workers(parent: int) -> list[int]:
    """uvicorn's worker processes: the spawned children of the `serve` process."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            workers.append(int(entry.name))
    return sorted(workers)


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def serving_worker(workers: list[int], server_port: int, response: httpx.Response) -> int | None:
    """The worker holding the server side of the (kept-alive) connection that carried
    `response`: the socket whose local port is the server's and remote port is ours."""
    stream = response.extensions["network_stream"]
    client_port = int(stream.get_extra_info("client_addr")[1])
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{workers[0]}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if _port(fields[1]) == server_port and _port(fields[2]) == client_port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in workers:
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None


async def pin_one_client_per_worker(
    base_url: str, workers: list[int], port: int
) -> dict[int, httpx.AsyncClient]:
    """Open connections until each worker holds one; a kept-alive connection stays with the
    worker that accepted it, so each client then talks to one known worker."""
    pinned: dict[int, httpx.AsyncClient] = {}
    for _ in range(100):
        client = httpx.AsyncClient(
            base_url=base_url, timeout=REQUEST_TIMEOUT, limits=httpx.Limits(max_connections=1)
        )
        r = await client.get("/healthz")
        assert r.status_code == 200, r.text
        worker = serving_worker(workers, port, r)
        if worker is None or worker in pinned:
            await client.aclose()
        else:
            pinned[worker] = client
        if len(pinned) == len(workers):
            return pinned
        await asyncio.sleep(0.02)
    for client in pinned.values():
        await client.aclose()
    pytest.fail(f"100 connections never reached every worker of {workers}: {sorted(pinned)}")


@asynccontextmanager
async def two_workers(
    redis_url: str | None, postgres_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str, dict[int, httpx.AsyncClient], list[int], int, Path]]:
    """`mfa-service serve --workers 2` on PostgreSQL and the real Redis: its base URL, one
    client pinned to each worker, the worker pids, the port and the log."""
    if redis_url is None:
        pytest.skip("two workers need a real Redis server")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    prefix = f"mfa-live-{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    env.update(
        MFA_DATABASE_URL=postgres_url,
        MFA_REDIS_URL=redis_url,
        MFA_REDIS_PREFIX=prefix,
        MFA_DATA_DIR=str(tmp_path),
        MFA_DATA_KEY=generate_data_key(),
        MFA_ISSUER=base_url,
        MFA_AUDIENCE="mfa-live-clients",
    )
    log = tmp_path / "server.log"
    try:
        async with serving(env, port, log, workers=2) as pid:
            workers: list[int] = []
            for _ in range(100):
                workers = child_workers(pid)
                if len(workers) == 2:
                    break
                await asyncio.sleep(0.1)
            assert len(workers) == 2, f"worker processes of {pid}: {workers}\n{log.read_text()}"
            pinned = await pin_one_client_per_worker(base_url, workers, port)
            try:
                yield base_url, pinned, workers, port, log
            finally:
                for client in pinned.values():
                    await client.aclose()
    finally:
        await clean_redis(Settings(redis_url=redis_url, redis_prefix=prefix))


async def test_two_workers_share_the_factor_lock(
    redis_url: str | None, postgres_url: str, tmp_path: Path
) -> None:
    async with two_workers(redis_url, postgres_url, tmp_path) as (_, pinned, workers, port, log):
        await _lock_scenario(pinned, workers, port, log)


async def test_two_workers_hold_the_factor_limit_under_a_concurrent_burst(
    redis_url: str | None, postgres_url: str, tmp_path: Path
) -> None:
    """40 wrong codes at once over 8 challenges, on many connections to both workers: exactly
    the user's limit (10) is judged, the rest 429; then the right code gets no token."""
    async with two_workers(redis_url, postgres_url, tmp_path) as (base_url, pinned, _, _, log):
        first = next(iter(pinned.values()))
        email = new_email()
        await register(first, email)
        access = (await login(first, email))["access_token"]
        setup = await send(first, "POST", "/mfa/totp/setup", headers=bearer(access))
        totp = pyotp.TOTP(setup.json()["secret"])
        confirm = await send(
            first, "POST", "/mfa/totp/confirm", headers=bearer(access), json={"code": totp.now()}
        )
        assert confirm.status_code == 200, confirm.text
        tokens = [(await login(first, email))["challenge_token"] for _ in range(8)]
        valid = {totp.at(time.time() + 30 * s) for s in (-1, 0, 1, 2)}
        guesses = [c for c in (f"{i:06d}" for i in range(50)) if c not in valid][:40]
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as burst:
            answers = await asyncio.gather(
                *(
                    burst.post(
                        "/mfa/challenge", json={"challenge_token": tokens[i % 8], "code": code}
                    )
                    for i, code in enumerate(guesses)
                )
            )
            outcomes = sorted((a.status_code, a.json()["code"]) for a in answers)
            assert outcomes == [(401, "invalid_code")] * 10 + [(429, "rate_limited")] * 30
            token = (await login(first, email))["challenge_token"]
            right = await burst.post(
                "/mfa/challenge", json={"challenge_token": token, "code": totp.now()}
            )
            assert right.status_code == 429, right.text
        assert "Traceback" not in log.read_text(), log.read_text()


async def _lock_scenario(
    pinned: dict[int, httpx.AsyncClient], workers: list[int], port: int, log: Path
) -> None:
    first, second = (pinned[w] for w in workers)
    email = new_email()
    await register(first, email)
    access = (await login(first, email))["access_token"]
    setup = await send(first, "POST", "/mfa/totp/setup", headers=bearer(access))
    assert setup.status_code == 200, setup.text
    totp = pyotp.TOTP(setup.json()["secret"])
    confirm = await send(
        first, "POST", "/mfa/totp/confirm", headers=bearer(access), json={"code": totp.now()}
    )
    assert confirm.status_code == 200, confirm.text
    backup_codes: list[str] = confirm.json()["backup_codes"]

    # 10 wrong codes, alternating between the workers, each on a fresh challenge so the
    # per-challenge limit (5) plays no part: only the per-user count can lock.
    served_by: list[int | None] = []
    for attempt in range(10):
        client = (first, second)[attempt % 2]
        token = (await login(client, email))["challenge_token"]
        r = await send(
            client, "POST", "/mfa/challenge", json={"challenge_token": token, "code": "000000"}
        )
        assert r.status_code == 401, f"wrong code #{attempt + 1}: {r.status_code} {r.text}"
        assert r.json()["code"] == "invalid_code", r.text
        served_by.append(serving_worker(workers, port, r))
    assert set(served_by) == set(workers), (
        f"the wrong codes were not answered by both workers {workers}: {served_by}"
    )

    # Locked on every worker, even with a right answer: an unused backup code, or the
    # current TOTP code (429 comes before any check, so a replayed step would not matter).
    for client, proof in (
        (first, {"backup_code": backup_codes[0]}),
        (second, {"code": totp.now()}),
    ):
        token = (await login(client, email))["challenge_token"]
        r = await send(client, "POST", "/mfa/challenge", json={"challenge_token": token, **proof})
        where = f"worker {serving_worker(workers, port, r)}: {r.status_code} {r.text}"
        assert r.status_code == 429, where
        assert r.json()["code"] == "rate_limited", where
        assert 1 <= int(r.headers["retry-after"]) <= 900, where
        assert "access_token" not in r.text, where
    assert "Traceback" not in log.read_text(), log.read_text()


# --- 2. Redis outage -----------------------------------------------------------------------


async def test_redis_outage_fails_closed_and_recovers(backend: Backend) -> None:
    if shutil.which("redis-server") is None:
        fallback("no redis-server binary: the Redis outage test is skipped")
        pytest.skip("no redis-server binary")
    server = RedisServer()
    server.start()
    clock = FakeClock()
    try:
        async with running_app(settings_for(backend, redis_url=server.url), clock) as client:
            plain = new_email()  # no MFA: its login would mint tokens at once
            await register(client, plain)
            user = await mfa_user(client, clock)
            token = await challenge(client, user.email)
            r = await send(
                client,
                "POST",
                "/mfa/challenge",
                json={"challenge_token": token, "code": totp_code(user.secret, clock)},
            )
            assert r.status_code == 200, r.text
            tokens = r.json()
            clock.advance(30)  # the next code is a step not used yet
            pending = await challenge(client, user.email)
            code = totp_code(user.secret, clock)

            server.stop()
            login_body = {"email": user.email, "password": PASSWORD}
            device_login = {**login_body, "device_token": tokens["device_token"]}
            for method, url, kwargs in [
                ("POST", "/auth/login", {"json": {"email": plain, "password": PASSWORD}}),
                ("POST", "/auth/login", {"json": login_body}),
                ("POST", "/auth/login", {"json": device_login}),
                ("POST", "/mfa/challenge", {"json": {"challenge_token": pending, "code": code}}),
                ("POST", "/auth/refresh", {"json": {"refresh_token": tokens["refresh_token"]}}),
                (
                    "POST",
                    "/mfa/step-up",
                    {"json": {"code": code}, "headers": bearer(tokens["access_token"])},
                ),
                ("GET", "/users/me", {"headers": bearer(tokens["access_token"])}),
                ("GET", "/users/me/sessions", {"headers": bearer(tokens["access_token"])}),
                ("GET", "/readyz", {}),
            ]:
                assert_unavailable(await send(client, method, url, **kwargs))
            for _ in range(5):
                for method, url, kwargs in [
                    ("POST", "/auth/login", {"json": {"email": plain, "password": PASSWORD}}),
                    ("POST", "/auth/refresh", {"json": {"refresh_token": "made-up"}}),
                ]:
                    assert_unavailable(await send(client, method, url, **kwargs))
            assert (await send(client, "GET", "/healthz")).status_code == 200

            server.start()  # same port, empty: the challenge is gone, the database is not
            assert (await send(client, "GET", "/readyz")).status_code == 200
            again = await send(client, "POST", "/auth/login", json=login_body)
            assert again.status_code == 200, again.text
            assert again.json()["status"] == "mfa_required", again.text
            # The same code still works: the refused attempt used nothing up.
            r = await send(
                client,
                "POST",
                "/mfa/challenge",
                json={"challenge_token": again.json()["challenge_token"], "code": code},
            )
            assert r.status_code == 200, r.text
            assert r.json()["access_token"]
            # ... and so does the refresh token refused during the outage (not rotated).
            r = await send(
                client, "POST", "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert r.status_code == 200, r.text
            plain_login = await send(
                client, "POST", "/auth/login", json={"email": plain, "password": PASSWORD}
            )
            assert plain_login.status_code == 200, plain_login.text
            assert plain_login.json()["access_token"]
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


# --- 3. database outage --------------------------------------------------------------------


class TcpProxy:
    """A TCP forwarder in the test's event loop that can be cut (listener and every open
    connection) and restored on the same port."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.port = free_port()
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # every pipe reads EOF and its handler returns
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self._upstream)
            self._writers.add(upstream)
            pipes = [
                asyncio.ensure_future(self._pipe(reader, upstream)),
                asyncio.ensure_future(self._pipe(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass  # upstream refused, or cut by close(); asyncio 3.11 logs a cancelled handler
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.transport.abort()
                    self._writers.discard(w)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


async def test_database_outage_fails_closed_and_recovers(
    redis_url: str | None, postgres_url: str, tmp_path: Path
) -> None:
    real = make_url(postgres_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.start()
    via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    backend = Backend("postgresql", via_proxy, redis_url, tmp_path, generate_data_key())
    clock = FakeClock()
    # Requests refused for the outage are no guesses: they must not spend the per-IP limits.
    settings = settings_for(backend, login_ip_max_failures=3)
    try:
        async with running_app(settings, clock) as client:
            plain = new_email()
            await register(client, plain)
            access = (await login(client, plain))["access_token"]
            user = await mfa_user(client, clock)
            pending = await challenge(client, user.email)
            tokens = await login(client, plain)
            device_login = {"email": plain, "password": PASSWORD}
            device_login["device_token"] = tokens["device_token"]
            code = totp_code(user.secret, clock)

            await proxy.close()
            for method, url, kwargs in [
                ("POST", "/auth/login", {"json": {"email": plain, "password": PASSWORD}}),
                ("POST", "/mfa/challenge", {"json": {"challenge_token": pending, "code": code}}),
                ("POST", "/auth/refresh", {"json": {"refresh_token": tokens["refresh_token"]}}),
                ("POST", "/auth/login", {"json": device_login}),
                ("GET", "/users/me", {"headers": bearer(access)}),
                ("GET", "/users/me/sessions", {"headers": bearer(access)}),
                ("DELETE", "/users/me/devices", {"headers": bearer(access)}),
                ("GET", "/readyz", {}),
            ]:
                assert_unavailable(await send(client, method, url, **kwargs))
            for _ in range(5):
                for method, url, kwargs in [
                    ("POST", "/auth/login", {"json": {"email": plain, "password": PASSWORD}}),
                    ("POST", "/auth/refresh", {"json": {"refresh_token": "made-up"}}),
                ]:
                    assert_unavailable(await send(client, method, url, **kwargs))
            assert (await send(client, "GET", "/healthz")).status_code == 200

            await proxy.start()
            r = await send(
                client, "POST", "/auth/login", json={"email": plain, "password": PASSWORD}
            )
            assert r.status_code == 200, r.text
            assert r.json()["access_token"]
            assert (await send(client, "GET", "/readyz")).status_code == 200
            me = await send(client, "GET", "/users/me", headers=bearer(access))
            assert me.status_code == 200, me.text
            # Nothing was changed by the refused requests: the refresh token was not
            # rotated, and the challenge and its code are still good.
            r = await send(
                client, "POST", "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert r.status_code == 200, r.text
            r = await send(
                client, "POST", "/mfa/challenge", json={"challenge_token": pending, "code": code}
            )
            assert r.status_code == 200, r.text
    finally:
        await proxy.close()
