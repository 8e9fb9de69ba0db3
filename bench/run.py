"""`python -m bench`: the whole benchmark of issue #5, one command (see bench/README.md).

For each configuration (PostgreSQL or SQLite; 1 or 2 uvicorn workers; always real Redis):
a fresh database seeded with N users who have TOTP enabled, the service started with uvicorn,
then, at concurrency 64 with wrk, each after a warm-up:

  login      every user logs in once (correct password: 200 + challenge token, captured),
             while a paced probe measures /healthz;
  challenge  every user answers its challenge once with a valid TOTP code (the access and
             refresh tokens of the answers are captured);
  refresh    every user's refresh token once;
  me         GET /users/me with the access tokens, for a fixed time;
  introspect POST /oauth/introspect of the access tokens, for a fixed time;
  floors     bench/floor.py: the same requests, only the I/O each path cannot avoid;
  census     (1 worker) a few users' logins, challenges and token paths, one request after
             the other, through counting proxies: Redis commands and round trips, SQL
             statements, round trips, transactions.

Results: bench/results/latest.json and latest.md (printed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import redis

from bench import baselines, census, compare, loadgen, paths, report, seed
from bench.progress import log, logged
from bench.servers import ROOT, Server, free_port
from mfa_service.challenges import store as challenge_store
from mfa_service.config import Settings, decode_key
from mfa_service.secretbox import SecretBox, generate_data_key

# PostgreSQL backends report their statistics when idle, at most every 10 s
# (PGSTAT_IDLE_INTERVAL): deltas of pg_stat_database are taken that long after a run.
PG_STATS_SETTLE_S = 11.0
# The service's defaults (config.py), stated so a changed default shows in the results.
ARGON2 = {"memory_kib": 19456, "time_cost": 2, "parallelism": 1}
CHALLENGE_TTL_S = 3600
# The measured challenge run must end while its TOTP codes are valid (≥ 60 s, seed.code_for).
CHALLENGE_RUN_BUDGET_S = 45.0


@dataclass(frozen=True)
class Options:
    users: int
    backends: list[str]
    workers: list[int]
    warmup_fraction: float
    floor_seconds: float
    floor_warmup_seconds: float
    # GET /users/me and introspection on the service: the tokens can be shown again and again,
    # so they run for a fixed time (a warm-up, then the measured run), like the floors.
    path_seconds: float
    path_warmup_seconds: float
    trivial_seconds: float
    argon2_seconds: float
    census: int
    verify_seconds: float
    redis_url: str
    admin_dsn: str
    database: str
    out: Path
    quick: bool
    compare: Path | None  # an earlier results file: the change of each figure is printed
    against: Path | None  # with `compare`: compare these two files, run nothing


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, help="users seeded and measured (default 5000)")
    p.add_argument("--quick", action="store_true", help="N=1000, short runs, PostgreSQL 1 worker")
    p.add_argument("--backends", help="comma-separated: postgres,sqlite (default both)")
    p.add_argument("--workers", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--census", type=int, help="sequential requests through the counters (20)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument(
        "--admin-dsn",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an existing database to connect to for CREATE/DROP DATABASE",
    )
    p.add_argument(
        "--database",
        default=f"mfa_bench_{os.getpid()}",
        help="the PostgreSQL database to create and drop (default: mfa_bench_<pid>)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument(
        "--compare",
        type=Path,
        metavar="FILE",
        help="an earlier results JSON: after the run, print each ratio, req/s and p99 beside "
        "the earlier file's, with the change",
    )
    p.add_argument(
        "--against",
        type=Path,
        metavar="FILE",
        help="with --compare: compare FILE (the later results) with the --compare file, "
        "without running anything",
    )
    a = p.parse_args(argv)
    if a.against is not None and a.compare is None:
        p.error("--against needs --compare (the earlier file)")
    for given in (a.compare, a.against):
        if given is not None and not given.is_file():
            p.error(f"no such results file: {given}")
    quick = bool(a.quick)
    users = a.users or (1000 if quick else 5000)
    if users < 100:
        p.error("--users must be at least 100")
    backends = (a.backends or ("postgres" if quick else "postgres,sqlite")).split(",")
    if not set(backends) <= {"postgres", "sqlite"}:
        p.error("--backends: postgres and/or sqlite")
    return Options(
        users=users,
        backends=backends,
        workers=[int(w) for w in (a.workers or ("1" if quick else "1,2")).split(",")],
        warmup_fraction=0.1,
        floor_seconds=3.0 if quick else 10.0,
        floor_warmup_seconds=1.0 if quick else 3.0,
        path_seconds=3.0 if quick else 10.0,
        path_warmup_seconds=1.0 if quick else 3.0,
        trivial_seconds=2.0 if quick else 3.0,
        argon2_seconds=2.0 if quick else 5.0,
        census=a.census if a.census is not None else (8 if quick else 20),
        verify_seconds=1.0 if quick else 2.0,
        redis_url=a.redis_url,
        admin_dsn=a.admin_dsn,
        database=a.database,
        out=a.out,
        quick=quick,
        compare=a.compare,
        against=a.against,
    )


class Bench:
    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts = opts
        self.workdir = workdir
        self.prefix = f"mfa-bench-{os.getpid()}:"
        self.data_key = generate_data_key()
        # A client for POST /oauth/introspect (MFA_INTROSPECTION_CLIENTS wants ≥ 24 characters).
        self.introspection_secret = secrets.token_urlsafe(32)
        self.introspection_client = f"{paths.INTROSPECTION_CLIENT_ID}:{self.introspection_secret}"
        self.paths = paths.token_paths(self.introspection_secret)
        self.redis = redis.Redis.from_url(opts.redis_url)
        admin = urllib.parse.urlsplit(opts.admin_dsn)
        self.pg_host, self.pg_port = admin.hostname or "127.0.0.1", admin.port or 5432
        self.pg_userinfo = admin.netloc.rpartition("@")[0] or "postgres"

    # -- storage ----------------------------------------------------------------------------

    def pg_dsn(self, proxy_port: int | None = None) -> str:
        """The bench database; through the census proxy on this machine if given."""
        where = f"127.0.0.1:{proxy_port}" if proxy_port else f"{self.pg_host}:{self.pg_port}"
        return f"postgresql://{self.pg_userinfo}@{where}/{self.opts.database}"

    def sqlite_path(self) -> Path:
        return self.workdir / "mfa.db"

    def service_database_url(self, backend: str, pg_port: int | None = None) -> str:
        if backend == "postgres":
            return self.pg_dsn(pg_port).replace("postgresql://", "postgresql+asyncpg://")
        return f"sqlite+aiosqlite:///{self.sqlite_path()}"

    def fresh_database(self, backend: str) -> None:
        if backend == "postgres":
            asyncio.run(seed.recreate_postgres(self.opts.admin_dsn, self.opts.database))
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path()}{suffix}").unlink(missing_ok=True)

    def drop_database(self, backend: str) -> None:
        if backend == "postgres":
            asyncio.run(seed.drop_postgres(self.opts.admin_dsn, self.opts.database))
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path()}{suffix}").unlink(missing_ok=True)

    def delete_redis_keys(self) -> int:
        deleted = 0
        batch: list[bytes] = []
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(self.redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(self.redis.unlink(*batch))
        return deleted

    def redis_url(self, port: int | None = None) -> str:
        if port is None:
            return self.opts.redis_url
        parts = urllib.parse.urlsplit(self.opts.redis_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    # -- processes --------------------------------------------------------------------------

    def service_env(self, database_url: str, redis_url: str, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
        env.update(
            MFA_ENV="development",
            MFA_DATA_KEY=self.data_key,
            MFA_DATA_DIR=str(self.workdir / "data"),
            MFA_DATABASE_URL=database_url,
            MFA_REDIS_URL=redis_url,
            MFA_REDIS_PREFIX=self.prefix,
            MFA_ISSUER=f"http://127.0.0.1:{port}",
            MFA_ARGON2_MEMORY_KIB=str(ARGON2["memory_kib"]),
            MFA_ARGON2_TIME_COST=str(ARGON2["time_cost"]),
            MFA_ARGON2_PARALLELISM=str(ARGON2["parallelism"]),
            # Challenge tokens are collected by the login run, which on a slow machine takes
            # longer than the default 300 s. The TTL is only a number in the same Redis
            # commands: it changes no work per request.
            MFA_CHALLENGE_TTL=str(CHALLENGE_TTL_S),
            MFA_INTROSPECTION_CLIENTS=self.introspection_client,
        )
        return env

    def settings(self, backend: str) -> Settings:
        return Settings(
            env="development",
            data_key=self.data_key,
            data_dir=self.workdir / "data",
            database_url=self.service_database_url(backend),
            redis_url=self.opts.redis_url,
            redis_prefix=self.prefix,
            argon2_memory_kib=ARGON2["memory_kib"],
            argon2_time_cost=ARGON2["time_cost"],
            argon2_parallelism=ARGON2["parallelism"],
        )

    def start_service(
        self,
        backend: str,
        workers: int,
        label: str,
        pg_port: int | None = None,
        redis_port: int | None = None,
    ) -> Server:
        port = free_port()
        env = self.service_env(
            self.service_database_url(backend, pg_port), self.redis_url(redis_port), port
        )
        return Server(
            "mfa_service.app:create_app",
            port=port,
            workers=workers,
            env=env,
            log=self.workdir / f"{label}.log",
            health_path="/healthz",
        )

    def start_floor(self, backend: str, workers: int, label: str) -> Server:
        database = self.pg_dsn() if backend == "postgres" else str(self.sqlite_path())
        env = dict(os.environ)
        env.update(
            BENCH_FLOOR_DATABASE=database,
            BENCH_FLOOR_REDIS_URL=self.opts.redis_url,
            BENCH_FLOOR_REDIS_PREFIX=self.prefix,
            BENCH_FLOOR_DATA_KEY=self.data_key,
            BENCH_FLOOR_INTROSPECTION_CLIENT=self.introspection_client,
        )
        return Server(
            "bench.floor:create_app",
            port=free_port(),
            workers=workers,
            env=env,
            log=self.workdir / f"{label}.log",
            health_path="/noop",
        )

    # -- one configuration ------------------------------------------------------------------

    def run_config_safely(self, backend: str, workers: int) -> dict[str, Any]:
        """One configuration; a failure is recorded in its results and the run goes on."""
        try:
            return self.run_config(backend, workers)
        except Exception as exc:
            log(f"ERROR in {backend}, {workers} worker(s): {type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                self.drop_database(backend)
            return {
                "backend": backend,
                "workers": workers,
                "error": f"{type(exc).__name__}: {str(exc)[:300]}",
            }

    def run_config(self, backend: str, workers: int) -> dict[str, Any]:
        opts = self.opts
        label = f"{backend}-{workers}w"
        # The tree may change between configurations (others work in it): each says its own.
        result: dict[str, Any] = {"backend": backend, "workers": workers, **report.git_state()}
        extra = opts.census + census.WARMUP if opts.census else 0
        log(f"== {backend}, {workers} worker(s): seeding {opts.users} + {extra} users")
        self.fresh_database(backend)
        t0 = time.perf_counter()
        users = asyncio.run(seed.seed(self.settings(backend), opts.users + extra))
        result["seed_seconds"] = round(time.perf_counter() - t0, 2)
        # Measured again for every configuration, just before its logins: on a shared machine
        # the CPU that argon2 gets changes from one minute to the next.
        log(f"raw argon2 verify rate, {opts.argon2_seconds:.0f} s on every core")
        result["argon2_raw"] = baselines.argon2_rate(
            ARGON2["memory_kib"], ARGON2["time_cost"], ARGON2["parallelism"], opts.argon2_seconds
        )
        measured, census_users = users[: opts.users], users[opts.users :]
        warm = max(50, int(opts.users * opts.warmup_fraction))
        files = self.workdir / label
        files.mkdir(exist_ok=True)

        service_results, floor_files = self.service_runs(
            backend, workers, label, measured, warm, files
        )
        result.update(service_results)
        result.update(self.floor_runs(backend, workers, label, files, floor_files))
        if workers == 1 and census_users:
            result["census"], result["jwt_verifications"] = self.census(
                backend, label, census_users
            )
        result["ratios"] = report.ratios(result)
        self.drop_database(backend)
        self.delete_redis_keys()
        return result

    def service_runs(
        self,
        backend: str,
        workers: int,
        label: str,
        users: list[seed.User],
        warm: int,
        files: Path,
    ) -> tuple[dict[str, Any], dict[str, Path]]:
        """Everything measured on one service instance: logins, challenges, then the paths
        that use the challenges' tokens; the results, and the requests for each path's floor."""
        result: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            service = self.start_service(backend, workers, f"{label}-service")
            stack.callback(service.stop)
            log(f"service up at {service.url} (pids {service.worker_pids()})")
            result["rss_after_start_mb"] = service.memory_mb("VmRSS")
            result["healthz_plain"] = loadgen.get_for(
                service.url + "/healthz", seconds=self.opts.trivial_seconds
            ).summary()

            tokens, logins = self.logins(service, users, warm, files)
            result.update(logins)
            result["rss_after_login_mb"] = service.memory_mb("VmRSS")
            result.update(self.challenges(service, backend, users, tokens, warm, files))
            # Read before the token paths, so it means what it meant before they existed.
            result["peak_rss_mb"] = service.memory_mb("VmHWM")
            token_paths, floor_files = self.token_path_runs(service, warm, files)
            result.update(token_paths)
            result["peak_rss_mb_end"] = service.memory_mb("VmHWM")
            service.stop()
        return result, floor_files

    def token_path_runs(
        self, service: Server, warm: int, files: Path
    ) -> tuple[dict[str, Any], dict[str, Path]]:
        """Refresh, /users/me and introspect with the challenge run's tokens; the results,
        and the requests for their floors. A failure is recorded (`token_paths_error`) rather
        than raised: the logins and challenges measured before it are kept."""
        issued = paths.read_issued(sorted(files.glob("issued-*.*")))
        try:
            return paths.measure(service.url, self.paths, issued, warm, files, self.timing())
        except Exception as exc:
            log(f"ERROR in the token paths: {type(exc).__name__}: {exc}")
            return {"token_paths_error": f"{type(exc).__name__}: {str(exc)[:300]}"}, {}

    def timing(self) -> paths.Timing:
        o = self.opts
        return paths.Timing(
            o.path_warmup_seconds, o.path_seconds, o.floor_warmup_seconds, o.floor_seconds
        )

    def floor_runs(
        self, backend: str, workers: int, label: str, files: Path, floor_files: dict[str, Path]
    ) -> dict[str, Any]:
        """Each path's floor, on bench/floor.py served like the service."""
        opts = self.opts
        result: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            floor = self.start_floor(backend, workers, f"{label}-floor")
            stack.callback(floor.stop)
            log(f"floor up at {floor.url}")
            bodies = files / "challenge-measured.txt"
            loadgen.replay_for(floor.url, "/floor", bodies, seconds=opts.floor_warmup_seconds)
            result["floor"] = logged(
                "floor", loadgen.replay_for(floor.url, "/floor", bodies, seconds=opts.floor_seconds)
            )
            # The load generator's own ceiling on this machine: a reply without any I/O, with
            # the same Lua script (response() callback included) and with plain wrk.
            result["loadgen_check"] = {
                "noop_replay_lua": loadgen.replay_for(
                    floor.url, "/noop", bodies, seconds=opts.trivial_seconds
                ).summary(),
                "noop_plain_wrk": loadgen.get_for(
                    floor.url + "/noop", seconds=opts.trivial_seconds
                ).summary(),
            }
            result.update(paths.measure_floors(floor.url, self.paths, floor_files, self.timing()))
            floor.stop()
        return result

    def census(
        self, backend: str, label: str, users: list[seed.User]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The round-trip census (census.py) on a service of its own, and the JWT hook."""
        opts = self.opts
        log(f"census: {opts.census} users' requests, one after the other, through counting proxies")
        redis_parts = urllib.parse.urlsplit(opts.redis_url)
        return census.run(
            lambda pg_port, redis_port: self.start_service(
                backend, 1, f"{label}-census", pg_port=pg_port, redis_port=redis_port
            ),
            users,
            redis_upstream=(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379),
            pg_upstream=(self.pg_host, self.pg_port) if backend == "postgres" else None,
            introspection=paths.basic_credentials(
                paths.INTROSPECTION_CLIENT_ID, self.introspection_secret
            ),
            after=lambda service, token: baselines.jwt_verifications(
                service.url, "mfa-service", token, opts.verify_seconds
            ),
        )

    def logins(
        self, service: Server, users: list[seed.User], warm: int, files: Path
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Every user logs in once (the first `warm` as the warm-up); the challenge tokens of
        the answers, by user id, and the results."""
        bodies = [{"email": u.email, "password": seed.PASSWORD} for u in users]
        warm_file = loadgen.write_bodies(files / "login-warmup.txt", bodies[:warm])
        measured_file = loadgen.write_bodies(files / "login-measured.txt", bodies[warm:])
        limit = 60 + len(users) / 5  # an upper bound only: the run ends with its last answer
        out: dict[str, Any] = {}
        log(f"login warm-up: {warm} logins")
        out["login_warmup"] = logged(
            "login warm-up",
            loadgen.replay_once(
                service.url,
                "/auth/login",
                warm_file,
                limit_s=limit,
                capture=files / "tokens-warmup",
            ),
        )
        log(f"login: {len(users) - warm} logins, /healthz probe alongside")
        probe = loadgen.Probe(service.url + "/healthz", interval_ms=20)
        try:
            login = loadgen.replay_once(
                service.url,
                "/auth/login",
                measured_file,
                limit_s=limit,
                capture=files / "tokens-measured",
            )
        finally:
            healthz = probe.stop() if probe.running() else None
            probe.kill()
        out["login"] = logged("login", login)
        out["healthz_under_login"] = logged("/healthz under login", healthz) if healthz else {}
        tokens: dict[str, str] = {}
        box = SecretBox(decode_key(self.data_key))
        for capture in files.glob("tokens-*.*"):
            for token in capture.read_text().split():
                # The token is opaque; the run holds the data key that opens it.
                user_id, _ = challenge_store.open_token(box, token)
                tokens[user_id.hex] = token
        return tokens, out

    def challenges(
        self,
        service: Server,
        backend: str,
        users: list[seed.User],
        tokens: dict[str, str],
        warm: int,
        files: Path,
    ) -> dict[str, Any]:
        """Every user with a challenge token answers it once (the first `warm` as the
        warm-up); the server counters are read around the measured run."""
        missing = [u for u in users if u.id.hex not in tokens]
        if missing:
            log(f"WARNING: no challenge token for {len(missing)} users (their login failed)")
        ready = [u for u in users if u.id.hex in tokens]
        if len(ready) <= warm:
            raise RuntimeError(f"only {len(ready)} users have a challenge token: logins failed")
        warm_users, measured_users = ready[:warm], ready[warm:]
        limit = 60 + len(users) / 20
        out: dict[str, Any] = {"users_without_token": len(missing)}
        log(f"challenge warm-up: {len(warm_users)} challenges")
        warm_file = write_challenges(files / "challenge-warmup.txt", warm_users, tokens)
        out["challenge_warmup"] = logged(
            "challenge warm-up",
            loadgen.replay_once(
                service.url,
                "/mfa/challenge",
                warm_file,
                limit_s=limit,
                capture=files / "issued-warmup",
                capture_fields=paths.ISSUED_FIELDS,
            ),
        )
        # Each code is valid for at least 60 s from now (seed.code_for): on a machine so slow that
        # the run would take longer, only the users it can answer in time are measured. A
        # warm-up that went wrong says nothing about the rate: then everyone is measured.
        warmup = out["challenge_warmup"]
        budget = int(warmup["rps"] * CHALLENGE_RUN_BUDGET_S)
        if warmup["non2xx"] + warmup["unanswered"] == 0 and len(measured_users) > budget:
            log(f"WARNING: measuring {budget} challenges, not {len(measured_users)}: too slow")
            out["users_not_measured"] = len(measured_users) - budget
            measured_users = measured_users[:budget]
        if backend == "postgres":
            time.sleep(PG_STATS_SETTLE_S)
        before = self.server_stats(backend)
        measured_file = write_challenges(files / "challenge-measured.txt", measured_users, tokens)
        log(f"challenge: {len(measured_users)} challenges")
        # The answers' tokens are captured for the token paths (refresh, /users/me, introspect).
        challenge = loadgen.replay_once(
            service.url,
            "/mfa/challenge",
            measured_file,
            limit_s=limit,
            capture=files / "issued-measured",
            capture_fields=paths.ISSUED_FIELDS,
        )
        out["challenge"] = logged("challenge", challenge)
        if backend == "postgres":
            time.sleep(PG_STATS_SETTLE_S)
        after = self.server_stats(backend)
        out["challenge_stats"] = stats_delta(before, after, challenge.requests)
        return out

    def server_stats(self, backend: str) -> dict[str, Any]:
        """Redis INFO commandstats (server-wide) and, on PostgreSQL, the bench database's
        counters in pg_stat_database."""
        commands = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in self.redis.info("commandstats").items()
        }
        stats: dict[str, Any] = {"redis": commands}
        if backend == "postgres":
            stats["pg"] = asyncio.run(pg_database_stats(self.opts.admin_dsn, self.opts.database))
        return stats


