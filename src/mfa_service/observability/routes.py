from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from mfa_service.errors import InvalidToken
from mfa_service.observability import metrics
from mfa_service.services import ServicesDep

router = APIRouter()


# Not in the OpenAPI document: it is for Prometheus, not for the service's clients (README:
# Operating it).
@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, svc: ServicesDep) -> Response:
    """The Prometheus text format; with MFA_METRICS_TOKEN set, only for `Authorization:
    Bearer <that token>`."""
    expected = svc.settings.metrics_token
    if expected is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.get_secret_value().encode()
        ):
            raise InvalidToken("A valid metrics token is required.")
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
