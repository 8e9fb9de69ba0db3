"""One exception hierarchy, rendered as RFC 9457 problem+json.

Every error carries its HTTP status, a stable machine `code` and optional headers. Messages
are fixed strings chosen here: nothing a client sent (passwords, codes, tokens) is echoed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is a stable string clients can switch on."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    detail: ClassVar[str] = "The server could not complete the request."

    def __init__(self, detail: str | None = None, headers: Mapping[str, str] | None = None):
        self.message = detail or self.detail
        self.headers = dict(headers or {})
        super().__init__(self.code)

    def problem(self) -> dict[str, Any]:
        return problem_body(self.status, self.code, self.title, self.message)


def problem_body(status: int, code: str, title: str, detail: str) -> dict[str, Any]:
    return {
        "type": f"urn:mfa-service:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }


class InvalidCredentials(ServiceError):
    status = 401
    code = "invalid_credentials"
    title = "Invalid credentials"
    detail = "The email or password is incorrect."


class InvalidToken(ServiceError):
    status = 401
    code = "invalid_token"
    title = "Invalid token"
    detail = "The access token is missing, invalid, expired or revoked."

    def __init__(self, detail: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(
            detail, {"WWW-Authenticate": 'Bearer error="invalid_token"', **(headers or {})}
        )


class InsufficientUserAuthentication(ServiceError):
    """RFC 9470: the token is valid, but its authentication event is too old or too weak for
    this action. Prove yourself again (step-up or reauthenticate) and retry."""

    status = 401
    code = "insufficient_user_authentication"
    title = "Recent authentication required"
    detail = (
        "This action needs a recent authentication: call POST /mfa/step-up (users with a "
        "second factor) or POST /auth/reauthenticate, then retry with the new access token."
    )

    def __init__(self, max_age: int):
        challenge = f'Bearer error="insufficient_user_authentication", max_age={max_age}'
        super().__init__(headers={"WWW-Authenticate": challenge})


class StepUpRequired(ServiceError):
    status = 403
    code = "step_up_required"
    title = "Step-up required"
    detail = "This account has a second factor: prove it with POST /mfa/step-up instead."


class OAuthError(ServiceError):
    """An RFC 6749 error: the problem body also carries OAuth's `error` member."""

    def problem(self) -> dict[str, Any]:
        return {**super().problem(), "error": self.code}


class InvalidClient(OAuthError):
    status = 401
    code = "invalid_client"
    title = "Invalid client"
    detail = "Client authentication failed."

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Basic realm="mfa-service"'})


class InvalidRequest(OAuthError):
    status = 400
    code = "invalid_request"
    title = "Invalid request"
    detail = "The request is missing a required parameter."


class InvalidRefreshToken(ServiceError):
    status = 401
    code = "invalid_refresh_token"
    title = "Invalid refresh token"
    detail = "The refresh token is invalid, expired or revoked."


class InvalidCode(ServiceError):
    status = 401
    code = "invalid_code"
    title = "Invalid code"
    detail = "The code is wrong, already used or expired."


class ChallengeExpired(ServiceError):
    status = 401
    code = "challenge_expired"
    title = "Challenge expired"
    detail = "The challenge is unknown, used, expired or burned by too many wrong codes."


class NothingPending(ServiceError):
    status = 400
    code = "totp_not_pending"
    title = "No pending TOTP enrollment"
    detail = "Start with POST /mfa/totp/setup."


class PendingNotFound(ServiceError):
    status = 404
    code = "not_found"
    title = "Nothing pending"
    detail = "There is no pending TOTP enrollment."


class MfaNotEnabled(ServiceError):
    status = 403
    code = "mfa_not_enabled"
    title = "MFA is not enabled"
    detail = "Enroll a second factor first (TOTP or a security key)."


class TotpNotEnabled(ServiceError):
    status = 404
    code = "not_found"
    title = "TOTP not enabled"
    detail = "The user has no TOTP authenticator to remove."


class TotpAlreadyEnabled(ServiceError):
    status = 409
    code = "totp_already_enabled"
    title = "TOTP already enabled"
    detail = "Disable TOTP before enrolling a new authenticator."


