"""MFA_REDIS_URL: one server (`redis://`, `rediss://`, `unix://`, as redis-py reads them) or a
Redis Cluster, `redis+cluster://[user:password@]host:port[,host:port…]` (`rediss+cluster://`
for TLS). The cluster's nodes are only where to start: the client learns the rest from them.

Error messages never repeat the URL: it may hold a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme → TLS
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class ClusterUrl:
    nodes: tuple[tuple[str, int], ...]  # startup nodes (host, port)
    username: str | None
    password: str | None
    tls: bool


def scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def is_cluster(url: str) -> bool:
    return scheme(url) in CLUSTER_SCHEMES


def _node(entry: str) -> tuple[str, int]:
    """`host:port`, `host` (port 6379) or `[v6 address]:port`."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r} is not host:port")
        port_text = rest[1:]
    else:
        host, _, port_text = entry.partition(":")
    if not host or any(c in host for c in "/?#@ "):
        raise ValueError(f"{entry!r} is not host:port")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{entry!r}: the port is not a TCP port (1-65535)")
    return host, int(port_text)


def parse_cluster_url(url: str) -> ClusterUrl:
    """The startup nodes and credentials of a cluster URL, or ValueError saying what is wrong
    (naming a node at most, never the credentials)."""
    if not is_cluster(url):
        raise ValueError("a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError("a Redis Cluster URL takes no ?options or #fragment")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has database 0 only: no /<db> other than /0")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    entries = [entry.strip() for entry in hosts.split(",")]
    if not any(entries):
        raise ValueError("a Redis Cluster URL names at least one node: host:port[,host:port...]")
    nodes = tuple(_node(entry) for entry in entries if entry)
    return ClusterUrl(nodes, username, password, CLUSTER_SCHEMES[scheme(url)])


def check(url: str) -> str:
    """The URL if redis-py (or our cluster client) can use it, else ValueError."""
    if is_cluster(url):
        parse_cluster_url(url)
    elif scheme(url) not in SINGLE_SCHEMES:
        raise ValueError(
            "must be redis://, rediss:// or unix:// (one server), or "
            "redis+cluster://host:port[,host:port...] (a Redis Cluster; rediss+cluster:// for "
            "TLS)"
        )
    return url
