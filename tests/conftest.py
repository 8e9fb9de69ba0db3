from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from mfa_service.secretbox import generate_data_key
from tests.support import (
    Backend,
    FakeClock,
    fallback,
    postgres_database,
    redis_server_url,
    running_app,
    settings_for,
)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str | None]:
    with redis_server_url() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """Every test that uses the app runs once on SQLite and once on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp(f"data-{request.param}")
    if request.param == "sqlite":
        yield Backend(
            "sqlite",
            f"sqlite+aiosqlite:///{data_dir / 'mfa.db'}",
            redis_url,
            data_dir,
            generate_data_key(),
        )
        return
    with postgres_database() as url:
        if url is None:
            fallback("MFA_TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
            pytest.skip("MFA_TEST_DATABASE_URL is not set")
        yield Backend("postgresql", url, redis_url, data_dir, generate_data_key())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_for(backend), clock) as c:
        yield c
