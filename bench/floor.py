"""The floor: a bare ASGI app doing only the irreducible I/O of one MFA challenge.

Per `POST /floor` with a challenge body (`{"challenge_token": …, "code": …}`):

  0. open the opaque challenge token (AES-GCM, as the service does) to find the user;

  1. one Redis round trip: EVALSHA of a tiny script (count an attempt on a per-user key);
  2. one database transaction: read the user's TOTP row, insert one audit event row;
  3. a small JSON answer.

No framework, no ORM, no validation: raw asyncpg pool (PostgreSQL) or one aiosqlite connection
(SQLite, the engine serialises writers anyway), redis.asyncio like the service. `challenge ÷
floor` is then the share of the machine's I/O capacity that the service turns into challenges.
`GET /noop` answers without any I/O: the load generator's own ceiling.

Configured by environment (set by bench/run.py): BENCH_FLOOR_DATABASE (a postgresql:// DSN or
a SQLite file path), BENCH_FLOOR_REDIS_URL, BENCH_FLOOR_REDIS_PREFIX, BENCH_FLOOR_DATA_KEY.
Served with: uvicorn bench.floor:create_app --factory (the same flags as the service).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, Protocol

import aiosqlite
import asyncpg
from redis.asyncio import Redis

from mfa_service.challenges.store import open_token
from mfa_service.config import decode_key
from mfa_service.errors import ChallengeExpired
from mfa_service.secretbox import SecretBox

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ATTEMPT = """
local n = redis.call('HINCRBY', KEYS[1], 'a', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""

READ = "SELECT secret, data_key_id, last_used_step FROM totp_credentials WHERE user_id = {}"
INSERT = (
    "INSERT INTO audit_events (id, user_id, type, at, ip, user_agent, detail) "
    "VALUES ({}, {}, 'bench.floor', {}, '127.0.0.1', 'wrk', '{{}}')"
)
OK_BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json")]


class Store(Protocol):
    async def read_and_insert(self, user_id: uuid.UUID) -> None: ...
    async def close(self) -> None: ...


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._read = READ.format("$1")
        self._insert = INSERT.format("$1", "$2", "$3")

    @classmethod
    async def open(cls, dsn: str) -> PostgresStore:
        # The service's SQLAlchemy pool: 10 connections, 10 more on overflow. `reset`: a
        # released connection is only rolled back if a transaction is still open (as in
        # SQLAlchemy), not sent asyncpg's default reset query, a round trip per request.
        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=20, reset=_keep_session)
        return cls(pool)

    async def read_and_insert(self, user_id: uuid.UUID) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.fetchrow(self._read, user_id)
            await conn.execute(self._insert, uuid.uuid4(), user_id, datetime.now(UTC))

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    return None


class SqliteStore:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()  # one connection: one transaction at a time
        self._read = READ.format("?")
        self._insert = INSERT.format("?", "?", "?")

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
        # The service's pragmas (mfa_service.db): WAL, foreign keys, a busy timeout.
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000"):
            await conn.execute(f"PRAGMA {pragma}")
        return cls(conn)

    async def read_and_insert(self, user_id: uuid.UUID) -> None:
        # SQLAlchemy stores UUIDs on SQLite as 32 hex digits, datetimes as naive UTC text.
        at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                async with self._conn.execute(self._read, (user_id.hex,)) as cursor:
                    await cursor.fetchone()
                await self._conn.execute(self._insert, (uuid.uuid4().hex, user_id.hex, at))
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()


class Floor:
    def __init__(self, database: str, redis_url: str, prefix: str, data_key: str) -> None:
        self._database = database
        self._redis_url = redis_url
        self._prefix = prefix
        self._box = SecretBox(decode_key(data_key))
        self._store: Store | None = None
        self._redis: Redis | None = None

    async def _startup(self) -> None:
        # The service's client settings (mfa_service.redis_client).
        self._redis = Redis.from_url(
            self._redis_url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )
        self._attempt = self._redis.register_script(ATTEMPT)
        if self._database.startswith("postgresql://"):
            self._store = await PostgresStore.open(self._database)
        else:
            self._store = await SqliteStore.open(self._database)

    async def _shutdown(self) -> None:
        if self._store is not None:
            await self._store.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/noop":
            await _answer(send, 200, OK_BODY)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            token = json.loads(body)["challenge_token"]
            user_id, _ = open_token(self._box, token)
        except (ValueError, KeyError, TypeError, ChallengeExpired):
            await _answer(send, 422, b'{"status":"bad request"}')
            return
        assert self._store is not None
        await self._attempt(keys=[f"{self._prefix}{{u:{user_id.hex}}}:floor"], args=[300_000])
        await self._store.read_and_insert(user_id)
        await _answer(send, 200, OK_BODY)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": HEADERS})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Floor:
    return Floor(
        os.environ["BENCH_FLOOR_DATABASE"],
        os.environ["BENCH_FLOOR_REDIS_URL"],
        os.environ.get("BENCH_FLOOR_REDIS_PREFIX", "mfa-bench:"),
        os.environ["BENCH_FLOOR_DATA_KEY"],
    )