def write_challenges(path: Path, users: list[seed.User], tokens: dict[str, str]) -> Path:
    bodies = [{"challenge_token": tokens[u.id.hex], "code": seed.code_for(u)} for u in users]
    return loadgen.write_bodies(path, bodies)


async def pg_database_stats(admin_dsn: str, database: str) -> dict[str, int]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit, xact_rollback, tup_fetched, tup_returned, tup_inserted,"
            " tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1",
            database,
        )
        return {k: int(v) for k, v in dict(row).items()} if row else {}
    finally:
        await conn.close()


def stats_delta(before: dict[str, Any], after: dict[str, Any], requests: int) -> dict[str, Any]:
    """Per-request deltas of the server counters over the measured challenge run."""
    per = max(requests, 1)
    redis_delta = {
        name: after["redis"][name] - before["redis"].get(name, 0)
        for name in after["redis"]
        if after["redis"][name] - before["redis"].get(name, 0) > 0
    }
    out: dict[str, Any] = {
        "requests": requests,
        "redis_commands_per_request_server_wide": round(sum(redis_delta.values()) / per, 2),
        "redis_by_command_per_request": {
            k: round(v / per, 2) for k, v in sorted(redis_delta.items(), key=lambda kv: -kv[1])
        },
    }
    if "pg" in after:
        pg = {k: after["pg"][k] - before["pg"].get(k, 0) for k in after["pg"]}
        out["pg_per_request"] = {k: round(v / per, 2) for k, v in pg.items()}
        out["pg_transactions_per_request"] = round(
            (pg["xact_commit"] + pg["xact_rollback"]) / per, 2
        )
    return out


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so every `finally` stops its servers and drops its data


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        if opts.compare is not None and opts.against is not None:
            sys.stdout.write(compare.compare_files(opts.compare, opts.against))
            return 0
        # Read before the run: a file that cannot be compared should not wait for it to fail.
        earlier = compare.load(opts.compare) if opts.compare is not None else None
    except ValueError as exc:
        log(f"--compare: {exc}")
        return 2
    results = run_all(opts)
    write_results(opts, results)
    if earlier is not None and opts.compare is not None:
        sys.stdout.write("\n" + compare.markdown(earlier, results, str(opts.compare), "this run"))
    return 130 if results.get("interrupted") else 0


