"""Prometheus metrics. Labels are route templates, methods, outcomes and statuses: never a
user id, email, IP or raw path (each distinct value is a time series forever).

With several uvicorn workers, `serve` sets PROMETHEUS_MULTIPROC_DIR (an empty directory of
its own) before the workers start: each worker's values then live in memory-mapped files
there, and `/metrics` in any worker adds up every worker's (the client's multiprocess mode).
Only counters and histograms are used, whose sums stay right when a worker dies and uvicorn
starts another; so there are no live gauges whose files would need `mark_process_dead`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# `*_created` samples (a timestamp per series) double the output and say nothing a rate()
# needs; multiprocess mode has none anyway, so one worker and several look the same.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "mfa_http_requests", "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)  # fmt: skip
LATENCY = Histogram(
    "mfa_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOGINS = Counter(
    "mfa_logins",
    "Logins by method (password, passkey) and outcome: authenticated, mfa_required, "
    "enrollment_required, remembered_device, failed, account_disabled, rate_limited, "
    "unavailable.",
    ["method", "outcome"],
)
CHALLENGES = Counter(
    "mfa_challenges",
    "MFA challenge answers by method (totp, backup_code, webauthn; `any` when refused before "
    "the method mattered) and outcome: succeeded, failed, rate_limited, unavailable.",
    ["method", "outcome"],
)
STEP_UPS = Counter(
    "mfa_step_ups", "Step-ups by method and outcome (as for challenges).", ["method", "outcome"]
)
REFRESHES = Counter(
    "mfa_refreshes",
    "Refresh-token rotations by outcome: succeeded, failed, rate_limited, unavailable.",
    ["outcome"],
)
REFRESH_REUSE = Counter(
    "mfa_refresh_reuse", "Rotated refresh tokens presented again (the session was ended)."
)
LOCKOUTS = Counter(
    "mfa_lockouts",
    "Locks reached: factor (a user's second factor), device (a device token spent).",
    ["kind"],
)
REGISTRATIONS = Counter(
    "mfa_registrations",
    "Registrations by outcome: succeeded, email_taken, rejected, rate_limited, unavailable.",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "mfa_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, failed (retried later, or given up).",
    ["outcome"],
)

_LOGIN_NEXT = {
    None: "authenticated",
    "mfa_challenge": "mfa_required",
    "mfa_enrollment": "enrollment_required",
    "remembered_device": "remembered_device",
}


def count_event(type_: str, detail: Mapping[str, str]) -> None:
    """The domain counters, from the audit events that record the same facts."""
    kind, _, result = type_.partition(".")
    if kind == "login":
        method = detail.get("method", "password")
        if result == "succeeded":
            LOGINS.labels(method, _LOGIN_NEXT.get(detail.get("next"), "authenticated")).inc()
        elif result == "failed":
            LOGINS.labels(method, "failed").inc()
        elif result == "refused":
            LOGINS.labels(method, detail.get("reason", "refused")).inc()
    elif kind in ("challenge", "step_up") and result in ("succeeded", "failed"):
        counter = CHALLENGES if kind == "challenge" else STEP_UPS
        counter.labels(detail.get("method", "unknown"), result).inc()
    elif type_ == "factor.locked":
        LOCKOUTS.labels("factor").inc()
    elif type_ == "device.spent":
        LOCKOUTS.labels("device").inc()
    elif type_ == "refresh.reuse_detected":
        REFRESH_REUSE.inc()


def _refused(status: int) -> str | None:
    return {429: "rate_limited", 503: "unavailable"}.get(status)


def _refresh(status: int) -> str | None:
    if 200 <= status < 300:
        return "succeeded"
    return _refused(status) or ("failed" if status == 401 else None)


def _registration(status: int) -> str | None:
    if status == 201:
        return "succeeded"
    return _refused(status) or {409: "email_taken", 422: "rejected"}.get(status)


# Outcomes only the HTTP answer knows (no audit event): refusals before the judgement, and
# the routes that record no event. (route template → counter's labels for a status)
_BY_STATUS: dict[str, Callable[[int], None]] = {}


def _route(route: str, outcome: Callable[[int], str | None], inc: Callable[[str], None]) -> None:
    def count(status: int) -> None:
        if (value := outcome(status)) is not None:
            inc(value)

    _BY_STATUS[route] = count


_route("/auth/login", _refused, lambda o: LOGINS.labels("password", o).inc())
_route("/auth/passkey", _refused, lambda o: LOGINS.labels("passkey", o).inc())
_route("/mfa/challenge", _refused, lambda o: CHALLENGES.labels("any", o).inc())
_route("/mfa/step-up", _refused, lambda o: STEP_UPS.labels("any", o).inc())
_route("/auth/refresh", _refresh, lambda o: REFRESHES.labels(o).inc())
_route("/auth/register", _registration, lambda o: REGISTRATIONS.labels(o).inc())


# The labelled children, looked up once per (method, route, status): `labels()` validates and
# locks on every call. Bounded by the routes and statuses the app has.
_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any, Callable[[int], None] | None]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    if (children := _CHILDREN.get(key)) is None:
        by_status = _BY_STATUS.get(route) if method == "POST" else None
        children = (
            REQUESTS.labels(method, route, str(status)),
            LATENCY.labels(method, route),
            by_status,
        )
        _CHILDREN[key] = children
    requests, latency, by_status = children
    requests.inc()
    latency.observe(seconds)
    if by_status is not None:
        by_status(status)


def render() -> tuple[bytes, str]:
    """The exposition of this process, or of every worker in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_TEMP_PREFIX = "mfa-metrics-"


def prepare_multiprocess_dir() -> Path:
    """Before the workers start: PROMETHEUS_MULTIPROC_DIR (the operator's, emptied of a
    previous run's files, or a new temporary directory) set for them to inherit. A file left
    from an earlier run would add its counts to this one's."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        _remove_orphans()
        # The pid in the name: a run ended by SIGKILL cannot remove its directory, the next
        # start on this machine does (`_remove_orphans`).
        path = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-"))
        os.environ[MULTIPROC_ENV] = str(path)
    return path


def _remove_orphans() -> None:
    """Our temporary directories whose `serve` process is gone."""
    for path in Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*-*"):
        pid = path.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
        try:
            if not pid.isdigit() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue  # alive under another user (PermissionError), or gone meanwhile


def remove_multiprocess_dir(path: Path) -> None:
    """After `serve`: a temporary directory we made goes; an operator's stays."""
    if path.name.startswith(_TEMP_PREFIX) and path.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(path, ignore_errors=True)
