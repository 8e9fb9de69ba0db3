"""The round-trip census: a service instance that talks to Redis and PostgreSQL through
counting proxies (wirecount.py), and a few users who log in and answer their challenge one
after the other, then refresh, read /users/me and have their access token introspected; per
request, every Redis command and SQL statement it sent, and the round trips. Medians over the
requests, and the commands and SQL of one typical request."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from bench import seed
from bench.servers import Server
from bench.wirecount import CountingProxy, PostgresParser, RedisParser, Tally
from mfa_service.config import Settings

# The service's pool hands out its connections in turn, and a statement's first run on a
# connection costs one more round trip (Parse) than a warm service makes.
_POOL_DEFAULT = Settings.model_fields["database_pool_size"].default
POOL_SIZE = _POOL_DEFAULT if isinstance(_POOL_DEFAULT, int) else 20
# Users whose login and challenge are not counted. More than the pool: a user's requests take
# a few connections in a row, so fewer users would leave some connections without one of its
# statements, and then the first counted users (up to 5 of the quick run's 8, with 15 warm-up
# users and 20 connections) all met such a connection and counted a Parse.
WARMUP = POOL_SIZE + 5
# The token paths' statements are new to every connection after the logins and challenges:
# before they are counted, each path runs this often in a row (a refresh with the token the
# previous one returned), so every connection has prepared them.
TOKEN_PATH_WARMUP = 2 * POOL_SIZE
KINDS = ("login", "challenge", "refresh", "me", "introspect")
# The service's Lua scripts, named by the SHA-1 of their text (optional: a moved script is
# shown by its hash).
SCRIPTS = [
    ("mfa_service.factors.throttle", "BEGIN", "throttle.begin"),
    ("mfa_service.factors.throttle", "FINISH", "throttle.finish"),
    ("mfa_service.limits.attempts", "RESERVE", "limits.reserve"),
    ("mfa_service.limits.attempts", "SETTLE", "limits.settle"),
    ("mfa_service.challenges.store", "CREATE", "challenge.create"),
    ("mfa_service.challenges.store", "REVOKE", "challenge.revoke"),
]

# (PostgreSQL proxy port or None, Redis proxy port) → a started service using them.
StartService = Callable[[int | None, int], Server]


def run(
    start_service: StartService,
    users: list[seed.User],
    redis_upstream: tuple[str, int],
    pg_upstream: tuple[str, int] | None,
    introspection: str,
    after: Callable[[Server, str], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The census over `users` (the first WARMUP not counted). `introspection` is the
    Authorization header of an introspection client. `after(service, access token)` runs
    while the service is still up (the JWT verification hook)."""
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
        samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        answers = []
        for i, user in enumerate(users):
            login, challenge, answer = _sign_in(service.url, tallies, user)
            answers.append(answer)
            if i >= WARMUP:
                samples["login"].append(login)
                samples["challenge"].append(challenge)
        calls = TokenCalls(service.url, introspection)
        calls.warm_up(answers[0], TOKEN_PATH_WARMUP)
        for answer in answers[WARMUP:]:
            for kind, seen in calls.counted(tallies, answer).items():
                samples[kind].append(seen)
        extra = after(service, answers[-1]["access_token"])
    census: dict[str, Any] = {kind: summarise(runs) for kind, runs in samples.items()}
    census["requests_each"] = len(samples["challenge"])
    census["database_counted"] = pg_upstream is not None
    return census, extra


def _sign_in(
    url: str, tallies: dict[str, Tally], user: seed.User
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A login and its challenge, each counted; and the challenge's answer (the tokens)."""
    with counting(tallies) as login:
        status, body = post_json(
            url + "/auth/login", {"email": user.email, "password": seed.PASSWORD}
        )
    if status != 200:
        raise RuntimeError(f"census login answered {status}: {body}")
    with counting(tallies) as challenge:
        status, body = post_json(
            url + "/mfa/challenge",
            {"challenge_token": body["challenge_token"], "code": seed.code_for(user)},
        )
    if status != 200:
        raise RuntimeError(f"census challenge answered {status}: {body}")
    return login, challenge, body


class TokenCalls:
    """Refresh, GET /users/me and introspection with the tokens of a challenge answer."""

    def __init__(self, url: str, introspection: str) -> None:
        self._url = url
        self._introspection = introspection

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        return _expect(
            "refresh", *post_json(self._url + "/auth/refresh", {"refresh_token": refresh_token})
        )

    def me(self, access_token: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {access_token}"}
        return _expect("GET /users/me", *call(self._url + "/users/me", None, headers))

    def introspect(self, access_token: str) -> dict[str, Any]:
        form = urllib.parse.urlencode({"token": access_token}).encode()
        headers = {
            "Authorization": self._introspection,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        body = _expect("introspect", *call(self._url + "/oauth/introspect", form, headers))
        if body.get("active") is not True:
            raise RuntimeError(f"census introspection found the token inactive: {body}")
        return body

    def warm_up(self, answer: dict[str, Any], times: int) -> None:
        """Each path `times` in a row, uncounted: one path after the other, so each takes the
        pool's connections in turn (a refresh token works once: each refresh uses the one the
        previous refresh returned)."""
        refresh_token = answer["refresh_token"]
        for _ in range(times):
            refresh_token = self.refresh(refresh_token)["refresh_token"]
        for _ in range(times):
            self.me(answer["access_token"])
        for _ in range(times):
            self.introspect(answer["access_token"])

    def counted(self, tallies: dict[str, Tally], answer: dict[str, Any]) -> dict[str, Any]:
        """Each path once with the answer's tokens, counted."""
        out: dict[str, Any] = {}
        with counting(tallies) as out["refresh"]:
            self.refresh(answer["refresh_token"])
        with counting(tallies) as out["me"]:
            self.me(answer["access_token"])
        with counting(tallies) as out["introspect"]:
            self.introspect(answer["access_token"])
        return out


def _expect(what: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    if status != 200:
        raise RuntimeError(f"census {what} answered {status}: {body}")
    return body


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
    return call(url, json.dumps(body).encode(), {"Content-Type": "application/json"})


def call(url: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """GET (no data) or POST; the status and the JSON answer."""
    request = urllib.request.Request(url, data=data, headers=headers)
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