def run_all(opts: Options) -> dict[str, Any]:
    """Every configuration, one after the other; whatever happens, the databases, Redis keys
    and work files are cleaned up."""
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mfa-bench-"))
    bench = Bench(opts, workdir)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {
            "users": opts.users,
            "concurrency": loadgen.CONNECTIONS,
            "wrk_threads": loadgen.THREADS,
            "warmup_fraction": opts.warmup_fraction,
            "floor_seconds": opts.floor_seconds,
            "path_seconds": opts.path_seconds,
            "census_requests": opts.census,
            "challenge_ttl_s": CHALLENGE_TTL_S,
            "quick": opts.quick,
            "argon2": ARGON2,
        },
        "configs": [],
    }
    try:
        results["environment"] = report.environment(opts.admin_dsn, bench.redis)
        for backend in opts.backends:
            for workers in opts.workers:
                if backend == "sqlite" and workers > 1:
                    # `mfa-service serve` refuses it: SQLite is the one-process default.
                    log(f"sqlite with {workers} workers: not a supported setup, skipped")
                    continue
                results["configs"].append(bench.run_config_safely(backend, workers))
    except KeyboardInterrupt:
        log("interrupted: cleaning up; the results so far are written")
        results["interrupted"] = True
    finally:
        for backend in opts.backends:
            with contextlib.suppress(Exception):
                bench.drop_database(backend)
        with contextlib.suppress(Exception):
            bench.delete_redis_keys()
        if os.environ.get("BENCH_KEEP_WORKDIR"):
            log(f"work files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = report.targets(results)
    return results


def write_results(opts: Options, results: dict[str, Any]) -> None:
    markdown = report.markdown(results)
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (opts.out / "latest.md").write_text(markdown)
    sys.stdout.write(markdown)
    log(f"written: {opts.out / 'latest.json'}, {opts.out / 'latest.md'}")
