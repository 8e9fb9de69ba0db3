"""The Redis client: a real server, or the in-process emulation for a single process."""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from mfa_service.config import Settings

logger = logging.getLogger(__name__)


def create_redis(settings: Settings) -> Redis:
    if settings.redis_url:
        # Short timeouts: a stalled Redis must turn into a quick 503, not a hung request.
        return Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2,
            socket_timeout=2,
            health_check_interval=30,
        )
    import fakeredis

    logger.warning(
        "MFA_REDIS_URL is not set: using the in-process Redis emulation. Counters, challenges "
        "and logouts live in this process only; run one worker, and set MFA_REDIS_URL for "
        "anything shared."
    )
    fake: Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return fake
