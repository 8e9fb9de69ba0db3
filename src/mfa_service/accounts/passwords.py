"""Password hashing (argon2id through passlib), kept off the event loop.

argon2-cffi releases the GIL, so hashing runs in worker threads, at most one per core so a burst
of logins cannot starve the event loop; past `hash_queue_limit` waiting requests we refuse with
503 at once rather than queue without bound.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import resources
from typing import TypeVar

from passlib.context import CryptContext

from mfa_service.config import Settings
from mfa_service.errors import Overloaded

T = TypeVar("T")

MIN_LENGTH = 8
MAX_LENGTH = 128


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("mfa_service.accounts").joinpath("common_passwords.txt").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def is_too_common(password: str, email: str) -> bool:
    lowered = password.lower()
    return lowered in common_passwords() or lowered == email.lower() or len(set(password)) < 3


class PasswordHasher:
    def __init__(self, settings: Settings) -> None:
        self.context = CryptContext(
            schemes=["argon2"],
            argon2__type="ID",
            argon2__memory_cost=settings.argon2_memory_kib,
            argon2__rounds=settings.argon2_time_cost,
            argon2__parallelism=settings.argon2_parallelism,
        )
        # Hashing has threads of its own, exactly this many: each thread that ever hashed
        # keeps a malloc arena holding an argon2 block (19 MiB), so hashing in a shared,
        # growing pool multiplied the resident memory (measured: +150 MB over 600 logins).
        self._executor = ThreadPoolExecutor(
            max_workers=settings.hash_workers or os.cpu_count() or 1,
            thread_name_prefix="argon2",
        )
        self._queue_limit = settings.hash_queue_limit
        self._pending = 0
        self._dummy_hash: str | None = None

    async def start(self) -> None:
        # Unknown emails are checked against this, so they cost the same as known ones.
        self._dummy_hash = await self.hash(secrets.token_urlsafe(24))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._pending >= self._queue_limit:
            raise Overloaded()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        result: str = await self._run(self.context.hash, password)
        return result

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one uses outdated parameters).

        With no stored hash (unknown account) the dummy hash is verified instead and the answer
        is always False.
        """
        if password_hash is None:
            assert self._dummy_hash is not None, "PasswordHasher.start() was not awaited"
            await self._run(self.context.verify, password, self._dummy_hash)
            return False, None
        ok, new_hash = await self._run(self.context.verify_and_update, password, password_hash)
        return bool(ok), new_hash
