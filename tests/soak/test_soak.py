"""Soak and faults: three instances of two workers each on PostgreSQL and Redis, a mixed load
from several clients, and while it runs an instance killed, every database connection of the
service terminated and (on a cluster) a Redis primary failed over. Afterwards the invariants
are checked from the database: no step, backup code or guess was counted twice or past its
limit, every session handed out exists, no refresh family has two live tokens."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pyotp
import pytest
from sqlalchemy.engine import make_url

from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from tests import redis_cluster
from tests.serve import serving
from tests.soak.load import STEP, Instances, Ledger, Load, SoakUser, grouped
from tests.support import (
    PASSWORD,
    bearer,
    clean_redis,
    fallback,
    free_port,
    new_email,
)

pytestmark = pytest.mark.soak

INSTANCES = 3
WORKERS = 2
USERS = 24
TARGETS = 4  # users under a guessing attack
CLIENTS = 12
# The cluster run has all three faults; the single-server run, shorter, the first two.
SECONDS = float(os.environ.get("MFA_SOAK_SECONDS", "60"))
FACTOR_MAX_FAILURES = 10  # the service default
REQUEST_TIMEOUT = 30.0


def plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def instances(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[list[str], list[int], str]]:
    """INSTANCES × `serve --workers 2`, one database and one Redis: base URLs, pids and the
    Redis key prefix. The first starts alone: it makes the first signing key."""
    prefix = f"mfa-soak-{uuid.uuid4().hex[:8]}:"
    data_key = generate_data_key()
    urls: list[str] = []
    pids: list[int] = []
    async with AsyncExitStack() as stack:
        for i in range(INSTANCES):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
            env.update(
                MFA_DATABASE_URL=postgres_url,
                MFA_REDIS_URL=redis_url,
                MFA_REDIS_PREFIX=prefix,
                MFA_DATA_DIR=str(tmp_path / f"instance-{i}"),
                MFA_DATA_KEY=data_key,
                MFA_ISSUER="http://mfa.soak.test",
                MFA_AUDIENCE="mfa-soak-clients",
                MFA_REGISTER_IP_MAX="10000",
                # Every client is 127.0.0.1, and each stolen refresh token's race counts as a
                # guess from that IP: per-IP limits have tests of their own.
                MFA_LOGIN_IP_MAX_FAILURES="100000",
                # Pools small enough that 6 workers stay well under max_connections.
                MFA_DATABASE_POOL_SIZE="5",
                # Six workers and the load share two cores: a slow reply is no Redis fault.
                MFA_REDIS_TIMEOUT="10",
            )
            pid = await stack.enter_async_context(
                serving(env, port, tmp_path / f"instance-{i}.log", workers=WORKERS)
            )
            urls.append(f"http://127.0.0.1:{port}")
            pids.append(pid)
        try:
            yield urls, pids, prefix
        finally:
            await clean_redis(Settings(redis_url=redis_url, redis_prefix=prefix))


async def enrolled_user(client: httpx.AsyncClient, target: bool) -> SoakUser:
    """Registered, signed in, TOTP set up and confirmed (the confirming step is used)."""
    email = new_email()
    r = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    user_id = uuid.UUID(r.json()["id"])
    r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    access = r.json()["access_token"]
    setup = await client.post("/mfa/totp/setup", headers=bearer(access))
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    step = int(time.time()) // STEP
    confirm = await client.post(
        "/mfa/totp/confirm",
        headers=bearer(access),
        json={"code": pyotp.TOTP(secret).at(step * STEP)},
    )
    assert confirm.status_code == 200, confirm.text
    return SoakUser(email, user_id, secret, confirm.json()["backup_codes"], step, target)


async def at(start: float, offset: float) -> None:
    await asyncio.sleep(max(0.0, start + offset - time.monotonic()))


async def terminate_connections(dsn: str, database: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    return len(rows)


# Faults of the Redis deployment: each one's description, and when the service may answer 503
# because of it (start and end, in time.monotonic()).
Fault = Callable[[], Awaitable[list[tuple[str, float, float]]]]


@dataclass
class Timeline:
    start: float
    killed_at: float = 0.0
    database_at: float = 0.0
    redis_windows: list[tuple[str, float, float]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def note(self, what: str) -> float:
        now = time.monotonic()
        self.events.append(f"{now - self.start:.1f}s: {what}")
        return now - self.start


async def soak(
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    seconds: float,
    redis_fault: Fault | None = None,
) -> Ledger:
    async with instances(postgres_url, redis_url, tmp_path) as (urls, pids, _prefix):
        async with httpx.AsyncClient(base_url=urls[0], timeout=REQUEST_TIMEOUT) as first:
            users = [await enrolled_user(first, target=i < TARGETS) for i in range(USERS)]
        pool = Instances(urls, REQUEST_TIMEOUT)
        ledger = Ledger()
        timeline = Timeline(ledger.started)
        try:
            load = asyncio.create_task(Load(pool, users, ledger).run(CLIENTS, seconds))
            start = ledger.started
            await at(start, seconds * 0.25)
            os.killpg(pids[-1], signal.SIGKILL)  # the whole instance: master and workers
            timeline.killed_at = timeline.note(f"instance {INSTANCES} killed (kill -9)")
            await at(start, seconds * 0.45)
            database = make_url(postgres_url).database or ""
            terminating = time.monotonic() - start  # the first ones end before it returns
            ended = await terminate_connections(plain_dsn(postgres_url), database)
            timeline.note(f"{ended} database connections terminated")
            timeline.database_at = terminating
            if redis_fault is not None:
                await at(start, seconds * 0.65)
                for what, begin, end in await redis_fault():
                    timeline.redis_windows.append((what, begin - start, end - start))
                    timeline.events.append(f"{begin - start:.1f}s: {what}")
            await load
        finally:
            await pool.aclose()
        report(capsys, ledger, timeline)
        await check_invariants(postgres_url, users, ledger)
        check_failures(ledger, timeline)
        return ledger


def check_failures(ledger: Ledger, timeline: Timeline) -> None:
    """Fail closed, and only where a fault was: a 503 while the database connections were
    being replaced (at most the requests then in flight) or while Redis failed over; lost
    answers only from the killed instance's requests in flight. Never a 500."""
    in_flight = 3 * CLIENTS  # a client has at most three requests out at once
    database_503 = 0
    for when, path, outcome, detail in ledger.failures:
        if outcome == "lost":
            assert timeline.killed_at <= when <= timeline.killed_at + REQUEST_TIMEOUT, (
                when,
                path,
                detail,
            )
            continue
        assert outcome == "503", (when, path, outcome)
        if any(begin <= when <= end + 2 for _, begin, end in timeline.redis_windows):
            continue
        assert timeline.database_at <= when <= timeline.database_at + 10, (when, path)
        database_503 += 1
    assert database_503 <= in_flight, database_503
    assert sum(1 for f in ledger.failures if f[2] == "lost") <= in_flight
    # What an honest client does always works (or fails closed, above); only the attacker's
    # guesses and the stolen refresh token's race are refused.
    allowed = {"200", "503", "lost", "no instance"}
    for key in ledger.statuses:
        path, _, outcome = key.rpartition(" ")
        if "(guess)" in path:
            assert outcome in allowed | {"401", "429"}, key
        elif "(race)" in path:
            assert outcome in allowed | {"401"}, key
        else:
            assert outcome in allowed, key


