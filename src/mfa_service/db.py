"""Database engine, the per-request session, and the schema check at startup."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import sqlmodel
from fastapi import Depends, Request
from sqlalchemy import Insert, Table, bindparam, event, insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.config import Settings
from mfa_service.data_dir import create_private_file, ensure_data_dir
from mfa_service.errors import ServiceError

logger = logging.getLogger(__name__)


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.effective_database_url
    options: dict[str, Any] = {
        # SQL errors must not carry hashes or emails into logs.
        "hide_parameters": True,
        "pool_size": settings.database_pool_size,
        # An overflow connection is closed on return: reopened under load, inside requests.
        "max_overflow": 0,
        "pool_timeout": settings.database_pool_timeout,
    }
    if settings.is_sqlite:
        if settings.database_url is None:
            ensure_data_dir(settings.data_dir)
        # Created 0600 before SQLite creates it with the umask's mode (and its -wal, -shm).
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            create_private_file(Path(database))
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    # A stalled (not refusing) server must become a quick 503, not a hung request.
    engine = create_async_engine(url, connect_args={"timeout": 3, "command_timeout": 5}, **options)
    event.listen(engine.sync_engine.pool, "checkout", _drop_closed_connection)
    return engine


async def open_pool(engine: AsyncEngine, settings: Settings) -> None:
    """Open the pool's connections now: opened lazily, the first burst of requests would
    queue behind 20 connection handshakes at once, and some would time out waiting."""
    if settings.is_sqlite:
        return
    connections = [engine.connect() for _ in range(settings.database_pool_size)]
    opened = await asyncio.gather(*(c.start() for c in connections), return_exceptions=True)
    for connection, result in zip(connections, opened, strict=True):
        if not isinstance(result, BaseException):
            await connection.close()


def _drop_closed_connection(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    # After a database restart a pooled connection is found dead before a request uses it,
    # so the service recovers with no failed request. asyncpg marks a connection closed as
    # soon as the event loop sees its socket close; pool_pre_ping would ask with a round trip
    # on every checkout instead: one more database round trip for every request.
    if record.driver_connection.is_closed():
        raise DisconnectionError()  # the pool drops it and checks out another


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are opened by us (below), not by the driver's implicit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# Execution option for transactions that only read (key reloads, readiness checks).
READ_ONLY = {"mfa_read_only": True}


# Execution option of the statement sessions on SQLite (see `statements_autocommit`): no
# BEGIN, every statement commits by itself, SQLite's own autocommit.
_SQLITE_AUTOCOMMIT = "mfa_sqlite_autocommit"


def _begin_immediate(conn: Any) -> None:
    # A deferred SQLite transaction that read before another writer committed cannot write
    # any more (SQLITE_BUSY_SNAPSHOT): take the write lock up front. SQLite is the
    # single-process default, so serialising its transactions costs little. Read-only work
    # must not wait for that lock: it may run while a request holds it.
    if _sqlite_autocommit(conn):
        return
    options = conn.get_execution_options()
    if options.get("mfa_read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_autocommit(conn: Any) -> bool:
    return bool(conn.get_execution_options().get(_SQLITE_AUTOCOMMIT))


@asynccontextmanager
async def atomic(db: AsyncSession) -> AsyncIterator[None]:
    """The block's statements (and the ORM changes it makes) as one transaction.

    Inside a request's transaction that is simply the block. On a SQLite statement session
    (`statements_autocommit`) it is a short transaction of its own that takes the write lock
    up front and holds it only for the block's statements: never across a Redis round trip,
    a signature or a response, which under load would make every other request wait for
    the lock in SQLite's sleeping busy handler.
    """
    conn = await db.connection()
    if not conn.sync_connection or not _sqlite_autocommit(conn.sync_connection):
        yield
        return
    await conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield
        await db.flush()
    except BaseException:
        await conn.exec_driver_sql("ROLLBACK")
        raise
    await conn.exec_driver_sql("COMMIT")


class _SyncSession(sqlmodel.Session):
    """The sync session under our AsyncSession; it writes staged rows before committing."""


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine, class_=AsyncSession, sync_session_class=_SyncSession, expire_on_commit=False
    )


# --- Staged inserts ---------------------------------------------------------------------------
# Rows that only need to exist by the end of the transaction (audit events, a new session and
# its refresh token) are inserted together: on PostgreSQL as one statement, one round trip,
# with each row but the last in a data-modifying CTE (foreign keys are checked at the end of
# the statement). The challenge, the hot path, writes all its rows this way (see bench/).
_STAGED = "mfa_staged_rows"
Row = tuple[Table, dict[str, Any]]


def stage(db: AsyncSession, table: Table, values: dict[str, Any]) -> None:
    """Insert a row with the transaction's next `write_staged`, or when it commits."""
    db.info.setdefault(_STAGED, []).append((table, values))


async def write_staged(db: AsyncSession, *rows: Row) -> None:
    """Insert the staged rows, then `rows`, in this order."""
    staged: list[Row] = db.info.pop(_STAGED, [])
    conn = await db.connection()
    if (driver := await autocommit_driver(db)) is not None and (staged or rows):
        sql, binds = _driver_insert(_shape(staged + list(rows)), conn.dialect)
        params = _params(staged + list(rows))
        await driver.execute(sql, *(p(params[n]) if p else params[n] for n, p in binds))
        return
    async with atomic(db):
        for statement, params in _inserts(conn.dialect.name, staged + list(rows)):
            await conn.execute(statement, params)


Shape = tuple[tuple[Table, tuple[str, ...]], ...]


def _shape(rows: list[Row]) -> Shape:
    return tuple((table, tuple(values)) for table, values in rows)


