from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from mfa_service.secretbox import generate_data_key
from tests import redis_cluster
from tests.support import (
    Backend,
    FakeClock,
    fallback,
    postgres_database,
    redis_server_url,
    running_app,
    settings_for,
)

BACKENDS = ["sqlite", "postgresql"]
CLUSTER_BACKEND = "postgresql-cluster"  # PostgreSQL and a real Redis Cluster


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses the app runs on SQLite and on PostgreSQL (with the single Redis);
    those marked `redis_cluster` also on PostgreSQL with a Redis Cluster (with `only=True`: on
    that alone)."""
    if "backend" not in metafunc.fixturenames:
        return
    names = list(BACKENDS)
    marker = metafunc.definition.get_closest_marker("redis_cluster")
    if marker is not None:
        names = [CLUSTER_BACKEND] if marker.kwargs.get("only") else [*names, CLUSTER_BACKEND]
    metafunc.parametrize("backend", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str | None]:
    with redis_server_url() as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A Redis Cluster of our own on loopback (three primaries, one replica each), shared by
    the session's cluster tests: each has its own key prefix."""
    if not redis_cluster.available():
        fallback("no redis-server or redis-cli binary: the Redis Cluster tests are skipped")
        pytest.skip("no redis-server or redis-cli binary")
    with redis_cluster.local_cluster() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def backend(
    request: pytest.FixtureRequest, redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """The database and Redis the app of a test runs on (`pytest_generate_tests`)."""
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
        if request.param == CLUSTER_BACKEND:
            redis_url = request.getfixturevalue("redis_cluster_url")
        yield Backend(request.param, url, redis_url, data_dir, generate_data_key())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of its own (dropped afterwards), for tests that
    start servers themselves."""
    with postgres_database() as url:
        if url is None:
            fallback("MFA_TEST_DATABASE_URL is not set: live PostgreSQL tests skipped")
            pytest.skip("MFA_TEST_DATABASE_URL is not set")
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_for(backend), clock) as c:
        yield c
