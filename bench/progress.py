"""Progress lines on stderr (the results go to stdout and bench/results/)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from bench import loadgen


def log(message: str) -> None:
    sys.stderr.write(f"[{datetime.now().strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def logged(name: str, result: loadgen.WrkResult) -> dict[str, Any]:
    """The run's summary for the results, after a line saying how it went."""
    summary = result.summary()
    log(
        f"{name}: {result.requests} answers, {result.rps:.1f} req/s, p50/p99 "
        f"{result.latency_ms['p50']}/{result.latency_ms['p99']} ms, non-2xx {result.non2xx} "
        f"{result.statuses or ''}, unanswered {result.unanswered}"
    )
    return summary
