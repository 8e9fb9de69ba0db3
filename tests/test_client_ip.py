"""The client IP behind trusted proxies (SPEC §4): the configured header only, every line of
it, the right-most address that is not a trusted proxy; nothing a client writes picks it.

What the service took for the client's address is read back where it shows: the `ip` of the
login's audit event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.requests import Request

from mfa_service.app import create_app
from mfa_service.config import Settings
from mfa_service.net import get_client
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    clean_redis,
    new_email,
    register,
    settings_for,
)

PROXY = "10.1.2.3"  # the socket peer in most tests: a proxy inside the trusted 10.1.0.0/16
Headers = list[tuple[str, str]]


@asynccontextmanager
async def app_behind(
    settings: Settings, peer: str = PROXY
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """tests.support.running_app, keeping hold of the app."""
    app = create_app(settings, FakeClock())
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://mfa.test") as c:
                yield app, c
    finally:
        await clean_redis(settings)


async def seen_ip(client: httpx.AsyncClient, headers: Headers) -> str:
    """The address the service recorded for a login sent with `headers`."""
    user = await register(client)
    r = await client.post(
        "/auth/login", json={"email": user["email"], "password": PASSWORD}, headers=headers
    )
    assert r.status_code == 200, r.text
    events = await client.get(
        "/users/me/events", params={"limit": 1}, headers=bearer(r.json()["access_token"])
    )
    assert events.status_code == 200, events.text
    item = events.json()["items"][0]
    assert item["type"] == "login.succeeded", item
    ip: str = item["ip"]
    return ip


def behind_proxies(backend: Backend, **overrides: Any) -> Settings:
    return settings_for(backend, trusted_proxies="10.1.0.0/16", **overrides)


async def test_every_x_forwarded_for_line_is_read(backend: Backend) -> None:
    async with app_behind(behind_proxies(backend)) as (_, client):
        # The client sent a line of its own; the proxies added theirs below it.
        two_lines = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4, 10.1.9.9")]
        assert await seen_ip(client, two_lines) == "1.2.3.4"
        # The proxy wrote the client on a line of its own; the client's line does not win.
        appended = [("X-Forwarded-For", "6.6.6.6, 7.7.7.7"), ("X-Forwarded-For", "1.2.3.4")]
        assert await seen_ip(client, appended) == "1.2.3.4"
        # All of the lines are one list, walked from the right end.
        spread = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-For", "5.6.7.8"),
            ("X-Forwarded-For", "10.1.0.1"),
            ("X-Forwarded-For", "10.1.0.2"),
        ]
        assert await seen_ip(client, spread) == "5.6.7.8"


async def test_forwarded_mode_ignores_x_forwarded_for(backend: Backend) -> None:
    async with app_behind(behind_proxies(backend, proxy_header="forwarded")) as (_, client):
        proxied = [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=1.2.3.4;proto=https")]
        assert await seen_ip(client, proxied) == "1.2.3.4"
        # X-Forwarded-For alone is the client's own writing: the client is the proxy's peer.
        assert await seen_ip(client, [("X-Forwarded-For", "6.6.6.6")]) == PROXY
        # Every Forwarded line, RFC 7239 syntax: quoted, bracketed IPv6 with a port.
        lines = [
            ("Forwarded", "for=6.6.6.6"),
            ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https, For=10.1.9.9:443'),
        ]
        assert await seen_ip(client, lines) == "2001:db8:cafe::17"


async def test_x_forwarded_for_mode_ignores_forwarded(backend: Backend) -> None:
    async with app_behind(behind_proxies(backend)) as (_, client):
        assert await seen_ip(client, [("Forwarded", "for=6.6.6.6")]) == PROXY
        both = [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")]
        assert await seen_ip(client, both) == "1.2.3.4"


async def test_trusted_proxies_are_addresses_and_networks(backend: Backend) -> None:
    settings = settings_for(backend, trusted_proxies="10.1.0.0/16,2001:db8:ffff::/48,192.0.2.1")
    hops = "6.6.6.6, 1.2.3.4, 2001:db8:ffff:1::9, 192.0.2.1, 10.1.200.200"
    # A dual-stack socket reports an IPv4 proxy as ::ffff:a.b.c.d: the same trusted proxy.
    for peer in (PROXY, f"::ffff:{PROXY}", "2001:db8:ffff:42::1", "192.0.2.1"):
        async with app_behind(settings, peer) as (_, client):
            assert await seen_ip(client, [("X-Forwarded-For", hops)]) == "1.2.3.4", peer
    # Outside every trusted network (10.2/16, a neighbour of 192.0.2.1): the peer is the client.
    for peer in ("10.2.0.1", "192.0.2.2", "2001:db8:fffe::1"):
        async with app_behind(settings, peer) as (_, client):
            assert await seen_ip(client, [("X-Forwarded-For", hops)]) == peer


async def test_garbage_hops_never_let_the_client_choose(backend: Backend) -> None:
    """A hop that is not an address stops the walk at the last trusted address: whatever the
    client wrote left of (or inside) the garbage is never taken."""
    async with app_behind(behind_proxies(backend)) as (_, client):
        for hops, expected in [
            ("6.6.6.6, not-an-address, 10.1.9.9", "10.1.9.9"),
            ("6.6.6.6, unknown", PROXY),
            ("6.6.6.6, 1.2.3.4 5.6.7.8", PROXY),
            ('6.6.6.6, "1.2.3.4"', PROXY),
            ("6.6.6.6, 1.2.3.4:port", PROXY),
            ("6.6.6.6, 1.2.3.4:80", "1.2.3.4"),  # a port is not garbage
            ("6.6.6.6, [2001:db8::5]:80", "2001:db8::5"),
        ]:
            assert await seen_ip(client, [("X-Forwarded-For", hops)]) == expected, hops
    async with app_behind(behind_proxies(backend, proxy_header="forwarded")) as (_, client):
        for value, expected in [
            ("for=6.6.6.6, for=unknown", PROXY),
            ('for=6.6.6.6, for="_hidden", for=10.1.9.9', "10.1.9.9"),
            ("for=6.6.6.6, proto=https", PROXY),  # an element without for=
            ("for=6.6.6.6, for=1.2.3.4;for=5.6.7.8", PROXY),  # for= twice in one element
            ("for=6.6.6.6, for=2001:db8::5", "2001:db8::5"),
            # The client's unbalanced quote swallows nothing the proxy appended after it.
            ('for="6.6.6.6, for=1.2.3.4', "1.2.3.4"),
            ('for=6.6.6.6;x=", for=1.2.3.4', "1.2.3.4"),
        ]:
            assert await seen_ip(client, [("Forwarded", value)]) == expected, value


async def test_ipv6_clients_count_per_64(backend: Backend) -> None:
    """The limits keyed by IP use `ip_bucket`: an IPv6 client's /64, an IPv4 address as it
    is; audit events keep the full address."""
    settings = behind_proxies(backend)
    async with app_behind(settings, "2001:db8:1:2:3:4:5:6") as (app, client):
        assert await seen_ip(client, []) == "2001:db8:1:2:3:4:5:6"
        for peer, headers, ip, bucket in [
            ("2001:db8:1:2:3:4:5:6", [], "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff::1", [], "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", [], "2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("::ffff:192.0.2.9", [], "192.0.2.9", "192.0.2.9"),
            ("192.0.2.9", [], "192.0.2.9", "192.0.2.9"),
            (
                PROXY,
                [(b"x-forwarded-for", b"2001:db8:5:6::7")],
                "2001:db8:5:6::7",
                "2001:db8:5:6::/64",
            ),
            (PROXY, [(b"x-forwarded-for", b"::ffff:1.2.3.4")], "1.2.3.4", "1.2.3.4"),
        ]:
            request = Request(
                {"type": "http", "app": app, "client": (peer, 50000), "headers": headers}
            )
            seen = await get_client(request)
            assert (seen.ip, seen.ip_bucket) == (ip, bucket), peer


async def test_password_limits_count_an_ipv6_client_per_64(backend: Backend) -> None:
    """Through the limits themselves: the (account, client IP) pair is an IPv6 /64, and an
    IPv4 client is the same client on a dual-stack socket."""
    settings = settings_for(backend, login_max_failures=2)
    email = new_email()
    async with app_behind(settings) as (app, _), AsyncExitStack() as stack:
        # One app, a connection from each peer.
        clients = {
            peer: await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, client=(peer, 50000)),
                    base_url="http://mfa.test",
                )
            )
            for peer in (
                "2001:db8:1:2::a",
                "2001:db8:1:2:ffff::b",
                "2001:db8:1:2::c",
                "2001:db8:1:3::1",
                "::ffff:192.0.2.9",
                "192.0.2.9",
            )
        }

        async def login(peer: str, password: str) -> int:
            r = await clients[peer].post("/auth/login", json={"email": email, "password": password})
            return r.status_code

        await register(clients["2001:db8:1:3::1"], email)
        # Two addresses of one /64 reach the pair's limit together...
        assert await login("2001:db8:1:2::a", "wrong password!") == 401
        assert await login("2001:db8:1:2:ffff::b", "wrong password!") == 401
        # ...so a third address of it is refused, while the next /64 is another client.
        assert await login("2001:db8:1:2::c", PASSWORD) == 429
        assert await login("2001:db8:1:3::1", PASSWORD) == 200
        assert await login("::ffff:192.0.2.9", "wrong password!") == 401
        assert await login("::ffff:192.0.2.9", "wrong password!") == 401
        assert await login("192.0.2.9", PASSWORD) == 429
