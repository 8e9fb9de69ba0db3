"""Who is calling: the client IP (socket peer unless a trusted proxy says otherwise)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from mfa_service.config import IPNetwork


@dataclass(frozen=True)
class Client:
    ip: str
    user_agent: str


def client_ip(peer: str | None, forwarded_for: str | None, trusted: list[IPNetwork]) -> str:
    """Walk X-Forwarded-For from the right while the hop is a trusted proxy.

    The right-most untrusted address is the client: anything left of it was written by the
    client itself and proves nothing.
    """
    if peer is None:
        return "unknown"
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    current = peer
    for hop in reversed(hops):
        if not _is_trusted(current, trusted):
            break
        current = hop
    try:
        return str(ipaddress.ip_address(current))
    except ValueError:
        return peer


def _is_trusted(address: str, trusted: list[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def forwarded_for(forwarded: str | None) -> str | None:
    """The `for=` hops of an RFC 7239 `Forwarded` header, as an X-Forwarded-For list."""
    if not forwarded:
        return None
    hops = []
    for element in forwarded.split(","):
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.lower() == "for":
                value = value.strip('"')
                if value.startswith("["):  # [IPv6]:port
                    value = value[1:].partition("]")[0]
                elif value.count(":") == 1:  # IPv4:port
                    value = value.partition(":")[0]
                hops.append(value)
    return ", ".join(hops) or None


# async, though it awaits nothing: FastAPI runs a plain `def` dependency in its thread pool,
# a thread hop on every request.
async def get_client(request: Request) -> Client:
    peer = request.client.host if request.client else None
    trusted = request.app.state.services.settings.trusted_proxies
    hops = request.headers.get("x-forwarded-for") or forwarded_for(request.headers.get("forwarded"))
    ip = client_ip(peer, hops, trusted)
    return Client(ip=ip, user_agent=request.headers.get("user-agent", "")[:300])


ClientDep = Annotated[Client, Depends(get_client)]