async def check_invariants(postgres_url: str, users: list[SoakUser], ledger: Ledger) -> None:
    conn = await asyncpg.connect(plain_dsn(postgres_url))
    try:
        last_steps = dict(await conn.fetch("SELECT user_id, last_used_step FROM totp_credentials"))
        used_codes = dict(
            await conn.fetch(
                "SELECT user_id, count(*) FROM backup_codes WHERE used_at IS NOT NULL"
                " GROUP BY user_id"
            )
        )
        failed = dict(
            await conn.fetch(
                "SELECT user_id, count(*) FROM audit_events WHERE type = 'challenge.failed'"
                " GROUP BY user_id"
            )
        )
        sessions = {r[0] for r in await conn.fetch("SELECT id FROM sessions")}
        two_live = await conn.fetch(
            "SELECT session_id FROM refresh_tokens WHERE used_at IS NULL"
            " GROUP BY session_id HAVING count(*) > 1"
        )
    finally:
        await conn.close()

    # Every successful TOTP answer used its own step, and the database moved past it.
    for user_id, steps in grouped(ledger.totp_successes).items():
        assert len(steps) == len(set(steps)), f"a step passed twice for {user_id}: {steps}"
        assert max(steps) <= last_steps[user_id]
    # No backup code passed twice; the database used as many as passed (plus the lost ones).
    for user_id, codes in grouped(ledger.backup_successes).items():
        assert len(codes) == len(set(codes)), f"a backup code passed twice for {user_id}"
        maybe = ledger.backup_maybe_used[user_id]
        assert len(codes) <= used_codes.get(user_id, 0) <= len(codes) + maybe
    # No attacked user had a code evaluated past the factor limit, counted by the service's
    # own audit trail and by what the attacker saw.
    for user in users:
        assert failed.get(user.user_id, 0) <= FACTOR_MAX_FAILURES, user.user_id
        assert ledger.wrong_code_evaluated[user.user_id] <= FACTOR_MAX_FAILURES
    assert any(failed.get(u.user_id, 0) > 0 for u in users if u.target), "no guess evaluated"
    # Every session handed out exists; no refresh family has two live tokens.
    assert ledger.session_ids <= sessions, ledger.session_ids - sessions
    assert not two_live, two_live
    # The honest users kept passing their challenges through all of it.
    assert len(ledger.totp_successes) >= USERS - TARGETS


