"""The machine and versions, the ratios, the targets of issues #5 and #12 with pass/miss, and
the markdown tables."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import redis

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "sqlmodel",
    "asyncpg",
    "aiosqlite",
    "redis",
    "pyjwt",
    "argon2-cffi",
    "libpass",
    "pydantic",
]
RUNS_EXPECTING_SUCCESS = (
    "login_warmup",
    "login",
    "healthz_under_login",
    "challenge_warmup",
    "challenge",
    "floor",
    "refresh_warmup",
    "refresh",
    "refresh_floor",
    "me_warmup",
    "me",
    "me_floor",
    "introspect_warmup",
    "introspect",
    "introspect_floor",
)
LIMITS = {
    "challenge_floor": 0.6,
    "challenge_p99_ms": 100.0,
    "refresh_floor": 0.6,
    "me_floor": 0.6,
    "introspect_floor": 0.6,
    "login_argon2": 0.85,
    "healthz_p99_ms": 50.0,
    "redis_round_trips": 2,
    "db_transactions": 1,
    "peak_rss_mb": 150.0,
}


def environment(admin_dsn: str, r: redis.Redis) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "packages": versions,
        "postgresql": asyncio.run(_pg_version(admin_dsn)),
        "redis": r.info("server").get("redis_version"),
        "wrk": (_run(["wrk", "-v"]).splitlines() or ["?"])[0].split(" [")[0],
        **git_state(),
    }


def git_state() -> dict[str, Any]:
    """The commit of the service under test, and whether its source has changes not
    committed: the tree `mfa_service` is imported from, which PYTHONPATH may make another
    checkout than the bench's (bench/README.md, measuring an earlier commit)."""
    source = service_source()
    return {
        "git_commit": _run(["git", "rev-parse", "HEAD"], cwd=source).strip() or None,
        "git_uncommitted_changes": bool(_run(["git", "status", "--porcelain", "--", "."], source)),
        "service_source": str(source),
    }


def service_source() -> Path:
    """The directory holding the `mfa_service` package (src/ of a checkout)."""
    spec = importlib.util.find_spec("mfa_service")
    if spec is None or spec.origin is None:
        return ROOT / "src"
    return Path(spec.origin).resolve().parent.parent


def _run(cmd: list[str], cwd: Path = ROOT) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    except OSError:
        return ""
    return done.stdout or done.stderr


def _cpu_model() -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_gib() -> float | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


async def _pg_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _commits(results: dict[str, Any]) -> str:
    commits = []
    for c in [results.get("environment", {}), *results.get("configs", [])]:
        if "git_commit" not in c:
            continue
        label = str(c["git_commit"])[:12]
        if c.get("git_uncommitted_changes"):
            label += " (with uncommitted changes in src/)"
        if label not in commits:
            commits.append(label)
    return ", then ".join(commits)


def config_name(c: dict[str, Any]) -> str:
    return f"{'PostgreSQL' if c['backend'] == 'postgres' else 'SQLite'}, {c['workers']}w"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _get(c: dict[str, Any], run: str, field: str, item: str | None = None) -> Any:
    """A figure of one run of a configuration (`item` of it, for a dict such as
    `latency_ms`); None when the run did not happen."""
    value = (c.get(run) or {}).get(field)
    return (value or {}).get(item) if item is not None else value


@dataclass(frozen=True)
class Ratio:
    """A throughput over its baseline, from two runs of one configuration."""

    key: str  # in each configuration's "ratios", and in LIMITS
    label: str
    run: str
    baseline: str
    baseline_field: str = "rps"


