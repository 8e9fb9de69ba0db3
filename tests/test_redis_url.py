"""MFA_REDIS_URL: one server as redis-py reads it, or a Redis Cluster's startup nodes; a bad
URL is refused with a reason that never repeats it (it may hold a password)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from mfa_service.config import Settings
from mfa_service.redis_client import connect
from mfa_service.redis_url import parse_cluster_url
from tests.support import run_cli


def test_cluster_url_names_its_startup_nodes() -> None:
    parsed = parse_cluster_url("redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert parsed.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert (parsed.username, parsed.password, parsed.tls) == ("app", "p@ss", False)
    assert parse_cluster_url("rediss+cluster://cache.internal").nodes == (("cache.internal", 6379),)
    assert parse_cluster_url("rediss+cluster://cache.internal/0").tls


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://", "at least one node"),
        ("redis+cluster://u:s3cr3t@h:1,h:port", "not a TCP port"),
        ("redis+cluster://u:s3cr3t@h:70000", "not a TCP port"),
        ("redis+cluster://u:s3cr3t@h:1/3", "database 0"),
        ("redis+cluster://u:s3cr3t@h:1?timeout=3", "no ?options"),
        # Unescaped delimiters in the password: the URL ends early, and says so.
        ("redis+cluster://u:s3cr3t/x@h:1", "database 0"),
        ("redis+cluster://u:s3cr3t?x@h:1", "no ?options"),
        ("redis+cluster://u:s3cr3t#x@h:1", "no ?options"),
        ("memcached://u:s3cr3t@h:1", "redis+cluster://"),
        ("h:6379", "redis+cluster://"),
    ],
)
def test_a_bad_redis_url_is_refused_without_repeating_it(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)) as caught:
        Settings(redis_url=url)
    assert "s3cr3t" not in str(caught.value)


def test_the_single_server_urls_stay_as_they_are() -> None:
    for url in ("redis://h:6379/2", "rediss://u:p@h:6380/0", "unix:///run/redis.sock?db=1"):
        assert Settings(redis_url=url).redis_url == url
    assert Settings(redis_url="").redis_url is None


async def test_a_cluster_url_builds_a_cluster_client() -> None:
    """Nothing is contacted when it is built (the lifespan may start while Redis is down)."""
    client = connect("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    try:
        assert isinstance(client, RedisCluster)
        assert [(n.host, n.port) for n in client.startup_nodes] == [
            ("127.0.0.1", 1),
            ("127.0.0.1", 2),
        ]
    finally:
        await client.aclose()


def test_the_cli_names_the_setting_never_the_password(tmp_path: Path) -> None:
    bad = "redis+cluster://app:s3cr3t@10.0.0.1:7000,10.0.0.2:port"
    result = run_cli("keys", "list", MFA_DATA_DIR=str(tmp_path), MFA_REDIS_URL=bad)
    assert result.returncode == 2, result.stderr
    assert "MFA_REDIS_URL" in result.stderr
    assert "not a TCP port" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout
