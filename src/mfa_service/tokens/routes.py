from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from mfa_service.services import ServicesDep
from mfa_service.tokens.access import REQUIRED_CLAIMS
from mfa_service.tokens.keys import PUBLISH_RELOAD_SECONDS, REVOKED_WITHIN_SECONDS

router = APIRouter(tags=["discovery"])


@router.get("/.well-known/jwks.json", summary="Public signing keys (RFC 7517)")
async def jwks(svc: ServicesDep, response: Response) -> dict[str, Any]:
    """Verify access tokens offline with these keys; refetch when a token names an unknown `kid`."""
    response.headers["Cache-Control"] = "public, max-age=300"
    # A revoked key is gone from here within 10 s on every instance (`keys revoke`).
    ring = await svc.keys.ring(max_age=PUBLISH_RELOAD_SECONDS, wait_after=REVOKED_WITHIN_SECONDS)
    return ring.jwks()


@router.get("/.well-known/openid-configuration", summary="Discovery document")
async def discovery(svc: ServicesDep) -> dict[str, Any]:
    s = svc.settings
    return {
        "issuer": s.issuer,
        "jwks_uri": s.jwks_uri,
        "introspection_endpoint": f"{s.issuer}/oauth/introspect",
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "access_token_signing_alg_values_supported": [s.jwt_algorithm],
        "claims_supported": REQUIRED_CLAIMS,
        "amr_values_supported": ["pwd", "mfa", "otp", "recovery", "hwk", "swk"],
    }
