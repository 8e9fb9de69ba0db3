"""An https issuer's keys come over https only: a configured `jwks_url`, a discovered
`jwks_uri` and any redirect on the way. Keys fetched over plain http could be anyone's, and
with them any token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from mfa_verify import JWKSUnavailable, Verifier

from tests.support import Backend, FakeClock, settings_for
from tests.verifier.support import JWKS_PATH, Issuer, password_only_token, running_issuer

ISSUER = "https://mfa.test"
DISCOVERY_PATH = "/.well-known/openid-configuration"


@pytest.fixture
async def https_issuer(backend: Backend, clock: FakeClock) -> AsyncIterator[Issuer]:
    async with running_issuer(settings_for(backend, issuer=ISSUER), clock) as running:
        yield running


class Downgrading(httpx.AsyncBaseTransport):
    """The issuer behind something that points the verifier at plain http: the discovery
    document's `jwks_uri` rewritten, or a redirect from the https JWKS. Records every URL."""

    def __init__(self, issuer: Issuer, *, rewrite: bool = False, redirect: bool = False) -> None:
        self.inner = issuer.transport
        self.rewrite = rewrite
        self.redirect = redirect
        self.urls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if self.redirect and request.url.scheme == "https" and request.url.path == JWKS_PATH:
            location = str(request.url.copy_with(scheme="http"))
            return httpx.Response(302, headers={"Location": location})
        response = await self.inner.handle_async_request(request)
        if self.rewrite and request.url.path == DISCOVERY_PATH:
            document = json.loads(await response.aread())
            document["jwks_uri"] = document["jwks_uri"].replace("https://", "http://", 1)
            return httpx.Response(200, json=document)
        return response


def test_a_configured_http_jwks_url_is_refused() -> None:
    for url in ("http://mfa.test/.well-known/jwks.json", "HTTP://mfa.test/.well-known/jwks.json"):
        with pytest.raises(ValueError, match="jwks_url must be https"):
            Verifier(ISSUER, "aud", jwks_url=url)
    # Allowed: https keys for an https issuer; anything for an http (development) issuer.
    Verifier(ISSUER, "aud", jwks_url="https://keys.mfa.test/jwks.json")
    Verifier("http://localhost:8000", "aud", jwks_url="http://127.0.0.1:8000/jwks.json")


async def test_a_discovered_http_jwks_uri_is_refused(https_issuer: Issuer) -> None:
    token = await password_only_token(https_issuer.client)
    honest = Downgrading(https_issuer)
    async with httpx.AsyncClient(transport=honest) as http:
        verifier = Verifier(ISSUER, https_issuer.settings.audience, discovery=True, http=http)
        await verifier.verify(token)
    assert honest.urls == [f"{ISSUER}{DISCOVERY_PATH}", f"{ISSUER}{JWKS_PATH}"]

    downgraded = Downgrading(https_issuer, rewrite=True)
    async with httpx.AsyncClient(transport=downgraded) as http:
        verifier = Verifier(ISSUER, https_issuer.settings.audience, discovery=True, http=http)
        with pytest.raises(JWKSUnavailable, match="jwks_uri is not https"):
            await verifier.verify(token)
    assert downgraded.urls == [f"{ISSUER}{DISCOVERY_PATH}"], "the http key set was fetched"


async def test_a_redirect_to_http_is_refused(https_issuer: Issuer) -> None:
    """A caller's client may follow redirects; the keys must still arrive over https."""
    token = await password_only_token(https_issuer.client)
    redirecting = Downgrading(https_issuer, redirect=True)
    async with httpx.AsyncClient(transport=redirecting, follow_redirects=True) as http:
        for discovery in (False, True):
            verifier = Verifier(
                ISSUER, https_issuer.settings.audience, discovery=discovery, http=http
            )
            with pytest.raises(JWKSUnavailable, match="plain http"):
                await verifier.verify(token)
    assert f"http://mfa.test{JWKS_PATH}" in redirecting.urls  # followed, then refused
