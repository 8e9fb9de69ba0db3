"""Databases for the benchmark: created fresh, migrated, seeded in seconds, dropped.

Users are written straight into the model tables (SQLAlchemy Core bulk inserts) after
`alembic upgrade head`, each with TOTP enrolled and confirmed: the same rows the service would
have written through registration and enrolment, with ONE password hash (made by the service's
own hasher, at the configured argon2 parameters) shared by all, and every TOTP secret sealed by
the service's SecretBox under the same associated data as `factors/totp`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pyotp
from sqlalchemy import insert

from mfa_service import migrations
from mfa_service.accounts.passwords import PasswordHasher
from mfa_service.app import prepare_storage
from mfa_service.clock import SystemClock
from mfa_service.config import Settings
from mfa_service.db import create_engine
from mfa_service.factors.totp import otp
from mfa_service.factors.totp import service as totp_service
from mfa_service.secretbox import load_secret_box
from mfa_service.tables import metadata

PASSWORD = "bench: correct horse battery staple"


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    secret: str  # base32, as an authenticator app holds it


async def recreate_postgres(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_postgres(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(settings: Settings, count: int) -> list[User]:
    """Migrate the (empty) database of `settings` and add `count` users with TOTP enabled."""
    engine = create_engine(settings)
    try:
        await migrations.upgrade(engine)
        box = load_secret_box(settings)
        hasher = PasswordHasher(settings)
        password_hash = await hasher.hash(PASSWORD)
        at = datetime.now(UTC) - timedelta(days=1)
        # The enrolment code's step counts as used (factors/totp confirm).
        enrolled_step = otp.time_step(at.timestamp())
        users = [
            User(id=uuid.uuid4(), email=f"bench-{i:06d}@example.com", secret=otp.new_secret())
            for i in range(count)
        ]
        user_rows = [
            {
                "id": u.id,
                "email": u.email,
                "password_hash": password_hash,
                "mfa_enabled": True,
                "created_at": at,
                "password_changed_at": at,
            }
            for u in users
        ]
        totp_rows = [
            {
                "id": uuid.uuid4(),
                "user_id": u.id,
                "secret": box.seal(u.secret.encode(), context=totp_service._context(u.id)),
                "data_key_id": box.key_id,
                "created_at": at,
                "confirmed_at": at,
                "last_used_step": enrolled_step,
            }
            for u in users
        ]
        async with engine.begin() as conn:
            await conn.execute(insert(metadata.tables["users"]), user_rows)
            await conn.execute(insert(metadata.tables["totp_credentials"]), totp_rows)
        # The first signing key, as `mfa-service serve` makes it before its workers start.
        await prepare_storage(engine, box, settings, SystemClock())
        return users
    finally:
        await engine.dispose()


def code_for(user: User) -> str:
    """The code of the *next* 30 s step: the service accepts ±1 step, so it stays valid for
    60 to 90 s from now (the current step's code might expire within a second)."""
    step = otp.time_step(time.time()) + 1
    return str(pyotp.TOTP(user.secret, digits=otp.DIGITS, interval=otp.PERIOD).generate_otp(step))
