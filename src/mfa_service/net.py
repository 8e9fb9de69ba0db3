"""Who is calling: the client IP (socket peer unless a trusted proxy says otherwise)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from mfa_service.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Every limit keyed by IP counts an IPv6 client per /64: one subscriber commonly holds a whole
# /64 (SLAAC, privacy addresses), so per-address counting would give it 2**64 fresh buckets.
IPV6_BUCKET_PREFIX = 64


@dataclass(frozen=True)
class Client:
    ip: str  # the full address (audit events show it); "unknown" without a socket peer
    user_agent: str

    @property
    def ip_bucket(self) -> str:
        """What limits keyed by IP count: an IPv6 client's /64 network ("2001:db8:1:2::/64"),
        an IPv4 client's address."""
        address = parse_ip(self.ip)
        if isinstance(address, ipaddress.IPv6Address):
            network = ipaddress.IPv6Network((int(address), IPV6_BUCKET_PREFIX), strict=False)
            return str(network)
        return self.ip


def parse_ip(text: str) -> IPAddress | None:
    """An address, IPv4-mapped IPv6 as IPv4 (a dual-stack socket reports IPv4 peers as
    ::ffff:a.b.c.d), without an IPv6 zone; None when `text` is not an address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


def client_ip(peer: str | None, hops: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the socket peer, or, when the peer is a trusted proxy, the
    right-most forwarded hop that is not itself a trusted proxy.

    `hops` are the forwarded addresses in order, left (nearest the client) to right (nearest
    us), one entry per list element, as written. Each hop we reach was appended by the trusted
    proxy to its right; everything left of the first untrusted hop was written by the client
    and proves nothing. A hop that is not an address (garbage, "unknown", an obfuscated
    identifier) stops the walk at the last trusted address: never a value the client chose.
    """
    if peer is None:
        return "unknown"
    current = parse_ip(peer)
    if current is None:
        return peer
    for hop in reversed(hops):
        if not _is_trusted(current, trusted):
            break
        address = parse_node(hop)
        if address is None:
            break
        current = address
    return str(current)


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def parse_node(text: str) -> IPAddress | None:
    """One forwarded hop: "a.b.c.d", "a.b.c.d:port", "v6", "[v6]" or "[v6]:port" (RFC 7239
    writes IPv6 in brackets, and some proxies add the port to X-Forwarded-For too)."""
    text = text.strip()
    if text.startswith("["):
        text, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    return parse_ip(text)


def _is_port(text: str) -> bool:
    # RFC 7239 node-port: a number, or an obfuscated "_..." identifier.
    return bool(_PORT.fullmatch(text))


_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")


def x_forwarded_for_hops(lines: Sequence[str]) -> list[str]:
    """The hops of every X-Forwarded-For line, in order (empty list elements ignored)."""
    return [hop for line in lines for hop in (h.strip() for h in line.split(",")) if hop]


def forwarded_hops(lines: Sequence[str]) -> list[str]:
    """The `for=` node of each RFC 7239 forwarded-element of every `Forwarded` line, in order.

    Elements are split at every comma, quoted or not: no node value holds a comma or a
    semicolon, and a parser that honoured quotes would let a client's unbalanced quote swallow
    the elements the proxies appended after it. An element without exactly one `for=` (or
    split inside a quoted string) gives an empty hop, which stops the walk.
    """
    hops = []
    for line in lines:
        for element in line.split(","):
            if not element.strip():
                continue
            nodes = list(_for_values(element))
            hops.append(nodes[0] if len(nodes) == 1 else "")
    return hops


def _for_values(element: str) -> Iterator[str]:
    for pair in element.split(";"):
        name, equals, value = pair.strip().partition("=")
        if equals and name.strip().lower() == "for":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            elif '"' in value:
                value = ""  # a quoted string cut by the comma split: not a node
            yield value


def forwarded_hops_for(
    header: Literal["x-forwarded-for", "forwarded"], lines: Sequence[str]
) -> list[str]:
    if header == "forwarded":
        return forwarded_hops(lines)
    return x_forwarded_for_hops(lines)


# async, though it awaits nothing: FastAPI runs a plain `def` dependency in its thread pool,
# a thread hop on every request.
async def get_client(request: Request) -> Client:
    peer = request.client.host if request.client else None
    settings = request.app.state.services.settings
    hops: list[str] = []
    if settings.trusted_proxies:
        # Only the configured header, every line of it: the other header is the client's own
        # writing (a proxy that writes one does not strip the other).
        hops = forwarded_hops_for(
            settings.proxy_header, request.headers.getlist(settings.proxy_header)
        )
    ip = client_ip(peer, hops, settings.trusted_proxies)
    # Printable only: it is stored as text, and PostgreSQL text cannot hold U+0000.
    agent = "".join(ch for ch in request.headers.get("user-agent", "")[:300] if ch.isprintable())
    return Client(ip=ip, user_agent=agent)


ClientDep = Annotated[Client, Depends(get_client)]
