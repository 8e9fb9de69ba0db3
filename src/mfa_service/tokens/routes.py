from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from mfa_service.errors import ServiceUnavailable, responses
from mfa_service.services import ServicesDep
from mfa_service.tokens.keys import PUBLISH_RELOAD_SECONDS, REVOKED_WITHIN_SECONDS
from mfa_service.tokens.schemas import Jwks, OpenIdConfiguration

router = APIRouter(tags=["discovery"])


@router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    response_model_exclude_none=True,  # an EC key has no `n`, an RSA key no `crv`
    operation_id="getJwks",
    summary="Public signing keys (RFC 7517)",
    responses=responses(ServiceUnavailable),
)
async def jwks(svc: ServicesDep, response: Response) -> dict[str, Any]:
    """Verify access tokens offline with these keys (pin the algorithm to the key's `alg`);
    refetch when a token names an unknown `kid`. Cacheable for 300 s. A revoked key is gone
    from here within 10 s (`mfa-service keys revoke`)."""
    response.headers["Cache-Control"] = "public, max-age=300"
    # A revoked key is gone from here within 10 s on every instance (`keys revoke`).
    ring = await svc.keys.ring(max_age=PUBLISH_RELOAD_SECONDS, wait_after=REVOKED_WITHIN_SECONDS)
    return ring.jwks()


@router.get(
    "/.well-known/openid-configuration",
    response_model=OpenIdConfiguration,
    operation_id="getOpenIdConfiguration",
    summary="Discovery document",
)
async def discovery(svc: ServicesDep) -> OpenIdConfiguration:
    """The issuer, where its keys are (`jwks_uri`) and how to introspect, as OpenID Connect
    Discovery metadata, so generic libraries can find the keys. Only what is true of this
    service: it is not an OpenID Provider (no authorization endpoint, no ID tokens)."""
    return OpenIdConfiguration.of(svc.settings)