class WebAuthnNotPending(ServiceError):
    status = 400
    code = "webauthn_not_pending"
    title = "No pending WebAuthn registration"
    detail = (
        "Options are single use and last 300 s: get new ones from "
        "POST /mfa/webauthn/registrations/options."
    )


class InvalidWebAuthnResponse(ServiceError):
    status = 401
    code = "invalid_webauthn_response"
    title = "Invalid WebAuthn response"
    detail = "The authenticator's response does not match the options, origin or relying party."


class WebAuthnCredentialExists(ServiceError):
    status = 409
    code = "webauthn_credential_exists"
    title = "Credential already registered"
    detail = "This authenticator's credential is already registered."


class WebAuthnCredentialNotFound(ServiceError):
    status = 404
    code = "not_found"
    title = "No such credential"
    detail = "The user has no WebAuthn credential with this id."


class NoWebAuthnCredential(ServiceError):
    status = 403
    code = "no_webauthn_credential"
    title = "No security key"
    detail = "The user has no usable WebAuthn credential."


class PasskeyRefused(ServiceError):
    """One answer for every failed passkey login: nothing tells which check failed."""

    status = 401
    code = "invalid_credentials"
    title = "Invalid credentials"
    detail = "The passkey could not be verified."


class InvalidCursor(ServiceError):
    status = 400
    code = "invalid_cursor"
    title = "Invalid cursor"
    detail = "Use the next_cursor of a previous page."


class EmailTaken(ServiceError):
    status = 409
    code = "email_taken"
    title = "Email already registered"
    detail = "An account with this email already exists."


class WeakPassword(ServiceError):
    status = 422
    code = "weak_password"
    title = "Password not accepted"
    detail = "The password is too common."


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"
    detail = "The request body is larger than this service accepts."


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
    title = "Too many attempts"
    detail = "Too many failed attempts; try again later."

    def __init__(self, retry_after: int, detail: str | None = None):
        self.retry_after = max(1, int(retry_after))
        super().__init__(detail, {"Retry-After": str(self.retry_after)})


class ServiceUnavailable(ServiceError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
    detail = "A backing service is unreachable; nothing was changed. Try again shortly."

    def __init__(self, detail: str | None = None, retry_after: int = 1):
        super().__init__(detail, {"Retry-After": str(retry_after)})


class Overloaded(ServiceUnavailable):
    code = "overloaded"
    title = "Overloaded"
    detail = "Too many requests are waiting for password hashing; try again shortly."


def responses(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors a route can raise."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = out.setdefault(
            error.status,
            {"model": Problem, "description": error.title, "content": {PROBLEM_JSON: {}}},
        )
        if entry["description"] != error.title:
            entry["description"] += f"; {error.title}"
        examples = entry["content"][PROBLEM_JSON].setdefault("examples", {})
        examples[error.code] = {
            "value": problem_body(error.status, error.code, error.title, error.detail)
        }
    return out


def _render(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


# Exceptions that mean "a backing server is unreachable": refuse, never fail open.
BACKEND_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time: overloaded
    ConnectionError,
    TimeoutError,
    OSError,
)


def install_handlers(app: FastAPI) -> None:
    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return _render(exc.status, exc.problem(), exc.headers)

    async def backend_down(request: Request, exc: Exception) -> JSONResponse:
        # The exception text may hold a connection URL; log only its type.
        logger.warning(
            "backend unreachable on %s %s: %s", request.method, request.url.path, type(exc).__name__
        )
        err = ServiceUnavailable()
        return _render(err.status, err.problem(), err.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # FastAPI's default body echoes the input (a password, a code): keep only where and why.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        body = problem_body(
            422,
            "validation_error",
            "Invalid request",
            "The request body or parameters are not valid.",
        )
        body["errors"] = errors
        return _render(422, body)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        title = str(exc.detail) if isinstance(exc.detail, str) else "Error"
        return _render(
            exc.status_code, problem_body(exc.status_code, code, title, title), exc.headers
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The engine hides SQL parameters, and our own messages never hold secrets.
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        err = ServiceError()
        return _render(err.status, err.problem())

    app.add_exception_handler(ServiceError, service_error)
    for exc_type in BACKEND_DOWN:
        app.add_exception_handler(exc_type, backend_down)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