CHALLENGE_FLOOR = Ratio("challenge_floor", "challenge ÷ floor", "challenge", "floor")
LOGIN_ARGON2 = Ratio("login_argon2", "login ÷ raw argon2", "login", "argon2_raw", "verifies_per_s")
# The token paths (bench/paths.py), each over its own floor.
PATH_FLOORS = (
    Ratio("refresh_floor", "refresh ÷ floor", "refresh", "refresh_floor"),
    Ratio("me_floor", "GET /users/me ÷ floor", "me", "me_floor"),
    Ratio("introspect_floor", "introspect ÷ floor", "introspect", "introspect_floor"),
)
# Targets with one worker, as issues #5 and #12 set them.
FLOOR_RATIOS = (CHALLENGE_FLOOR, *PATH_FLOORS)
RATIOS = (CHALLENGE_FLOOR, LOGIN_ARGON2, *PATH_FLOORS)


def ratio(c: dict[str, Any], r: Ratio) -> float | None:
    return _ratio(_get(c, r.run, "rps"), _get(c, r.baseline, r.baseline_field))


def ratios(c: dict[str, Any]) -> dict[str, float | None]:
    """Every ratio of a configuration (None where a run is missing): from the runs, so
    results files written before a ratio existed give it too."""
    return {r.key: ratio(c, r) for r in RATIOS}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue #5 for every configuration it applies to; `pass` is None when
    it could not be measured there."""
    out: list[dict[str, Any]] = []

    def add(name: str, c: dict[str, Any], value: Any, limit: Any, ok: bool | None) -> None:
        out.append(
            {"target": name, "config": config_name(c), "value": value, "limit": limit, "pass": ok}
        )

    for c in results.get("configs", []):
        if "error" in c:
            add("configuration completed", c, c["error"], "no error", False)
            continue
        if "token_paths_error" in c:
            add("token paths completed", c, c["token_paths_error"], "no error", False)
        if c["workers"] == 1:
            for floor_ratio in FLOOR_RATIOS:
                value, limit = ratio(c, floor_ratio), LIMITS[floor_ratio.key]
                ok = value is not None and value >= limit
                add(floor_ratio.label, c, value, f"≥ {limit}", ok)
            p99, limit = _get(c, "challenge", "latency_ms", "p99"), LIMITS["challenge_p99_ms"]
            add("challenge p99 (ms)", c, p99, f"≤ {limit}", p99 is not None and p99 <= limit)
        bad = 0
        for run in RUNS_EXPECTING_SUCCESS:
            r = c.get(run) or {}
            e = r.get("socket_errors", {})
            # Not read errors: an idle connection at the end of a run may be closed by the
            # server's keep-alive timeout; a request lost that way is `unanswered`.
            bad += r.get("non2xx", 0) + r.get("unanswered", 0)
            bad += e.get("connect", 0) + e.get("write", 0) + e.get("timeout", 0)
        add("no non-2xx, unanswered or timed-out request", c, bad, "= 0", bad == 0)
        login = ratio(c, LOGIN_ARGON2)
        limit = LIMITS["login_argon2"]
        add("login ÷ raw argon2", c, login, f"≥ {limit}", login is not None and login >= limit)
        p99 = c.get("healthz_under_login", {}).get("latency_ms", {}).get("p99")
        limit = LIMITS["healthz_p99_ms"]
        add("/healthz p99 under login (ms)", c, p99, f"≤ {limit}", p99 is not None and p99 <= limit)
        census = c.get("census", {}).get("challenge")
        if census:
            trips = census["redis_round_trips"]
            limit = LIMITS["redis_round_trips"]
            add("Redis round trips per challenge", c, trips, f"≤ {limit}", trips <= limit)
        if c["backend"] == "postgres" and census and "db_transactions" in census:
            xacts = census["db_transactions"]
            limit = LIMITS["db_transactions"]
            add("DB transactions per challenge", c, xacts, f"≤ {limit}", xacts <= limit)
        peak = max(c.get("peak_rss_mb") or [0.0])
        limit = LIMITS["peak_rss_mb"]
        add("peak RSS per worker (MB)", c, peak, f"≤ {limit:.0f}", 0 < peak <= limit)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _clip(sql: str, width: int = 160) -> str:
    return sql if len(sql) <= width else sql[: width - 1] + "…"


def _share(value: float | None) -> str | None:
    return None if value is None else f"{value:.0%}"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(_fmt(c) for c in cells) + " |"


def _megabytes(values: list[float] | None) -> str:
    return ", ".join(f"{m:.1f}" for m in values) if values else "–"


# The rows of the throughput table, in order.
RUN_LABELS = (
    ("challenge", "challenge (each user once)"),
    ("floor", "floor (bench/floor.py)"),
    ("login", "login (each user once)"),
    ("healthz_under_login", "/healthz during login (paced probe)"),
    ("healthz_plain", "/healthz idle (plain wrk)"),
    ("refresh", "refresh (each user's token once)"),
    ("refresh_floor", "refresh floor (bench/floor.py)"),
    ("me", "GET /users/me (fixed time)"),
    ("me_floor", "GET /users/me floor (bench/floor.py)"),
    ("introspect", "introspect (fixed time)"),
    ("introspect_floor", "introspect floor (bench/floor.py)"),
)
# The census's request kinds (census.py), in the order of the round-trip table.
CENSUS_KINDS = ("login", "challenge", "refresh", "me", "introspect")
CENSUS_LABELS = {"me": "GET /users/me"}


def _run_row(c: dict[str, Any], label: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return _row(
        [
            config_name(c),
            label,
            r["requests"],
            r["rps"],
            lat["p50"],
            lat["p95"],
            lat["p99"],
            r["non2xx"],
            r.get("unanswered", 0),
            _share(r.get("wrk_cpu_share")),
        ]
    )


def markdown(results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    opts = results["options"]
    pk = env.get("packages", {})
    lines = [
        f"# mfa-service benchmark, {env.get('date', '?')}",
        "",
        f"- Machine: {env.get('cores')} cores ({env.get('cpu_model')}), "
        f"{env.get('memory_gib')} GiB; load average at start "
        f"{', '.join(str(x) for x in env.get('load_average_at_start', []))}",
        f"- Python {env.get('python')}; "
        + ", ".join(f"{name} {version}" for name, version in pk.items()),
        f"- PostgreSQL {env.get('postgresql')}, Redis {env.get('redis')}, {env.get('wrk')}",
        f"- git {_commits(results)}",
        f"- {opts['users']:,} users, concurrency {opts['concurrency']} "
        f"(wrk, {opts['wrk_threads']} threads, same machine), warm-up "
        f"{opts['warmup_fraction']:.0%} of the users; argon2id "
        f"{opts['argon2']['memory_kib']} KiB / t={opts['argon2']['time_cost']} / "
        f"p={opts['argon2']['parallelism']}"
        + ("; **quick run**" if opts.get("quick") else "")
        + f"; the run took {results.get('total_seconds', 0) / 60:.1f} min"
        + (
            "; **interrupted**: only what was measured before" if results.get("interrupted") else ""
        ),
        "",
        "## Targets",
        "",
        "| target | configuration | value | limit | result |",
        "|---|---|---:|---|---|",
    ]
    for t in results.get("targets", []):
        verdict = {True: "pass", False: "**MISS**", None: "not measured"}[t["pass"]]
        lines.append(_row([t["target"], t["config"], t["value"], t["limit"], verdict]))

    lines += [
        "",
        "## Throughput and latency",
        "",
        "| configuration | run | requests | req/s | p50 ms | p95 ms | p99 ms | non-2xx "
        "| unanswered | wrk CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results.get("configs", []):
        for key, label in RUN_LABELS:
            if c.get(key):
                lines.append(_run_row(c, label, c[key]))
        check = c.get("loadgen_check", {})
        for key, label in (
            ("noop_replay_lua", "loadgen check: /noop, replay.lua"),
            ("noop_plain_wrk", "loadgen check: /noop, plain wrk"),
        ):
            if check.get(key):
                lines.append(_run_row(c, label, check[key]))

    for c in results.get("configs", []):
        skipped = c.get("users_without_token", 0) + c.get("users_not_measured", 0)
        if skipped:
            lines += [
                "",
                f"{config_name(c)}: {c.get('users_without_token', 0):,} users got no "
                f"challenge token from their login; {c.get('users_not_measured', 0):,} were "
                "left out of the measured challenge run, which would have outlasted their "
                "TOTP codes.",
            ]
    lines += [
        "",
        "## Ratios and memory",
        "",
        "Raw argon2id: verifies per second with one process per core verifying at once, "
        "measured just before each configuration's logins (and one verify alone, in ms).",
        "",
        "Peak RSS: after the login and challenge runs, and at the end (after the token paths too).",
        "",
        "| configuration | challenge ÷ floor | login ÷ raw argon2 | refresh ÷ floor "
        "| GET /users/me ÷ floor | introspect ÷ floor | raw argon2 (/s) "
        "| one verify (ms) | peak RSS per worker (MB) | peak RSS at the end (MB) "
        "| RSS after start (MB) | RSS after logins (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for c in results.get("configs", []):
        lines.append(
            _row(
                [
                    config_name(c),
                    *(ratio(c, r) for r in RATIOS),
                    _get(c, "argon2_raw", "verifies_per_s"),
                    _get(c, "argon2_raw", "single_verify_ms"),
                    _megabytes(c.get("peak_rss_mb")),
                    _megabytes(c.get("peak_rss_mb_end")),
                    _megabytes(c.get("rss_after_start_mb")),
                    _megabytes(c.get("rss_after_login_mb")),
                ]
            )
        )

    lines += [
        "",
        "## Round trips per request",
        "",
        "Census: sequential requests through counting proxies (medians; every command and "
        "statement the service sent, whoever else uses the servers). Measured run: server "
        "counters over the whole timed challenge run ÷ its challenges; Redis `INFO "
        "commandstats` is server-wide, so other clients of that Redis add to it.",
        "",
        "| configuration | request | Redis commands | Redis round trips | SQL statements "
        "| DB round trips | DB transactions (BEGIN) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in results.get("configs", []):
        census = c.get("census")
        if not census:
            continue
        for kind in CENSUS_KINDS:
            if kind not in census:  # results from before the token paths
                continue
            s = census[kind]
            lines.append(
                _row(
                    [
                        config_name(c),
                        f"{CENSUS_LABELS.get(kind, kind)} (census, n={census['requests_each']})",
                        s["redis_commands"],
                        s["redis_round_trips"],
                        s.get("db_statements"),
                        s.get("db_round_trips"),
                        s.get("db_transactions"),
                    ]
                )
            )
    for c in results.get("configs", []):
        st = c.get("challenge_stats")
        if st:
            lines.append(
                _row(
                    [
                        config_name(c),
                        "challenge (measured run, server counters)",
                        st.get("redis_commands_per_request_server_wide"),
                        None,
                        None,
                        None,
                        st.get("pg_transactions_per_request"),
                    ]
                )
            )
    for c in results.get("configs", []):
        census = c.get("census")
        if not census:
            continue
        for kind in ("challenge", "login", *CENSUS_KINDS[2:]):
            if kind not in census:
                continue
            s = census[kind]
            name = CENSUS_LABELS.get(kind, kind)
            lines += ["", f"{config_name(c)}, one {name}: Redis " + ", ".join(s["redis_sample"])]
            if "db_sample" in s:
                lines += ["", f"{config_name(c)}, one {name}: SQL", ""]
                lines += [f"{i}. `{_clip(sql)}`" for i, sql in enumerate(s["db_sample"], 1)]

    lines += ["", "## JWT verifications per second (mfa_verify, cached JWKS)", ""]
    for c in results.get("configs", []):
        v = c.get("jwt_verifications")
        if v:
            lines.append(f"- {config_name(c)}: {_fmt(v.get('per_s'))} ({v.get('reason') or 'ok'})")
    return "\n".join(lines) + "\n"
