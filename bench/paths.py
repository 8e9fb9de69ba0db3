"""The token paths: refresh, an authenticated GET /users/me and introspection, each measured
on the service with the tokens its challenge run handed out, then on its own floor.

Every challenge answer (warm-up and measured) carries an access token and a refresh token,
captured by replay.lua. A refresh token rotates, so each is sent once (a warm-up of the first
users', then the others'); an access token can be shown again and again, so /users/me and
introspection run for a fixed time over all of them, after a warm-up of their own. The floors
(bench/floor.py) then get the same requests, round and round for a fixed time.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.progress import log, logged

# What the capture of a challenge answer holds, in this order, one answer per line.
ISSUED_FIELDS = ("access_token", "refresh_token")
INTROSPECTION_CLIENT_ID = "bench"


@dataclass(frozen=True)
class Issued:
    """The tokens of one challenge answer."""

    access: str
    refresh: str


@dataclass(frozen=True)
class TokenPath:
    """A path measured with issued tokens, against its own floor."""

    key: str  # its runs in the results: KEY_warmup, KEY, KEY_floor
    label: str
    route: str  # on the service
    floor_route: str  # on bench/floor.py
    shape: loadgen.Shape
    single_use: bool  # each line once (refresh tokens rotate), else for a fixed time
    line: Callable[[Issued], str]


@dataclass(frozen=True)
class Timing:
    warmup_seconds: float  # fixed-time runs on the service
    seconds: float
    floor_warmup_seconds: float
    floor_seconds: float


def basic_credentials(client_id: str, secret: str) -> str:
    """The Authorization header value of RFC 6749 2.3.1 (each half form-encoded first)."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def token_paths(introspection_secret: str) -> list[TokenPath]:
    basic = basic_credentials(INTROSPECTION_CLIENT_ID, introspection_secret)
    return [
        TokenPath(
            key="refresh",
            label="POST /auth/refresh",
            route="/auth/refresh",
            floor_route="/floor/refresh",
            shape=loadgen.JSON,
            single_use=True,
            line=lambda t: json.dumps({"refresh_token": t.refresh}, separators=(",", ":")),
        ),
        TokenPath(
            key="me",
            label="GET /users/me",
            route="/users/me",
            floor_route="/floor/me",
            shape=loadgen.Shape("bearer"),
            single_use=False,
            line=lambda t: t.access,
        ),
        TokenPath(
            key="introspect",
            label="POST /oauth/introspect",
            route="/oauth/introspect",
            floor_route="/floor/introspect",
            shape=loadgen.Shape("form", header=f"Authorization: {basic}"),
            single_use=False,
            line=lambda t: "token=" + urllib.parse.quote_plus(t.access),
        ),
    ]


def read_issued(captures: list[Path]) -> list[Issued]:
    """The captured answers, in file order (each line: access token, refresh token)."""
    issued = []
    for capture in captures:
        for line in capture.read_text().splitlines():
            access, _, refresh = line.partition(" ")
            if access and refresh:
                issued.append(Issued(access, refresh))
    return issued


def measure(
    url: str, paths: list[TokenPath], issued: list[Issued], warm: int, files: Path, t: Timing
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Every path on the service; the results, and the file of each path's floor."""
    if len(issued) <= warm:
        raise RuntimeError(f"only {len(issued)} challenge answers carried tokens")
    out: dict[str, Any] = {"issued_token_pairs": len(issued)}
    floor_files = {}
    for path in paths:
        lines = [path.line(i) for i in issued]
        if path.single_use:
            results, floor_files[path.key] = _once(url, path, lines, warm, files)
        else:
            results, floor_files[path.key] = _timed(url, path, lines, files, t)
        out.update(results)
    return out, floor_files


def _once(
    url: str, path: TokenPath, lines: list[str], warm: int, files: Path
) -> tuple[dict[str, Any], Path]:
    """Each line once: the first `warm` as the warm-up, then the measured run."""
    runs = (
        (f"{path.key}_warmup", files / f"{path.key}-warmup.txt", lines[:warm]),
        (path.key, files / f"{path.key}-measured.txt", lines[warm:]),
    )
    limit = 60 + len(lines) / 20  # an upper bound only: the run ends with its last answer
    out: dict[str, Any] = {}
    for key, source, part in runs:
        log(f"{key}: {path.label}, {len(part)} requests")
        loadgen.write_lines(source, part)
        result = loadgen.replay_once(url, path.route, source, limit_s=limit, shape=path.shape)
        out[key] = logged(key, result)
    return out, runs[-1][1]


def _timed(
    url: str, path: TokenPath, lines: list[str], files: Path, t: Timing
) -> tuple[dict[str, Any], Path]:
    """All the lines round and round: a warm-up, then the measured run."""
    source = loadgen.write_lines(files / f"{path.key}.txt", lines)
    out: dict[str, Any] = {}
    for key, seconds in ((f"{path.key}_warmup", t.warmup_seconds), (path.key, t.seconds)):
        log(f"{key}: {path.label} for {seconds:.0f} s over {len(lines)} access tokens")
        result = loadgen.replay_for(url, path.route, source, seconds=seconds, shape=path.shape)
        out[key] = logged(key, result)
    return out, source


def measure_floors(
    url: str, paths: list[TokenPath], floor_files: dict[str, Path], t: Timing
) -> dict[str, Any]:
    """Each path's floor with the requests the service got (its measured run's, for a
    single-use path: those tokens are in the database, used)."""
    out: dict[str, Any] = {}
    for path in paths:
        source = floor_files.get(path.key)
        if source is None:
            continue
        route, shape = path.floor_route, path.shape
        loadgen.replay_for(url, route, source, seconds=t.floor_warmup_seconds, shape=shape)
        result = loadgen.replay_for(url, route, source, seconds=t.floor_seconds, shape=shape)
        out[f"{path.key}_floor"] = logged(f"{path.key} floor", result)
    return out
