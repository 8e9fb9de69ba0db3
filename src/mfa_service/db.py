"""Database engine, the per-request session, and the schema check at startup."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.config import Settings
from mfa_service.errors import ServiceError

logger = logging.getLogger(__name__)


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.effective_database_url
    if settings.is_sqlite:
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, hide_parameters=True, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: SQL errors must not carry hashes or emails into logs.
    return create_async_engine(
        url, hide_parameters=True, pool_size=10, max_overflow=10, pool_timeout=5
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns.

    A `ServiceError` is a handled refusal, and what was written before it (an audit event, a
    revoked session after refresh-token reuse) must stay, so it commits too. Anything else
    rolls back.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.services.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except ServiceError:
            if session.is_active:
                await session.commit()
            else:  # a failed flush (e.g. a unique index) already voided the transaction
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": commit before the response is sent, so a client never sees a success
# that was not stored.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
