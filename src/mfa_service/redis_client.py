"""The Redis client: a real server, a Redis Cluster, or the in-process emulation for a single
process."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.typing import EncodableT

from mfa_service.config import Settings
from mfa_service.redis_url import is_cluster, parse_cluster_url

logger = logging.getLogger(__name__)

# What the services hold: both speak the commands we send (single-slot scripts and keys).
RedisClient = Redis | RedisCluster

# The default of MFA_REDIS_TIMEOUT: a stalled Redis must turn into a quick 503.
TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_SECONDS = 30

# Redis errors that mean "not available now", whatever the topology: the request answers 503
# (never 500, never fail open). Beyond lost connections and timeouts, a cluster in flux:
# CLUSTERDOWN and MASTERDOWN (ClusterError), TRYAGAIN and MOVED/ASK storms that outlived the
# client's redirections (ClusterError "TTL exhausted", or the redirection itself from a
# pipeline), slots no node serves and nodes that cannot be found (RedisClusterException), a
# node that turned replica under a write (ReadOnlyError).
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.RedisClusterException,
)


class _RedisCluster(RedisCluster):
    """redis-py's cluster client. When it reloads the topology (CLUSTERDOWN, a node lost) it
    closes connections other commands are using, and those fail inside redis-py with
    AttributeError or TypeError (its closed stream is None), or with uvloop's RuntimeError
    (a write on a transport already closed: "the handler is closed"), rather than
    ConnectionError. They are lost connections, raised as such: 503, not 500."""

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (AttributeError, TypeError) as exc:
            raise redis.exceptions.ConnectionError("connection closed under the command") from exc
        except RuntimeError as exc:
            if "handler is closed" not in str(exc):
                raise
            raise redis.exceptions.ConnectionError("connection closed under the command") from exc


def connect(url: str, timeout: float = TIMEOUT_SECONDS) -> RedisClient:
    """A client for MFA_REDIS_URL (validated by Settings), each command and connection given
    `timeout` seconds: nothing is contacted yet."""
    if not is_cluster(url):
        return Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=HEALTH_CHECK_SECONDS,
        )
    parsed = parse_cluster_url(url)
    return _RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.tls,
        # One more try after a lost node, on a freshly read topology (a failover may have
        # moved its slots); redis-py's default of ten would hold a request for 20 s and more.
        retry=Retry(NoBackoff(), 1),
        # A MOVED only patches that slot's owner. redis-py's default, a full reload every fifth
        # MOVED, closes every connection under the commands in flight (a burst at start-up,
        # routed before the topology was known, set that off).
        reinitialize_steps=0,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
    )


async def check(client: RedisClient) -> None:
    """Raise one of UNAVAILABLE unless Redis can serve every key: a single server answers
    PING; in a cluster, every primary answers and the cluster says its slots are all served."""
    if not isinstance(client, RedisCluster):
        await client.ping()
        return
    await client.ping(target_nodes=RedisCluster.PRIMARIES)
    info = await client.cluster_info()
    if info.get("cluster_state") != "ok":
        raise redis.exceptions.ClusterDownError("cluster_state is not ok")


def redis_kind(url: str | None) -> str:
    """What the log says Redis is (never the URL: it may hold a password)."""
    if not url:
        return "in-process emulation"
    return "cluster" if is_cluster(url) else "server"


def create_redis(settings: Settings) -> RedisClient:
    if settings.redis_url:
        return connect(settings.redis_url, settings.redis_timeout)
    import fakeredis

    logger.warning(
        "MFA_REDIS_URL is not set: using the in-process Redis emulation. Counters, challenges "
        "and logouts live in this process only; run one worker, and set MFA_REDIS_URL for "
        "anything shared."
    )
    fake: Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    return fake
