"""The long-lived collaborators one app instance holds, built in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.passwords import PasswordHasher
from mfa_service.clock import Clock
from mfa_service.config import Settings
from mfa_service.factors.throttle import FactorThrottle
from mfa_service.limits.attempts import Scripts
from mfa_service.limits.login import LoginLimiter
from mfa_service.outbox.worker import Outbox
from mfa_service.redis_client import RedisClient
from mfa_service.secretbox import SecretBox
from mfa_service.tokens.keys import KeyStore


@dataclass
class Services:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    statement_sessionmaker: async_sessionmaker[AsyncSession]  # db.get_statement_session
    redis: RedisClient
    scripts: Scripts  # the Lua scripts of every Redis step, on `redis`
    box: SecretBox
    keys: KeyStore
    hasher: PasswordHasher
    throttle: FactorThrottle
    login_limiter: LoginLimiter
    outbox: Outbox  # side effects delivered after commit (mail; webhooks next)

    def rkey(self, *parts: str) -> str:
        """A Redis key under this deployment's prefix."""
        return self.settings.redis_prefix + ":".join(parts)


async def get_services(request: Request) -> Services:  # async: no thread-pool hop (see net.py)
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
