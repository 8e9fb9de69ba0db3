"""FastAPI dependencies: the caller's access token, optionally with recent MFA.

    verifier_auth = MfaAuth(get_verifier)  # a Verifier, or a dependency returning one
    CurrentUser = Annotated[AccessClaims, Depends(verifier_auth.require_user())]
    RecentOtp = Annotated[
        AccessClaims, Depends(verifier_auth.require_mfa(max_age=300, methods={"otp"}))
    ]

Refusals (RFC 6750, RFC 9470):

- no bearer token: 401, `WWW-Authenticate: Bearer` (no error code, RFC 6750 section 3.1);
- an invalid, expired or foreign token: 401, `WWW-Authenticate: Bearer error="invalid_token"`;
- a valid token without the required factor, or proven too long ago: 401,
  `WWW-Authenticate: Bearer error="insufficient_user_authentication", error_description="…",
  max_age="300"`; the client proves a factor again (mfa-service `POST /mfa/step-up`) and retries;
- the issuer's keys cannot be fetched: 503 `service_unavailable` with `Retry-After` (fail closed).

Call `install_error_handlers(app)` for RFC 9457 problem+json bodies like mfa-service's own
(`{type, title, status, detail, code}`); without it FastAPI renders `{"detail": …}`, with the
same status and headers.
"""

# No `from __future__ import annotations`: the dependencies below are closures, and FastAPI
# must see their `Depends(...)` annotations as objects, not as strings naming locals.

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mfa_verify.claims import AccessClaims
from mfa_verify.errors import (
    InsufficientAuthentication,
    InvalidToken,
    JWKSUnavailable,
    MissingToken,
)
from mfa_verify.verifier import Verifier

logger = logging.getLogger("mfa_verify")

PROBLEM_JSON = "application/problem+json"
JWKS_RETRY_AFTER = 5

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="An access token from mfa-service.",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
ClaimsDependency = Callable[..., Awaitable[AccessClaims]]


class AuthProblem(HTTPException):
    """An HTTP refusal with a stable `code`; rendered as problem+json by the handler."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        headers: dict[str, str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code = code
        self.title = title
        self.extra = extra or {}

    def problem(self) -> dict[str, Any]:
        return {
            "type": f"urn:mfa-service:problem:{self.code}",
            "title": self.title,
            "status": self.status_code,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


def install_error_handlers(app: FastAPI) -> None:
    async def render(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthProblem)
        return JSONResponse(
            exc.problem(), status_code=exc.status_code, headers=exc.headers, media_type=PROBLEM_JSON
        )

    app.add_exception_handler(AuthProblem, render)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def problem_for(error: InvalidToken | InsufficientAuthentication | JWKSUnavailable) -> AuthProblem:
    """The HTTP answer to a verification error. Fixed texts: no token or claim is echoed."""
    if isinstance(error, MissingToken):
        return AuthProblem(
            401,
            "invalid_token",
            "Invalid token",
            "An access token is required.",
            {"WWW-Authenticate": "Bearer"},
        )
    if isinstance(error, InvalidToken):
        return AuthProblem(
            401,
            "invalid_token",
            "Invalid token",
            "The access token is invalid or expired.",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if isinstance(error, InsufficientAuthentication):
        description = error.reason[:1].upper() + error.reason[1:]
        challenge = [
            'Bearer error="insufficient_user_authentication"',
            f"error_description={_quoted(description)}",
        ]
        extra: dict[str, Any] = {}
        if error.max_age is not None:
            challenge.append(f'max_age="{int(error.max_age)}"')
            extra["max_age"] = int(error.max_age)
        if error.methods is not None:
            extra["methods"] = sorted(error.methods)
        return AuthProblem(
            401,
            "insufficient_user_authentication",
            "Insufficient user authentication",
            f"{description}: prove it at the token issuer (mfa-service: POST /mfa/step-up) "
            "and retry with the new access token.",
            {"WWW-Authenticate": ", ".join(challenge)},
            extra,
        )
    return AuthProblem(
        503,
        "service_unavailable",
        "Service unavailable",
        "The token issuer's keys cannot be fetched; try again shortly.",
        {"Retry-After": str(JWKS_RETRY_AFTER)},
    )


class MfaAuth:
    """Dependency factories bound to one Verifier, or to a dependency that returns it (for a
    Verifier built in the app's lifespan: `lambda request: request.app.state.verifier`)."""

    def __init__(self, verifier: Verifier | Callable[..., Verifier]) -> None:
        if isinstance(verifier, Verifier):
            fixed = verifier

            def get_fixed() -> Verifier:
                return fixed

            self._get_verifier: Callable[..., Verifier] = get_fixed
        else:
            self._get_verifier = verifier

    def require_user(self) -> ClaimsDependency:
        """Any valid access token of the issuer; its claims."""
        get_verifier = self._get_verifier

        async def current_user(
            verifier: Annotated[Verifier, Depends(get_verifier)], credentials: Credentials
        ) -> AccessClaims:
            return await _verified(verifier, credentials)

        return current_user

    def require_mfa(
        self, max_age: int | None = 300, methods: Iterable[str] | None = None
    ) -> ClaimsDependency:
        """A valid token whose session proved a second factor (one of `methods`, if given:
        `otp`, `recovery`, `hwk`, `swk`) at most `max_age` seconds ago (None: any time). A
        login that skipped the challenge on a remembered device (amr `device`) proved none
        now: it passes only with `max_age=None` and no `methods`."""
        get_verifier = self._get_verifier
        wanted = None if methods is None else frozenset(methods)
        if wanted is not None and not wanted:
            raise ValueError("methods must name at least one method, or be None")

        async def recent_mfa(
            verifier: Annotated[Verifier, Depends(get_verifier)], credentials: Credentials
        ) -> AccessClaims:
            claims = await _verified(verifier, credentials)
            try:
                verifier.require(claims, max_age=max_age, methods=wanted)
            except InsufficientAuthentication as exc:
                raise problem_for(exc) from None
            return claims

        return recent_mfa


async def _verified(
    verifier: Verifier, credentials: HTTPAuthorizationCredentials | None
) -> AccessClaims:
    try:
        if credentials is None:
            raise MissingToken()
        return await verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        logger.debug("access token refused: %s", exc.reason)
        raise problem_for(exc) from None
    except JWKSUnavailable as exc:
        logger.warning("access token not checked, keys unavailable: %s", exc.reason)
        raise problem_for(exc) from None
