"""Alembic, driven from code: upgrade to head, or check the schema is at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

SCRIPT_LOCATION = str(Path(__file__).parent / "alembic")


class SchemaOutdated(RuntimeError):
    pass


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(connection=sync), "head"))


async def check_at_head(engine: AsyncEngine) -> None:
    def compare(sync: Connection) -> None:
        current = set(MigrationContext.configure(sync).get_current_heads())
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        if current != heads:
            raise SchemaOutdated(
                f"database schema is at {sorted(current) or 'nothing'}, this version needs "
                f"{sorted(heads)}: run `mfa-service db upgrade`"
            )

    async with engine.connect() as conn:
        await conn.run_sync(compare)
