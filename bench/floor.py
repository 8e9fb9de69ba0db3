"""The floors: a bare ASGI app doing only the irreducible I/O of each measured path.

`POST /floor`, a challenge (`{"challenge_token": …, "code": …}`):
  0. open the opaque challenge token (AES-GCM, as the service does) to find the user;
  1. one Redis round trip: EVALSHA of a tiny script (count an attempt on a per-user key);
  2. one database transaction: read the user's TOTP row, insert one audit event row.

`POST /floor/refresh`, a refresh (`{"refresh_token": …}`):
  1. one Redis round trip: the same script on the client IP's key (refresh-token guesses are
     limited per IP);
  2. one database transaction: read the token (by its SHA-256) with its session and the user's
     credentials version; mark the token used; touch the session's `last_refreshed_at`; insert
     the next token (new random bytes, hashed).

`GET /floor/me`, an authenticated read (`Authorization: Bearer <access token>`):
  1. one Redis round trip: EXISTS on the token's deny-list key (a logout refuses the token
     before it expires);
  2. one database read, no transaction: the session (alive, made under the user's current
     credentials) joined with its user, whose columns the answer shows.

`POST /floor/introspect`, RFC 7662 (form `token=…`, HTTP Basic client credentials):
  0. the client secret compared in constant time;
  1. one Redis round trip: a pipeline of the attempt script on the client IP's key (client
     guesses are limited per IP) and EXISTS on the deny-list key;
  2. the same one read as /floor/me.

Each answers a small JSON. No framework, no ORM, no validation, and no JWT signature: the ids
an access token names are read from its payload (base64 + JSON); the ES256 verification, like
the signing of new access tokens, FastAPI, pydantic, the ORM, TOTP and the TOTP secret's
AES-GCM, is on the service's side of each ratio. The floors replay the same requests round and
round for a fixed time, so they enforce no single use: a refresh token is marked used whatever
it was (a conditional update that matched no row would write nothing, cheaper than a rotation).

Raw asyncpg pool (PostgreSQL) or aiosqlite (SQLite: one connection for the write transactions,
which the engine serialises anyway, and one for the single reads); redis.asyncio like the
service. `path ÷ its floor` is then the share of the machine's I/O capacity that the service
turns into that path. `GET /noop` answers without any I/O: the load generator's own ceiling.

Configured by environment (set by bench/run.py): BENCH_FLOOR_DATABASE (a postgresql:// DSN or
a SQLite file path), BENCH_FLOOR_REDIS_URL, BENCH_FLOOR_REDIS_PREFIX, BENCH_FLOOR_DATA_KEY,
BENCH_FLOOR_INTROSPECTION_CLIENT ("id:secret", as in MFA_INTROSPECTION_CLIENTS).
Served with: uvicorn bench.floor:create_app --factory (the same flags as the service).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Formatter
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
Answer = tuple[int, bytes]

ATTEMPT = """
local n = redis.call('HINCRBY', KEYS[1], 'a', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""
ATTEMPT_TTL_MS = 300_000

# Placeholders are `{}`, numbered in order for asyncpg ($1, $2, …) or `?` for SQLite.
READ = "SELECT secret, data_key_id, last_used_step FROM totp_credentials WHERE user_id = {}"
INSERT = (
    "INSERT INTO audit_events (id, user_id, type, at, ip, user_agent, detail) "
    "VALUES ({}, {}, 'bench.floor', {}, '127.0.0.1', 'wrk', '{{}}')"
)
# The columns refresh decides on: the token, its session, and whether the session was made
# under the user's current credentials (a password or factor change ends it).
READ_TOKEN = (
    "SELECT t.id, t.session_id, t.used_at, s.user_id, s.auth_time, s.amr, s.expires_at, "
    "s.last_refreshed_at, s.revoked_at, s.credentials_version = u.credentials_version "
    "FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id "
    "JOIN users u ON u.id = s.user_id WHERE t.token_hash = {}"
)
MARK_USED = "UPDATE refresh_tokens SET used_at = {} WHERE id = {}"
TOUCH_SESSION = "UPDATE sessions SET last_refreshed_at = {} WHERE id = {}"
INSERT_TOKEN = (
    "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at) VALUES ({}, {}, {}, {})"
)
# A live session (not revoked, current credentials) and the user's columns of /users/me.
LIVE_SESSION = (
    "SELECT u.id, u.email, u.mfa_enabled, u.created_at, s.expires_at "
    "FROM sessions s JOIN users u ON u.id = s.user_id "
    "WHERE s.id = {} AND s.revoked_at IS NULL AND u.credentials_version = s.credentials_version"
)

OK_BODY = b'{"status":"ok"}'
BAD_REQUEST: Answer = (422, b'{"status":"bad request"}')
UNAUTHORIZED: Answer = (401, b'{"status":"unauthorized"}')
NOT_FOUND: Answer = (404, b'{"status":"not found"}')
HEADERS = [(b"content-type", b"application/json")]


def numbered(sql: str, style: str) -> str:
    """`sql` with its `{}` placeholders as `$1, $2, …` (style "$") or `?`."""
    count = sum(1 for _, name, _, _ in Formatter().parse(sql) if name is not None)
    marks = [f"${i}" for i in range(1, count + 1)] if style == "$" else ["?"] * count
    return sql.format(*marks)


@dataclass(frozen=True)
class Statements:
    read: str
    insert: str
    read_token: str
    mark_used: str
    touch_session: str
    insert_token: str
    live_session: str

    @classmethod
    def for_style(cls, style: str) -> Statements:
        return cls(
            *(
                numbered(sql, style)
                for sql in (
                    READ,
                    INSERT,
                    READ_TOKEN,
                    MARK_USED,
                    TOUCH_SESSION,
                    INSERT_TOKEN,
                    LIVE_SESSION,
                )
            )
        )


class Store(Protocol):
    async def read_and_insert(self, user_id: uuid.UUID) -> None:
        """The challenge's transaction."""
        ...

    async def rotate(self, token_hash: str, new_hash: str) -> bool:
        """The refresh's transaction; False when no token has that hash."""
        ...

    async def live_session(self, session_id: uuid.UUID) -> Mapping[str, Any] | None:
        """The authenticated read: the user's columns, or None (no live session)."""
        ...

    async def close(self) -> None: ...


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._sql = Statements.for_style("$")

    @classmethod
    async def open(cls, dsn: str) -> PostgresStore:
        # Up to 20 connections, as many as the service's pool (MFA_DATABASE_POOL_SIZE); the
        # run's 64 concurrent requests open them all. `reset`: a released connection is only
        # rolled back if a transaction is still open (as in SQLAlchemy), not sent asyncpg's
        # default reset query, a round trip per request.
        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=20, reset=_keep_session)
        return cls(pool)

    async def read_and_insert(self, user_id: uuid.UUID) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.fetchrow(self._sql.read, user_id)
            await conn.execute(self._sql.insert, uuid.uuid4(), user_id, datetime.now(UTC))

    async def rotate(self, token_hash: str, new_hash: str) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self._sql.read_token, token_hash)
            if row is None:
                return False
            at = datetime.now(UTC)
            await conn.execute(self._sql.mark_used, at, row["id"])
            await conn.execute(self._sql.touch_session, at, row["session_id"])
            await conn.execute(
                self._sql.insert_token, uuid.uuid4(), row["session_id"], new_hash, at
            )
        return True

    async def live_session(self, session_id: uuid.UUID) -> Mapping[str, Any] | None:
        # One statement on its own: asyncpg sends no BEGIN/COMMIT around it.
        row = await self._pool.fetchrow(self._sql.live_session, session_id)
        if row is None:
            return None
        return {
            "id": str(row["id"]),
            "email": row["email"],
            "mfa_enabled": row["mfa_enabled"],
            "created_at": row["created_at"].isoformat(),
        }

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    return None


