"""`mfa-service serve` as a subprocess, for tests that need the real server: its memory, the
files it makes, its workers, several instances of it. With one worker the pid is the server
itself; with more, the workers are its children."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

# The server's start (migrations, key generation, argon2 warm-up) on a loaded CI machine.
READY_WITHIN = 60.0


def embedded_env(data_dir: Path, port: int) -> dict[str, str]:
    """The environment of the embedded default (SQLite and the data key in `data_dir`, the
    in-process Redis emulation): none of the caller's MFA_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    env.update(MFA_DATA_DIR=str(data_dir), MFA_ISSUER=f"http://127.0.0.1:{port}")
    return env


@asynccontextmanager
async def serving(
    env: dict[str, str], port: int, log: Path, umask: int = 0o022, workers: int = 1
) -> AsyncIterator[int]:
    """The server until /readyz answers 200; yields its pid; SIGTERM (then SIGKILL, the
    whole process group) after."""
    command = ["serve", "--port", str(port), "--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mfa_service.cli", *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=umask,
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WITHIN
        async with httpx.AsyncClient(timeout=2) as probe:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    r = await probe.get(f"http://127.0.0.1:{port}/readyz")
                    if r.status_code == 200:
                        break
                if loop.time() > deadline:
                    pytest.fail(f"not ready within {READY_WITHIN} s:\n{log.read_text()}")
                await asyncio.sleep(0.2)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
