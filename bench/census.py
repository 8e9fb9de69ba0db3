"""The round-trip census: a service instance that talks to Redis and PostgreSQL through
counting proxies (wirecount.py), and a few users who log in and answer their challenge one
after the other; per request, every Redis command and SQL statement it sent, and the round
trips. Medians over the requests, and the commands and SQL of one typical request."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from bench import seed
from bench.servers import Server
from bench.wirecount import CountingProxy, PostgresParser, RedisParser, Tally

# Requests not counted: they open connections and prepare statements. More than the
# service's pool (10 connections, used in turn): every connection must have prepared its
# statements, or a Parse round trip is counted that a warm service does not make.
WARMUP = 15
# The service's Lua scripts, named by the SHA-1 of their text (optional: a moved script is
# shown by its hash).
SCRIPTS = [
    ("mfa_service.factors.throttle", "BEGIN", "throttle.begin"),
    ("mfa_service.factors.throttle", "FINISH", "throttle.finish"),
    ("mfa_service.limits.attempts", "RESERVE", "limits.reserve"),
    ("mfa_service.limits.attempts", "SETTLE", "limits.settle"),
    ("mfa_service.challenges.store", "CREATE", "challenge.create"),
]

# (PostgreSQL proxy port or None, Redis proxy port) → a started service using them.
StartService = Callable[[int | None, int], Server]


def run(
    start_service: StartService,
    users: list[seed.User],
    redis_upstream: tuple[str, int],
    pg_upstream: tuple[str, int] | None,
    after: Callable[[Server, str], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The census over `users` (the first WARMUP not counted). `after(service, access token)`
    runs while the service is still up (the JWT verification hook)."""
    scripts = script_names()
    redis_proxy = CountingProxy(*redis_upstream, lambda tally: RedisParser(tally, scripts))
    with contextlib.ExitStack() as stack:
        tallies = {"redis": redis_proxy.tally}
        redis_port = redis_proxy.start()
        stack.callback(redis_proxy.stop)
        pg_port = None
        if pg_upstream is not None:
            pg_proxy = CountingProxy(*pg_upstream, PostgresParser)
            tallies["db"] = pg_proxy.tally
            pg_port = pg_proxy.start()
            stack.callback(pg_proxy.stop)
        service = start_service(pg_port, redis_port)
        stack.callback(service.stop)
        samples: dict[str, list[dict[str, Any]]] = {"login": [], "challenge": []}
        token = ""
        for i, user in enumerate(users):
            with counting(tallies) as login:
                status, body = post_json(
                    service.url + "/auth/login", {"email": user.email, "password": seed.PASSWORD}
                )
            if status != 200:
                raise RuntimeError(f"census login answered {status}: {body}")
            with counting(tallies) as challenge:
                status, body = post_json(
                    service.url + "/mfa/challenge",
                    {"challenge_token": body["challenge_token"], "code": seed.code_for(user)},
                )
            if status != 200:
                raise RuntimeError(f"census challenge answered {status}: {body}")
            token = body["access_token"]
            if i >= WARMUP:
                samples["login"].append(login)
                samples["challenge"].append(challenge)
        extra = after(service, token)
    census: dict[str, Any] = {kind: summarise(runs) for kind, runs in samples.items()}
    census["requests_each"] = len(samples["challenge"])
    census["database_counted"] = pg_upstream is not None
    return census, extra


def script_names() -> dict[str, str]:
    names = {}
    for module, attribute, name in SCRIPTS:
        try:
            text = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue
        if isinstance(text, str):
            names[hashlib.sha1(text.encode()).hexdigest()] = name
    return names


def post_json(url: str, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@contextlib.contextmanager
def counting(tallies: dict[str, Tally]) -> Iterator[dict[str, Any]]:
    """What each proxy saw during the block (plus a moment for the last bytes in flight)."""
    marks = {name: tally.mark() for name, tally in tallies.items()}
    seen: dict[str, Any] = {}
    yield seen
    time.sleep(0.05)
    for name, tally in tallies.items():
        round_trips, events = tally.since(marks[name])
        seen[name] = {"round_trips": round_trips, "events": events}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the sequential requests, and the events of one typical request."""
    out: dict[str, Any] = {}
    redis_runs = [r["redis"] for r in runs]
    out["redis_commands"] = _median([len(r["events"]) for r in redis_runs])
    out["redis_round_trips"] = _median([r["round_trips"] for r in redis_runs])
    out["redis_commands_range"] = _range([len(r["events"]) for r in redis_runs])
    typical = min(redis_runs, key=lambda r: abs(len(r["events"]) - out["redis_commands"]))
    out["redis_sample"] = typical["events"]
    if runs and "db" in runs[0]:
        db_runs = [r["db"] for r in runs]
        out["db_statements"] = _median([len(r["events"]) for r in db_runs])
        out["db_round_trips"] = _median([r["round_trips"] for r in db_runs])
        out["db_transactions"] = _median([_count(r["events"], "BEGIN") for r in db_runs])
        out["db_commits"] = _median([_count(r["events"], "COMMIT") for r in db_runs])
        out["db_rollbacks"] = _median([_count(r["events"], "ROLLBACK") for r in db_runs])
        out["db_statements_range"] = _range([len(r["events"]) for r in db_runs])
        typical = min(db_runs, key=lambda r: abs(len(r["events"]) - out["db_statements"]))
        out["db_sample"] = typical["events"]
    return out


def _median(values: list[int]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _range(values: list[int]) -> list[int]:
    return [min(values), max(values)] if values else []


def _count(statements: list[str], verb: str) -> int:
    return sum(1 for s in statements if s.upper().startswith(verb))
