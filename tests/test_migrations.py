"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from mfa_service import migrations
from mfa_service.secretbox import generate_data_key
from mfa_service.tables import metadata
from tests.support import Backend, fallback, running_app, settings_for


async def _admin(database_url: str, sql: str) -> None:
    """Run one statement on the server's maintenance connection (CREATE/DROP DATABASE)."""
    admin = make_url(database_url).set(drivername="postgresql")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def empty_postgres_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database (tests.support.postgres_database would migrate it)."""
    base = os.environ.get("MFA_TEST_DATABASE_URL")
    if not base:
        fallback("MFA_TEST_DATABASE_URL is not set: PostgreSQL migration tests skipped")
        pytest.skip("MFA_TEST_DATABASE_URL is not set")
    name = f"mfa_test_{uuid.uuid4().hex[:12]}"
    await _admin(base, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def _schema_diff(connection: Connection) -> list[Any]:
    # The same comparison `alembic check` makes (see alembic/env.py), server defaults included.
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_build_the_models_schema(empty_database_url: str) -> None:
    engine = create_async_engine(empty_database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_table_names) == set()
        await migrations.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_table_names) == set(metadata.tables) | {"alembic_version"}
            assert await conn.run_sync(_schema_diff) == []
        await migrations.check_at_head(engine)
        # Running them again (every start on SQLite does) changes nothing.
        await migrations.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
    finally:
        await engine.dispose()


async def test_app_refuses_an_unmigrated_postgres_database(
    empty_postgres_url: str, redis_url: str | None, tmp_path: Path
) -> None:
    backend = Backend("postgresql", empty_postgres_url, redis_url, tmp_path, generate_data_key())
    with pytest.raises(migrations.SchemaOutdated, match="mfa-service db upgrade"):
        async with running_app(settings_for(backend)):
            pass  # pragma: no cover - the lifespan must not get this far
    # It only checked: no table was created behind the operator's back.
    engine = create_async_engine(empty_postgres_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_table_names) == set()
    finally:
        await engine.dispose()
