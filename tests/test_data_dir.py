"""The embedded default's data dir (SPEC §5): created 0700, its files (the SQLite database and
its -wal and -shm, the generated data key) 0600, whatever the umask; a data dir that already
exists is left as it is, with a warning when others can reach it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mfa_service.config import Settings
from tests.serve import embedded_env, serving
from tests.support import (
    Backend,
    FakeClock,
    free_port,
    postgres_database,
    register,
    running_app,
    settings_for,
)

# Group-writable, world-readable by default: what the service must not inherit.
LAX_UMASK = 0o002
DATABASE_FILES = ("mfa.db", "mfa.db-wal", "mfa.db-shm")


@pytest.fixture
def lax_umask() -> Iterator[None]:
    previous = os.umask(LAX_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def database_url(backend: Backend) -> Iterator[str | None]:
    """SQLite: none (the default database in the data dir). PostgreSQL: a database of its
    own, since its signing key is sealed with the data key generated here."""
    if backend.name == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


def embedded(backend: Backend, data_dir: Path, database_url: str | None) -> Settings:
    """No data key: development generates one in the data dir."""
    return settings_for(backend, data_dir=data_dir, data_key=None, database_url=database_url)


def expected_files(backend: Backend) -> tuple[str, ...]:
    return ("data.key", *DATABASE_FILES) if backend.name == "sqlite" else ("data.key",)


@pytest.mark.usefixtures("lax_umask")
async def test_a_new_data_dir_is_private(
    backend: Backend, database_url: str | None, tmp_path: Path
) -> None:
    data_dir = tmp_path / "new" / "data"
    async with running_app(embedded(backend, data_dir, database_url), FakeClock()) as client:
        await register(client)  # a write: SQLite's WAL is in use
        assert mode(data_dir) == 0o700
        assert sorted(p.name for p in data_dir.iterdir()) == sorted(expected_files(backend))
        for name in expected_files(backend):
            assert mode(data_dir / name) == 0o600, name


@pytest.mark.usefixtures("lax_umask")
async def test_an_existing_data_dir_is_left_as_it_is(
    backend: Backend, database_url: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "existing"
    data_dir.mkdir(mode=0o700)
    settings = embedded(backend, data_dir, database_url)
    for dir_mode, warned in ((0o700, False), (0o755, True)):
        data_dir.chmod(dir_mode)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mfa_service"):
            async with running_app(settings, FakeClock()) as client:
                await register(client)
                # The files made in it are private all the same.
                for name in expected_files(backend):
                    assert mode(data_dir / name) == 0o600, name
        assert mode(data_dir) == dir_mode
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        about_it = [w for w in warnings if str(data_dir) in w and "chmod 700" in w]
        assert bool(about_it) is warned, (oct(dir_mode), warnings)


async def test_serve_makes_a_private_data_dir(tmp_path: Path) -> None:
    """`mfa-service serve` with nothing configured, started under a lax umask."""
    data_dir = tmp_path / "data"
    port = free_port()
    log = tmp_path / "server.log"
    async with serving(embedded_env(data_dir, port), port, log, umask=LAX_UMASK):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await register(http)
        assert mode(data_dir) == 0o700
        for name in ("data.key", *DATABASE_FILES):
            assert mode(data_dir / name) == 0o600, name
