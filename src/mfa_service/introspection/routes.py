from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Form, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from mfa_service.db import SessionDep
from mfa_service.errors import (
    InvalidClient,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    responses,
)
from mfa_service.introspection import service
from mfa_service.introspection.schemas import Introspection
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep

router = APIRouter(tags=["introspection"])
basic = HTTPBasic(
    auto_error=False,
    description="A client id and secret from MFA_INTROSPECTION_CLIENTS (client_secret_basic).",
)


@router.post(
    "/oauth/introspect",
    response_model=Introspection,
    response_model_exclude_none=True,
    summary="Is this access token still active? (RFC 7662)",
    responses=responses(InvalidRequest, InvalidClient, RateLimited, ServiceUnavailable),
)
async def introspect(
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
    response: Response,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    token: Annotated[str | None, Form()] = None,
    token_type_hint: Annotated[str | None, Form()] = None,  # noqa: ARG001 - only one kind
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> Introspection:
    """For configured service clients: HTTP Basic (RFC 6749 2.3.1), or `client_id` and
    `client_secret` in the form. Expired, forged, logged-out or revoked-session tokens, and
    anything that is not one of our access tokens, answer `{"active": false}`."""
    response.headers["Cache-Control"] = "no-store"
    if credentials is not None:
        # RFC 6749 2.3.1: both halves are form-urlencoded before the Basic encoding.
        client_id = unquote_plus(credentials.username)
        client_secret = unquote_plus(credentials.password)
    await service.authenticate_client(svc, client, client_id, client_secret)
    if not token:
        raise InvalidRequest("The form field `token` is required.")
    return await service.introspect(db, svc, token)
