"""Plumbing for the verifier and example tests: the real mfa-service app in-process, a
transport that counts (or cuts) the requests reaching it, tokens of every kind."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import mfa_verify
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from mfa_verify import Verifier

from mfa_service.app import create_app
from mfa_service.config import Settings
from mfa_service.services import Services
from mfa_service.tokens.keys import create_key
from tests.support import (
    FakeClock,
    bearer,
    challenge,
    clean_redis,
    mfa_user,
    registered_login,
    totp_code,
)

JWKS_PATH = "/.well-known/jwks.json"
VERIFIER_SOURCE = Path(__file__).resolve().parents[2] / "verifier" / "src" / "mfa_verify"


def check_installed_verifier() -> None:
    """`pip install -e '.[dev]'` installs a copy of verifier/ (pip cannot make a dependency
    editable): refuse to test a copy older than the working tree."""
    installed = Path(mfa_verify.__file__).resolve().parent
    if installed == VERIFIER_SOURCE:
        return
    stale = sorted(
        source.name
        for source in VERIFIER_SOURCE.glob("*.py")
        if not (installed / source.name).is_file()
        or (installed / source.name).read_bytes() != source.read_bytes()
    )
    if stale:
        raise RuntimeError(
            f"the installed mfa_verify ({installed}) is not verifier/src ({', '.join(stale)} "
            "differ): run  pip install -e ./verifier  (editable, then it always is)"
        )


check_installed_verifier()


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests on and remembers their paths; with `down` set, the network is gone."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    @property
    def jwks_fetches(self) -> int:
        return self.paths.count(JWKS_PATH)


@dataclass
class Issuer:
    """A running mfa-service app, its HTTP client and its collaborators."""

    app: FastAPI
    client: httpx.AsyncClient
    transport: httpx.ASGITransport
    clock: FakeClock
    settings: Settings
    counters: list[CountingTransport] = field(default_factory=list)

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    @asynccontextmanager
    async def verifier(self, **options: Any) -> AsyncIterator[tuple[Verifier, CountingTransport]]:
        """A Verifier reaching this app through a counting transport, on the shared clock."""
        counting = CountingTransport(self.transport)
        async with httpx.AsyncClient(transport=counting) as http:
            options.setdefault("issuer", self.settings.issuer)
            options.setdefault("audience", self.settings.audience)
            yield Verifier(http=http, time=self.clock.time, **options), counting

    async def rotate_key(self) -> str:
        """What `mfa-service keys rotate` does: a new active key; the old one stays published."""
        svc = self.services
        async with svc.sessionmaker() as db:
            row = await create_key(db, svc.box, svc.settings.jwt_algorithm, svc.clock)
            kid = row.kid
            await db.commit()
        return kid

    async def sign(self, payload: dict[str, Any], **header: Any) -> str:
        """A token signed with the issuer's real active key, claims as given: for proving
        that each check, not the signature, is what refuses a token."""
        ring = await self.services.keys.ring()
        headers = {"kid": ring.signing_kid, "typ": "at+jwt", **header}
        return jwt.encode(
            payload, ring.private_key, algorithm=ring.signing_algorithm, headers=headers
        )

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """A complete, valid claim set (as the server would mint it) at the clock's time."""
        issued = int(self.clock.time())
        payload: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": str(uuid.uuid4()),
            "iat": issued,
            "nbf": issued,
            "exp": issued + 900,
            "jti": uuid.uuid4().hex,
            "auth_time": issued,
            "amr": ["pwd", "mfa", "otp"],
            "sid": str(uuid.uuid4()),
        }
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}


@asynccontextmanager
async def running_issuer(settings: Settings, clock: FakeClock) -> AsyncIterator[Issuer]:
    """tests.support.running_app, keeping hold of the app (key rotation) and its transport."""
    app = create_app(settings, clock)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as client:
                yield Issuer(app, client, transport, clock, settings)
    finally:
        await clean_redis(settings)


async def password_only_token(client: httpx.AsyncClient) -> str:
    """A user without MFA: amr ["pwd"]."""
    _, tokens = await registered_login(client)
    token: str = tokens["access_token"]
    return token


@dataclass
class MfaLogin:
    email: str
    secret: str
    backup_codes: list[str]
    access_token: str


async def totp_login(client: httpx.AsyncClient, clock: FakeClock) -> MfaLogin:
    """A user with TOTP who logged in with a code: amr ["pwd", "mfa", "otp"], auth_time now."""
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 200, r.text
    return MfaLogin(user.email, user.secret, user.backup_codes, r.json()["access_token"])


async def backup_code_login(client: httpx.AsyncClient, user: MfaLogin) -> str:
    """The same user logging in with a backup code: amr ["pwd", "mfa", "recovery"]."""
    token = await challenge(client, user.email)
    r = await client.post(
        "/mfa/challenge",
        json={"challenge_token": token, "backup_code": user.backup_codes.pop()},
    )
    assert r.status_code == 200, r.text
    access: str = r.json()["access_token"]
    return access


async def step_up(client: httpx.AsyncClient, access_token: str, proof: dict[str, str]) -> str:
    """POST /mfa/step-up on mfa-service: the fresh access token."""
    r = await client.post("/mfa/step-up", headers=bearer(access_token), json=proof)
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"
    )


def foreign_key() -> ec.EllipticCurvePrivateKey:
    """An attacker's own key: tokens it signs are well formed and well signed, but not ours."""
    return ec.generate_private_key(ec.SECP256R1())


def forge(key: ec.EllipticCurvePrivateKey, payload: dict[str, Any], kid: str | None = None) -> str:
    return jwt.encode(
        payload,
        key,
        algorithm="ES256",
        headers={"kid": kid or uuid.uuid4().hex, "typ": "at+jwt"},
    )


_AUTH_PARAM = re.compile(
    r'\s*([A-Za-z0-9_!#$%&\'*+.^`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*(?:,|$)'
)


def parse_bearer_challenge(value: str) -> dict[str, str]:
    """The auth-params of a `Bearer` challenge (RFC 7235 section 2.1): quoted-string or token
    values, unquoted here. Raises when the header is not a single Bearer challenge."""
    scheme, _, rest = value.partition(" ")
    assert scheme == "Bearer", value
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _AUTH_PARAM.match(rest, position)
        assert match is not None, f"unparsable challenge: {value!r}"
        name, raw = match.groups()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        assert name not in params, f"{name} twice"
        params[name] = raw
        position = match.end()
    return params
