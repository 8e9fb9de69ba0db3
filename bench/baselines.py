"""Baselines measured in the same run: raw argon2 verifies, and (a hook) JWT verifications."""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import argon2

PASSWORD = "bench: raw argon2"


def _hasher(memory_kib: int, time_cost: int, parallelism: int) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        type=argon2.Type.ID,
    )


def _verify_until(params: tuple[int, int, int], encoded: str, start: float, end: float) -> int:
    hasher = _hasher(*params)
    while time.time() < start:
        time.sleep(0.001)
    count = 0
    while time.time() < end:
        hasher.verify(encoded, PASSWORD)
        count += 1
    return count


def argon2_rate(
    memory_kib: int, time_cost: int, parallelism: int, seconds: float
) -> dict[str, Any]:
    """argon2id verifies per second with one process per core, all verifying at once, and
    the time of one verify alone."""
    params = (memory_kib, time_cost, parallelism)
    hasher = _hasher(*params)
    encoded = hasher.hash(PASSWORD)
    single = []
    for _ in range(5):
        t0 = time.perf_counter()
        hasher.verify(encoded, PASSWORD)
        single.append(time.perf_counter() - t0)
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pool.submit(int).result()  # the workers are up before the clock starts
        start = time.time() + 1.0
        end = start + seconds
        futures = [pool.submit(_verify_until, params, encoded, start, end) for _ in range(workers)]
        total = sum(f.result() for f in futures)
    return {
        "verifies_per_s": round(total / seconds, 1),
        "processes": workers,
        "seconds": seconds,
        "single_verify_ms": round(min(single) * 1000, 2),
        "params": {"memory_kib": memory_kib, "time_cost": time_cost, "parallelism": parallelism},
    }


# ---------------------------------------------------------------------------------------------
# PLACEHOLDER HOOK: JWT verifications per second with a cached JWKS (mfa_verify).
# `mfa_verify` (verifier/src/mfa_verify) is being written; its wiring here is to be finished
# by its owner. If it is importable, `Verifier(issuer, audience).verify(token)` runs in a loop
# for `seconds` against a fresh access token (the JWKS is fetched once, then cached);
# otherwise the figure is null with the reason.
# ---------------------------------------------------------------------------------------------
def jwt_verifications(issuer: str, audience: str, token: str, seconds: float) -> dict[str, Any]:
    try:
        mfa_verify: Any = importlib.import_module("mfa_verify")
    except ImportError as exc:
        return {"per_s": None, "reason": f"mfa_verify is not importable: {exc}"}
    try:
        return asyncio.run(_verify_loop(mfa_verify, issuer, audience, token, seconds))
    except Exception as exc:  # a placeholder: record why, never fail the run
        return {"per_s": None, "reason": f"{type(exc).__name__}: {exc}"}


async def _verify_loop(
    mfa_verify: Any, issuer: str, audience: str, token: str, seconds: float
) -> dict[str, Any]:
    verifier = mfa_verify.Verifier(issuer=issuer, audience=audience)
    try:
        await verifier.verify(token)  # fetches and caches the JWKS
        count = 0
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for _ in range(100):
                await verifier.verify(token)
            count += 100
        return {"per_s": round(count / elapsed, 1), "reason": None, "verifications": count}
    finally:
        await verifier.aclose()
