"""What metrics and the access log line cost per request, on the challenge path (#16).

    python -m bench.metrics_cost [--users 64] [--rounds 7] [--admin-dsn …] [--redis-url …]

In process, no HTTP server and no client library: each round hands the app `--users`
concurrent ASGI requests (`POST /mfa/challenge`, each user's valid TOTP code for a challenge
made beforehand) and measures `time.process_time()` around them, the CPU the process spent,
divided by the requests. Three variants, interleaved round by round so a machine that gets
busier or quieter affects them alike; each reports the least of its rounds:

  bare      the app without the observability middleware and without the domain counters
  metrics   with them, the access log line below the log level (as with --log-level warning)
  metrics+log  with them and the JSON access log line written (to /dev/null)

On a busy machine one round's CPU per request wanders by several per cent, more than what is
measured; so the cost is also taken apart: `added_us` is the CPU of what the observability
adds to one request, measured directly (the middleware around an app that answers at once, its
metrics and its log line, and the domain counter a challenge's audit event bumps; least of 5
runs of 20,000 requests), and `added_cost` is that over the bare challenge's CPU. The A/B ratios
(median over the rounds of each round's ratio) are printed beside it.

It needs PostgreSQL and Redis like the main benchmark; its database and Redis keys are its own
and are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import logging.config
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any

import pyotp
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from bench import seed
from mfa_service.app import create_app
from mfa_service.audit import service as audit_service
from mfa_service.challenges import store as challenge_store
from mfa_service.config import Settings
from mfa_service.factors.totp import otp
from mfa_service.observability import logs, metrics
from mfa_service.observability.middleware import Observability
from mfa_service.secretbox import generate_data_key

VARIANTS = ("bare", "metrics", "metrics+log")


class MovingClock:
    """The service's clock, moved one TOTP step per round: each user has a fresh step (a
    code's step is single use) without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


class _NoCounters:
    @staticmethod
    def count_event(_type: str, _detail: object) -> None:
        return None


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """The domain counters off for `bare`; the access log line on for `metrics+log`."""
    root = logging.getLogger()
    saved_level = root.level
    if name == "bare":
        setattr(audit_service, "metrics", _NoCounters())  # noqa: B010
    if name == "metrics+log":
        root.setLevel(logging.INFO)
    else:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        setattr(audit_service, "metrics", metrics)  # noqa: B010
        root.setLevel(saved_level)


def build(settings: Settings, clock: MovingClock, name: str) -> FastAPI:
    app = create_app(settings, clock)
    if name == "bare":
        stack: list[Any] = app.user_middleware
        app.user_middleware = [m for m in stack if getattr(m, "cls", None) != Observability]
    return app


async def call(app: FastAPI, body: bytes) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mfa/challenge",
        "raw_path": b"/mfa/challenge",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"mfa.bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("198.51.100.9", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def one_round(app: FastAPI, clock: MovingClock, users: list[seed.User]) -> float:
    """CPU seconds per challenge answer, for one batch of concurrent requests."""
    clock.offset += otp.PERIOD
    svc = app.state.services
    bodies = []
    for user in users:
        token, _ = await challenge_store.create(svc, user.id, 0, None)
        code = pyotp.TOTP(user.secret).at(clock.time())
        bodies.append(json.dumps({"challenge_token": token, "code": code}).encode())
    started = time.process_time()
    statuses = await asyncio.gather(*(call(app, body) for body in bodies))
    spent = time.process_time() - started
    if any(s != 200 for s in statuses):
        raise RuntimeError(f"challenge answers were not all 200: {sorted(set(statuses))}")
    return spent / len(users)


async def measure(
    settings: Settings, users: list[seed.User], rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The least CPU per request of each variant, and the median ratio to bare per round."""
    clock = MovingClock()
    apps = {name: build(settings, clock, name) for name in VARIANTS}
    best = dict.fromkeys(VARIANTS, float("inf"))
    ratios: dict[str, list[float]] = {name: [] for name in VARIANTS}
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        for name in VARIANTS:  # warm-up: imports, compiled scripts, pooled connections
            with variant(name):
                await one_round(apps[name], clock, users)
        for _ in range(rounds):
            this_round = {}
            for name in VARIANTS:
                with variant(name):
                    this_round[name] = await one_round(apps[name], clock, users)
                best[name] = min(best[name], this_round[name])
            for name in VARIANTS:
                ratios[name].append(this_round[name] / this_round["bare"])
    return best, {name: statistics.median(values) for name, values in ratios.items()}


class _Route:
    path = "/mfa/challenge"


async def _answer_at_once(scope: Any, _receive: Any, send: Any) -> None:
    scope["route"] = _Route  # as the router leaves it
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def added_us(requests: int = 20_000, runs: int = 5) -> dict[str, float]:
    """CPU µs the observability adds to one request, by part (least of `runs`)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        return None

    def scope() -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/mfa/challenge", "headers": []}

    async def per_request(app: Any) -> float:
        best = float("inf")
        for _ in range(runs):
            started = time.process_time()
            for _ in range(requests):
                await app(scope(), receive, send)
            best = min(best, (time.process_time() - started) / requests)
        return best * 1e6

    bare = await per_request(_answer_at_once)
    wrapped = Observability(_answer_at_once)
    with variant("metrics"):
        with_metrics = await per_request(wrapped)
    with variant("metrics+log"):
        with_log = await per_request(wrapped)
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        for _ in range(requests):
            metrics.count_event("challenge.succeeded", {"method": "totp"})
        best = min(best, (time.process_time() - started) / requests)
    counter = best * 1e6
    return {
        "middleware_and_metrics": round(with_metrics - bare + counter, 1),
        "log_line": round(with_log - with_metrics, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"mfa_metrics_cost_{os.getpid()}"
    database_url = (
        make_url(args.admin_dsn)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )
    prefix = f"mfa-metrics-cost-{uuid.uuid4().hex[:8]}:"
    settings = Settings(
        database_url=database_url,
        redis_url=args.redis_url,
        redis_prefix=prefix,
        data_key=generate_data_key(),
        issuer="http://mfa.bench",
        database_pool_timeout=60,
        database_pool_size=8,  # three apps at once on a PostgreSQL others use too
    )
    await seed.recreate_postgres(args.admin_dsn, name)
    try:
        users = await seed.seed(settings, args.users)
        best, ratio = await measure(settings, users, args.rounds)
        added = await added_us()
    finally:
        await seed.drop_postgres(args.admin_dsn, name)
        await _clean_redis(settings)
    bare_us = best["bare"] * 1e6
    return {
        "users": args.users,
        "rounds": args.rounds,
        "challenge_cpu_us": {k: round(v * 1e6, 1) for k, v in best.items()},
        "added_us": added,
        "added_cost": {
            "metrics": round(added["middleware_and_metrics"] / bare_us, 4),
            "metrics_and_log_line": round(sum(added.values()) / bare_us, 4),
        },
        "ab_median_ratio": {k: round(v, 4) for k, v in ratio.items()},
    }


async def _clean_redis(settings: Settings) -> None:
    from mfa_service.redis_client import connect

    assert settings.redis_url is not None
    redis = connect(settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}*", count=500)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    parser.add_argument("--users", type=int, default=64, help="concurrent requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    # The access log line as production writes it: JSON, through the redaction, to nowhere.
    logging.config.dictConfig(logs.dict_config("json", logging.WARNING))
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (for the process's life)
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