def _params(rows: list[Row]) -> dict[str, Any]:
    return {f"r{i}_{name}": value for i, (_, v) in enumerate(rows) for name, value in v.items()}


def _inserts(dialect: str, rows: list[Row]) -> list[tuple[Insert, dict[str, Any]]]:
    if dialect != "postgresql" or len(rows) < 2:
        return [(_insert(table), values) for table, values in rows]
    return [(_fused_insert(_shape(rows)), _params(rows))]


@functools.cache
def _driver_insert(shape: Shape, dialect: Dialect) -> tuple[str, list[tuple[str, Any]]]:
    """The fused insert as SQL text for the raw driver, compiled once per shape of rows,
    with each parameter's name and its type's bind processor (UTC datetimes, JSON), so the
    driver gets what SQLAlchemy would have sent."""
    compiled = _fused_insert(shape).compile(dialect=dialect)
    names = compiled.positiontup or []
    binds = [(n, compiled.binds[n].type.bind_processor(dialect)) for n in names]
    return compiled.string, binds


# Statements built once per table or shape of rows: reused, they keep their cache keys.
@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


@functools.cache
def _fused_insert(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Insert:
    def insert_row(i: int) -> Insert:
        table, names = shape[i]
        return insert(table).values(
            {n: bindparam(f"r{i}_{n}", type_=table.c[n].type) for n in names}
        )

    statement = insert_row(len(shape) - 1)
    for i in range(len(shape) - 1):
        statement = statement.add_cte(insert_row(i).cte(f"row{i}"))
    return statement


@event.listens_for(_SyncSession, "before_commit")
def _write_staged_before_commit(session: sqlmodel.Session) -> None:
    staged: list[Row] = session.info.pop(_STAGED, [])
    if not staged:
        return
    connection = session.connection()
    # On a SQLite statement session the pending changes and the staged rows (an audit event
    # and what it enqueued) still commit together: one short transaction of their own.
    own = _sqlite_autocommit(connection)
    if own:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        session.flush()  # staged rows may refer to rows still pending in the unit of work
        for statement, params in _inserts(connection.dialect.name, staged):
            connection.execute(statement, params)
    except BaseException:
        if own:
            connection.exec_driver_sql("ROLLBACK")
        raise
    if own:
        connection.exec_driver_sql("COMMIT")


@event.listens_for(_SyncSession, "after_rollback")
def _drop_staged_after_rollback(session: sqlmodel.Session) -> None:
    session.info.pop(_STAGED, None)


_AFTER_COMMIT = "mfa_after_commit"


def after_commit(db: AsyncSession, callback: Callable[[], None]) -> None:
    """Call `callback` (once) when the transaction commits; never if it rolls back. For what
    must only happen once the rows exist, e.g. waking the outbox worker for a row just staged."""
    callbacks: list[Callable[[], None]] = db.info.setdefault(_AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


@event.listens_for(_SyncSession, "after_commit")
def _run_after_commit(session: sqlmodel.Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


@event.listens_for(_SyncSession, "after_rollback")
def _drop_after_commit(session: sqlmodel.Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


async def end_transaction(db: AsyncSession) -> None:
    """Commit what the request did so far and give its connection back to the pool.

    For a request about to wait a long time for something else (a password hash): holding a
    connection, and on SQLite the write lock, while it waits would starve every other request.
    The next statement opens a new transaction; loaded objects stay usable.
    """
    if db.in_transaction():
        await db.commit()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns.

    A `ServiceError` is a handled refusal, and what was written before it (an audit event, a
    revoked session after refresh-token reuse) must stay, so it commits too. Anything else
    rolls back. A route marked `@statements_autocommit` gets a session without a
    transaction instead (one dependency, so the access-token check shares it).
    """
    services = request.app.state.services
    autocommit = getattr(request.scope.get("endpoint"), STATEMENTS_AUTOCOMMIT, False)
    maker = services.statement_sessionmaker if autocommit else services.sessionmaker
    async with _request_session(maker) as session:
        yield session


STATEMENTS_AUTOCOMMIT = "mfa_statements_autocommit"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def statements_autocommit(endpoint: Endpoint) -> Endpoint:
    """For a hot path whose every statement stands alone (STYLE §18): each statement commits
    by itself, no BEGIN and COMMIT round trips on PostgreSQL, and on SQLite no write lock
    held for the whole request. Only for routes whose writes are each atomic and safe to
    keep if a later one fails (the challenge: a used TOTP step with no session is a refusal,
    never a token), or that only read; steps of several statements go in `atomic`."""
    setattr(endpoint, STATEMENTS_AUTOCOMMIT, True)
    return endpoint


@asynccontextmanager
async def _request_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
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


async def autocommit_driver(db: AsyncSession) -> Any | None:
    """The asyncpg connection under a `statements_autocommit` session on PostgreSQL, else
    None. A hot path's repository function runs its statement on it directly (STYLE §18):
    no SQLAlchemy execution context, no greenlet hop. Only without a transaction: inside
    one, SQLAlchemy begins it lazily at its own first statement, which a statement sent
    around it would run before."""
    conn = await db.connection()
    if conn.dialect.name != "postgresql":
        return None
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    if options.get("isolation_level") != "AUTOCOMMIT":
        return None
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def create_statement_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose statements autocommit (see `statements_autocommit`)."""
    if engine.dialect.name == "sqlite":
        return create_sessionmaker(engine.execution_options(**{_SQLITE_AUTOCOMMIT: True}))
    if engine.dialect.name != "postgresql":
        return create_sessionmaker(engine)
    # asyncpg's autocommit is a flag on the adapter: no round trip to set or reset it.
    return create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


# scope="function": commit before the response is sent, so a client never sees a success
# that was not stored.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