def report(capsys: pytest.CaptureFixture[str], ledger: Ledger, timeline: Timeline) -> None:
    """The run's figures in the test output (CI's log), whatever the capture setting."""
    with capsys.disabled():
        for line in lines(ledger, timeline):
            sys.stdout.write(line + "\n")


def lines(ledger: Ledger, timeline: Timeline) -> Iterator[str]:
    elapsed = time.monotonic() - ledger.started
    rate = ledger.requests / elapsed
    yield f"\nsoak: {ledger.requests} requests in {elapsed:.0f} s ({rate:.0f}/s)"
    for event in timeline.events:
        yield f"  {event}"
    for what, begin, end in timeline.redis_windows:
        during = [f[0] for f in ledger.failures if f[2] == "503" and begin <= f[0] <= end + 2]
        span = f"{min(during) - begin:.2f}–{max(during) - begin:.2f} s in" if during else "none"
        yield f"  {what}: {len(during)} answers 503 ({span}); cluster ok {end - begin:.1f} s in"
    for key, count in sorted(ledger.statuses.items()):
        yield f"  {key}: {count}"
    failures = Counter(
        f"{path} {outcome} {detail}".strip() for _, path, outcome, detail in ledger.failures
    )
    for what, count in sorted(failures.items()):
        yield f"  failed: {what} × {count}"


async def test_soak_with_faults_on_one_redis(
    capsys: pytest.CaptureFixture[str], postgres_url: str, redis_url: str | None, tmp_path: Path
) -> None:
    if redis_url is None:
        fallback("no Redis server: the soak test is skipped")
        pytest.skip("several instances need a real Redis server")
    await soak(capsys, postgres_url, redis_url, tmp_path, SECONDS / 2)


async def test_soak_with_faults_on_a_redis_cluster(
    capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    """The same on a Redis Cluster of its own, and more faults: a primary fails over to its
    replica (CLUSTER FAILOVER), then the old primary is killed; then another primary is
    killed outright."""
    if not redis_cluster.available():
        fallback("no redis-server or redis-cli binary: the cluster soak test is skipped")
        pytest.skip("no redis-server or redis-cli binary")
    with redis_cluster.local_cluster() as cluster:

        async def fail_over() -> list[tuple[str, float, float]]:
            # Planned: the replica takes over with its primary's agreement, then the old
            # primary dies.
            primary, other = cluster.primaries()[:2]
            replica = cluster.replica_of(primary)
            begin = time.monotonic()
            await asyncio.to_thread(cluster.failover, replica)
            await asyncio.to_thread(primary.kill)
            await asyncio.to_thread(cluster.wait_until_ok)
            planned = time.monotonic()
            await asyncio.sleep(3)
            # Unplanned: another primary dies; its replica takes over once the others agree
            # it is gone (node timeout 2 s). Its slots answer 503 until then.
            heir = cluster.replica_of(other)
            crash = time.monotonic()
            await asyncio.to_thread(other.kill)
            while heir not in await asyncio.to_thread(cluster.primaries):
                await asyncio.sleep(0.1)
            await asyncio.to_thread(cluster.wait_until_ok)
            return [
                (f"{primary.name} failed over (CLUSTER FAILOVER), then killed", begin, planned),
                (f"primary {other.name} killed (kill -9)", crash, time.monotonic()),
            ]

        await soak(capsys, postgres_url, cluster.url, tmp_path, SECONDS, fail_over)
