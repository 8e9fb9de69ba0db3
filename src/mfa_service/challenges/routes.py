from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mfa_service.challenges import service
from mfa_service.challenges.schemas import ChallengeAnswer
from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.errors import (
    ChallengeExpired,
    InvalidCode,
    RateLimited,
    RequestValidationFailed,
    ServiceUnavailable,
    responses,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions.schemas import SignedIn

router = APIRouter(tags=["mfa"])

# Its own scheme, so Swagger UI keeps the challenge token apart from the access token.
challenge_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ChallengeToken",
    description="The challenge_token from /auth/login (instead of the body field).",
)


@router.post(
    "/mfa/challenge",
    response_model=SignedIn,
    operation_id="answerChallenge",
    summary="Answer an MFA challenge",
    responses=responses(
        InvalidCode, ChallengeExpired, RequestValidationFailed, RateLimited, ServiceUnavailable
    ),
    # The challenge token travels in the body or as a Bearer credential: the scheme is one
    # alternative, no scheme (the body field) the other.
    openapi_extra={"security": [{}]},
)
@statements_autocommit
async def answer_challenge(
    body: ChallengeAnswer,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(challenge_bearer)],
) -> Response:
    """Send the `challenge_token` from `/auth/login` in the body or as
    `Authorization: Bearer <challenge_token>`, and exactly one of a TOTP `code`, a
    `backup_code`, or a security key's assertion (`webauthn`: the `credential.toJSON()` of
    `navigator.credentials.get()` called with this challenge's `webauthn` request options).
    No challenge token, or an unknown, used or expired one: 401 `challenge_expired`.

    The answer carries a `device_token` (see `POST /auth/login`); with `remember_device: true`
    later logins that send it skip the challenge for `MFA_REMEMBER_DEVICE_DAYS`.

    A challenge allows 5 wrong answers, then it is burned; 10 wrong answers for a user within
    15 minutes lock the second factor for 15 minutes (429 with `Retry-After`). A wrong
    assertion uses up the challenge's WebAuthn options (a code still works).
    """
    token = body.challenge_token or (credentials.credentials if credentials else None)
    if not token:
        raise ChallengeExpired()
    tokens = await service.answer(db, svc, client, token, body, body.remember_device)
    # Serialised once: returned as a model, FastAPI would validate it again first.
    return Response(tokens.model_dump_json(), media_type="application/json")
