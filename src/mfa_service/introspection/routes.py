from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Form, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.errors import (
    InvalidClient,
    InvalidRequest,
    RateLimited,
    RequestValidationFailed,
    ServiceUnavailable,
    responses,
)
from mfa_service.introspection import service
from mfa_service.introspection.schemas import (
    FORM_EXAMPLE_TOKEN,
    ActiveToken,
    InactiveToken,
    Introspection,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep

router = APIRouter(tags=["introspection"])
basic = HTTPBasic(
    auto_error=False,
    scheme_name="ClientSecretBasic",
    description="A client id and secret from MFA_INTROSPECTION_CLIENTS (client_secret_basic); "
    "or send them as the form fields `client_id` and `client_secret` (client_secret_post).",
)
FORM = "application/x-www-form-urlencoded"


@router.post(
    "/oauth/introspect",
    # What the service answers: `{"active": false}` alone, or `active` with every claim.
    response_model=ActiveToken | InactiveToken,
    response_model_exclude_none=True,
    operation_id="introspectToken",
    summary="Is this access token still active? (RFC 7662)",
    responses=responses(
        InvalidRequest, InvalidClient, RequestValidationFailed, RateLimited, ServiceUnavailable
    ),
    openapi_extra={
        # client_secret_basic, or client_secret_post (no scheme: the form fields).
        "security": [{}],
        "requestBody": {
            "content": {
                FORM: {
                    "examples": {
                        "client_secret_basic": {
                            "summary": "Client credentials in the Authorization header",
                            "value": {"token": FORM_EXAMPLE_TOKEN},
                        },
                        "client_secret_post": {
                            "summary": "Client credentials in the form",
                            "value": {
                                "token": FORM_EXAMPLE_TOKEN,
                                "client_id": "withdrawals",
                                "client_secret": "s3cr3t-from-MFA_INTROSPECTION_CLIENTS",
                            },
                        },
                    }
                }
            }
        },
    },
)
@statements_autocommit
async def introspect(
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
    response: Response,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    token: Annotated[
        str | None, Form(description="The access token. Required (400 `invalid_request`).")
    ] = None,
    token_type_hint: Annotated[  # noqa: ARG001 - only one kind
        str | None, Form(description="Ignored: access tokens are the only kind.")
    ] = None,
    client_id: Annotated[
        str | None, Form(description="client_secret_post: the client id, without Basic.")
    ] = None,
    client_secret: Annotated[
        str | None, Form(description="client_secret_post: the client secret, without Basic.")
    ] = None,
) -> Introspection:
    """For configured service clients (`MFA_INTROSPECTION_CLIENTS`), authenticated with HTTP
    Basic (`client_secret_basic`, RFC 6749 2.3.1) or `client_id` and `client_secret` in the
    form (`client_secret_post`); a wrong client is 401 `invalid_client`, and failures are
    counted per client IP like wrong passwords. Expired, forged, logged-out or revoked-session
    tokens, and anything that is not one of our access tokens, answer `{"active": false}`."""
    response.headers["Cache-Control"] = "no-store"
    if credentials is not None:
        # RFC 6749 2.3.1: both halves are form-urlencoded before the Basic encoding.
        client_id = unquote_plus(credentials.username)
        client_secret = unquote_plus(credentials.password)
    await service.authenticate_client(svc, client, client_id, client_secret)
    if not token:
        raise InvalidRequest("The form field `token` is required.")
    return await service.introspect(db, svc, token)
