"""Time, injected: services ask the clock so tests can move it instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()


def now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.time(), UTC)
