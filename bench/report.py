"""The machine and versions, the targets of issue #5 with pass/miss, and the markdown table."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
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
)
LIMITS = {
    "challenge_floor": 0.6,
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
    return {
        "git_commit": _run(["git", "rev-parse", "HEAD"]).strip() or None,
        "git_uncommitted_changes": bool(_run(["git", "status", "--porcelain", "--", "src"])),
    }


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
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


def _get(c: dict[str, Any], run: str, field: str) -> Any:
    """A figure of one run of a configuration; None when the run did not happen."""
    return (c.get(run) or {}).get(field)


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
        if c["workers"] == 1:
            ratio = _ratio(_get(c, "challenge", "rps"), _get(c, "floor", "rps"))
            limit = LIMITS["challenge_floor"]
            add("challenge ÷ floor", c, ratio, f"≥ {limit}", ratio is not None and ratio >= limit)
        bad = 0
        for run in RUNS_EXPECTING_SUCCESS:
            r = c.get(run) or {}
            e = r.get("socket_errors", {})
            # Not read errors: an idle connection at the end of a run may be closed by the
            # server's keep-alive timeout; a request lost that way is `unanswered`.
            bad += r.get("non2xx", 0) + r.get("unanswered", 0)
            bad += e.get("connect", 0) + e.get("write", 0) + e.get("timeout", 0)
        add("no non-2xx, unanswered or timed-out request", c, bad, "= 0", bad == 0)
        ratio = _ratio(_get(c, "login", "rps"), _get(c, "argon2_raw", "verifies_per_s"))
        limit = LIMITS["login_argon2"]
        add("login ÷ raw argon2", c, ratio, f"≥ {limit}", ratio is not None and ratio >= limit)
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
    runs = [
        ("challenge", "challenge (each user once)"),
        ("floor", "floor (bench/floor.py)"),
        ("login", "login (each user once)"),
        ("healthz_under_login", "/healthz during login (paced probe)"),
        ("healthz_plain", "/healthz idle (plain wrk)"),
    ]
    for c in results.get("configs", []):
        for key, label in runs:
            r = c.get(key)
            if r:
                lat = r["latency_ms"]
                lines.append(
                    _row(
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
                )
        check = c.get("loadgen_check", {})
        for key, label in (
            ("noop_replay_lua", "loadgen check: /noop, replay.lua"),
            ("noop_plain_wrk", "loadgen check: /noop, plain wrk"),
        ):
            r = check.get(key)
            if r:
                lat = r["latency_ms"]
                lines.append(
                    _row(
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
                )

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
        "| configuration | challenge ÷ floor | login ÷ raw argon2 | raw argon2 (/s) "
        "| one verify (ms) | peak RSS per worker (MB) | RSS after start (MB) "
        "| RSS after logins (MB) |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for c in results.get("configs", []):
        argon2 = _get(c, "argon2_raw", "verifies_per_s")
        lines.append(
            _row(
                [
                    config_name(c),
                    _ratio(_get(c, "challenge", "rps"), _get(c, "floor", "rps")),
                    _ratio(_get(c, "login", "rps"), argon2),
                    argon2,
                    _get(c, "argon2_raw", "single_verify_ms"),
                    ", ".join(f"{m:.1f}" for m in c.get("peak_rss_mb", [])),
                    ", ".join(f"{m:.1f}" for m in c.get("rss_after_start_mb", [])),
                    ", ".join(f"{m:.1f}" for m in c.get("rss_after_login_mb", [])),
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
        for kind in ("login", "challenge"):
            s = census[kind]
            lines.append(
                _row(
                    [
                        config_name(c),
                        f"{kind} (census, n={census['requests_each']})",
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
        for kind in ("challenge", "login"):
            s = census[kind]
            lines += ["", f"{config_name(c)}, one {kind}: Redis " + ", ".join(s["redis_sample"])]
            if "db_sample" in s:
                lines += ["", f"{config_name(c)}, one {kind}: SQL", ""]
                lines += [f"{i}. `{_clip(sql)}`" for i, sql in enumerate(s["db_sample"], 1)]

    lines += ["", "## JWT verifications per second (mfa_verify, cached JWKS)", ""]
    for c in results.get("configs", []):
        v = c.get("jwt_verifications")
        if v:
            lines.append(f"- {config_name(c)}: {_fmt(v.get('per_s'))} ({v.get('reason') or 'ok'})")
    return "\n".join(lines) + "\n"