def _sqlite_time(at: datetime) -> str:
    # SQLAlchemy stores datetimes on SQLite as naive UTC text (and UUIDs as 32 hex digits).
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


class SqliteStore:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._conn = writer
        self._reader = reader  # single statements: no need to wait for a write transaction
        self._lock = asyncio.Lock()  # one connection: one transaction at a time
        self._sql = Statements.for_style("?")

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        return cls(await _sqlite_connect(path), await _sqlite_connect(path))

    async def _transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[bool]]) -> bool:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                done = await work(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")
            return done

    async def read_and_insert(self, user_id: uuid.UUID) -> None:
        at = _sqlite_time(datetime.now(UTC))

        async def work(conn: aiosqlite.Connection) -> bool:
            async with conn.execute(self._sql.read, (user_id.hex,)) as cursor:
                await cursor.fetchone()
            await conn.execute(self._sql.insert, (uuid.uuid4().hex, user_id.hex, at))
            return True

        await self._transaction(work)

    async def rotate(self, token_hash: str, new_hash: str) -> bool:
        at = _sqlite_time(datetime.now(UTC))

        async def work(conn: aiosqlite.Connection) -> bool:
            async with conn.execute(self._sql.read_token, (token_hash,)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return False
            token_id, session_id = row[0], row[1]
            await conn.execute(self._sql.mark_used, (at, token_id))
            await conn.execute(self._sql.touch_session, (at, session_id))
            await conn.execute(self._sql.insert_token, (uuid.uuid4().hex, session_id, new_hash, at))
            return True

        return await self._transaction(work)

    async def live_session(self, session_id: uuid.UUID) -> Mapping[str, Any] | None:
        async with self._reader.execute(self._sql.live_session, (session_id.hex,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        user_id, email, mfa_enabled, created_at = row[0], row[1], row[2], row[3]
        return {
            "id": str(uuid.UUID(user_id)),
            "email": email,
            "mfa_enabled": bool(mfa_enabled),
            "created_at": created_at,
        }

    async def close(self) -> None:
        await self._conn.close()
        await self._reader.close()


async def _sqlite_connect(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    # The service's pragmas (mfa_service.db): WAL, foreign keys, a busy timeout.
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000"):
        await conn.execute(f"PRAGMA {pragma}")
    return conn


class BadRequest(Exception):
    """A request the floor cannot read: answered 422 (the harness counts it as a failure)."""


def access_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, not verified (see the module docstring)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise BadRequest() from exc
    if not isinstance(claims, dict):
        raise BadRequest()
    return claims


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str:
    scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise BadRequest()
    return token


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def json_member(body: bytes, name: str) -> str:
    try:
        value = json.loads(body)[name]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest() from exc
    if not isinstance(value, str):
        raise BadRequest()
    return value


class Floor:
    def __init__(
        self,
        database: str,
        redis_url: str,
        prefix: str,
        data_key: str,
        introspection_client: str | None,
    ) -> None:
        self._database = database
        self._redis_url = redis_url
        self._prefix = prefix
        self._box = SecretBox(decode_key(data_key))
        client_id, _, secret = (introspection_client or "").partition(":")
        self._client = (client_id, secret) if client_id and secret else None
        self._store: Store | None = None
        self._redis: Redis | None = None
        self._routes: dict[str, Callable[[Scope, bytes], Awaitable[Answer]]] = {
            "/floor": self._challenge,
            "/floor/refresh": self._refresh,
            "/floor/me": self._me,
            "/floor/introspect": self._introspect,
        }

    async def _startup(self) -> None:
        # The service's client settings (mfa_service.redis_client).
        self._redis = Redis.from_url(
            self._redis_url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )
        self._attempt = self._redis.register_script(ATTEMPT)
        # Loaded now: introspection runs it by EVALSHA inside a pipeline, which cannot reload
        # it after a NOSCRIPT.
        await self._redis.script_load(ATTEMPT)
        if self._database.startswith("postgresql://"):
            self._store = await PostgresStore.open(self._database)
        else:
            self._store = await SqliteStore.open(self._database)

    async def _shutdown(self) -> None:
        if self._store is not None:
            await self._store.close()
        if self._redis is not None:
            await self._redis.aclose()

    @property
    def store(self) -> Store:
        assert self._store is not None, "lifespan startup has not run"
        return self._store

    @property
    def redis(self) -> Redis:
        assert self._redis is not None, "lifespan startup has not run"
        return self._redis

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/noop":  # before reading the body: no work at all
            await _answer(send, (200, OK_BODY))
            return
        route = self._routes.get(scope["path"])
        if route is None:
            await _answer(send, NOT_FOUND)
            return
        body = await _read_body(receive)
        try:
            answer = await route(scope, body)
        except BadRequest:
            answer = BAD_REQUEST
        await _answer(send, answer)

    def _ip_key(self, kind: str, scope: Scope) -> str:
        return f"{self._prefix}{{floor-{kind}-ip:{client_ip(scope)}}}"

    def _deny_key(self, jti: str) -> str:
        return f"{self._prefix}floor-deny:{jti}"

    async def _challenge(self, _scope: Scope, body: bytes) -> Answer:
        try:
            user_id, _ = open_token(self._box, json_member(body, "challenge_token"))
        except (ValueError, ChallengeExpired) as exc:
            raise BadRequest() from exc
        await self._attempt(
            keys=[f"{self._prefix}{{u:{user_id.hex}}}:floor"], args=[ATTEMPT_TTL_MS]
        )
        await self.store.read_and_insert(user_id)
        return 200, OK_BODY

    async def _refresh(self, scope: Scope, body: bytes) -> Answer:
        token_hash = hashlib.sha256(json_member(body, "refresh_token").encode()).hexdigest()
        new_token = secrets.token_urlsafe(32)
        await self._attempt(keys=[self._ip_key("refresh", scope)], args=[ATTEMPT_TTL_MS])
        if not await self.store.rotate(token_hash, hashlib.sha256(new_token.encode()).hexdigest()):
            return UNAUTHORIZED
        return 200, json.dumps({"refresh_token": new_token}).encode()

    async def _me(self, scope: Scope, _body: bytes) -> Answer:
        claims = access_claims(bearer_token(scope))
        if await self.redis.exists(self._deny_key(str(claims.get("jti")))):
            return UNAUTHORIZED
        user = await self._live_user(claims)
        return (200, json.dumps(user).encode()) if user else UNAUTHORIZED

    async def _introspect(self, scope: Scope, body: bytes) -> Answer:
        if not self._client_authenticated(scope):
            return UNAUTHORIZED
        form = dict(urllib.parse.parse_qsl(body.decode("latin-1")))
        claims = access_claims(form.get("token", ""))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._attempt.sha, 1, self._ip_key("introspect", scope), ATTEMPT_TTL_MS)
            pipe.exists(self._deny_key(str(claims.get("jti"))))
            _, denied = await pipe.execute()
        active = not denied and await self._live_user(claims) is not None
        answer = {"active": True, "token_type": "Bearer", **claims} if active else {"active": False}
        return 200, json.dumps(answer).encode()

    async def _live_user(self, claims: Mapping[str, Any]) -> Mapping[str, Any] | None:
        try:
            session_id, user_id = uuid.UUID(str(claims["sid"])), str(claims["sub"])
        except (KeyError, ValueError) as exc:
            raise BadRequest() from exc
        user = await self.store.live_session(session_id)
        return user if user is not None and user["id"] == user_id else None

    def _client_authenticated(self, scope: Scope) -> bool:
        scheme, _, encoded = (header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "basic" or self._client is None:
            return False
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        expected_id, expected_secret = self._client
        return client_id == expected_id and hmac.compare_digest(
            secret.encode(), expected_secret.encode()
        )

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


async def _read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _answer(send: Send, answer: Answer) -> None:
    status, body = answer
    await send({"type": "http.response.start", "status": status, "headers": HEADERS})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Floor:
    return Floor(
        os.environ["BENCH_FLOOR_DATABASE"],
        os.environ["BENCH_FLOOR_REDIS_URL"],
        os.environ.get("BENCH_FLOOR_REDIS_PREFIX", "mfa-bench:"),
        os.environ["BENCH_FLOOR_DATA_KEY"],
        os.environ.get("BENCH_FLOOR_INTROSPECTION_CLIENT"),
    )
