"""One exception hierarchy, rendered as RFC 9457 problem+json.

Every error carries its HTTP status, a stable machine `code` and optional headers. Messages
are fixed strings chosen here: nothing a client sent (passwords, codes, tokens) is echoed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import asyncpg.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from mfa_service.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem_body(status: int, code: str, title: str, detail: str) -> dict[str, Any]:
    return {
        "type": f"urn:mfa-service:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }


# --- what the OpenAPI document says an error body is ------------------------------------------

SCHEMA_REF = "#/components/schemas/{model}"


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is a stable string clients can switch on."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                problem_body(
                    401,
                    "invalid_credentials",
                    "Invalid credentials",
                    "The email or password is incorrect.",
                )
            ]
        }
    )

    type: str = Field(description="`urn:mfa-service:problem:<code>`.")
    title: str = Field(description="A fixed, human-readable text for the code.")
    status: int = Field(description="The HTTP status code of the answer.")
    detail: str = Field(description="A fixed explanation; never echoes what the client sent.")
    code: str = Field(description="A stable machine string: switch on this, not on the texts.")


class FieldError(BaseModel):
    loc: list[str | int] = Field(
        description="Where: `body`, `query`, `path` or `header`, then the path to the field."
    )
    msg: str = Field(description="Why, in words (the input itself is never repeated).")
    type: str = Field(description="Why, as a stable string (pydantic's error type).")


VALIDATION_EXAMPLE_ERRORS: list[JsonValue] = [
    {
        "loc": ["body", "email"],
        "msg": "value is not a valid email address: An email address must have an @-sign.",
        "type": "value_error",
    }
]


class ValidationProblem(Problem):
    """The request did not match the documented body or parameters (code `validation_error`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **problem_body(
                        422,
                        "validation_error",
                        "Invalid request",
                        "The request body or parameters are not valid.",
                    ),
                    "errors": VALIDATION_EXAMPLE_ERRORS,
                }
            ]
        }
    )

    errors: list[FieldError]


class OAuthProblem(Problem):
    """An OAuth 2.0 error (RFC 6749 5.2) as problem details: `error` repeats `code`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **problem_body(
                        401, "invalid_client", "Invalid client", "Client authentication failed."
                    ),
                    "error": "invalid_client",
                }
            ]
        }
    )

    error: str = Field(description="The OAuth error code, equal to `code`.")


PROBLEM_MODELS: tuple[type[Problem], ...] = (Problem, ValidationProblem, OAuthProblem)

# The schema of each header an error may carry.
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Retry-After": {"type": "integer", "minimum": 1},
    "WWW-Authenticate": {"type": "string"},
}


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    detail: ClassVar[str] = "The server could not complete the request."
    # For the OpenAPI document: the body's model, and the headers every instance carries.
    schema: ClassVar[type[Problem]] = Problem
    documented_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, detail: str | None = None, headers: Mapping[str, str] | None = None):
        self.message = detail or self.detail
        self.headers = dict(headers or {})
        super().__init__(self.code)

    def problem(self) -> dict[str, Any]:
        return problem_body(self.status, self.code, self.title, self.message)

    @classmethod
    def example(cls) -> dict[str, Any]:
        """The body as the OpenAPI document shows it."""
        return problem_body(cls.status, cls.code, cls.title, cls.detail)


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
    documented_headers = {"WWW-Authenticate": '`Bearer error="invalid_token"` (RFC 6750).'}

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
    documented_headers = {
        "WWW-Authenticate": '`Bearer error="insufficient_user_authentication", '
        "max_age=<MFA_REAUTH_MAX_AGE>` (RFC 9470): authenticate again, then retry."
    }

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

    schema = OAuthProblem

    def problem(self) -> dict[str, Any]:
        return {**super().problem(), "error": self.code}

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {**super().example(), "error": cls.code}


class InvalidClient(OAuthError):
    status = 401
    code = "invalid_client"
    title = "Invalid client"
    detail = "Client authentication failed."
    documented_headers = {"WWW-Authenticate": '`Basic realm="mfa-service"`.'}

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


class SessionNotFound(ServiceError):
    status = 404
    code = "not_found"
    title = "No such session"
    detail = "No live session of yours has this id."


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


class AccountDisabled(ServiceError):
    """Only after the right password (or passkey): a guesser learns nothing from it."""

    status = 403
    code = "account_disabled"
    title = "Account disabled"
    detail = "This account was disabled by an operator."


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


class InvalidResetToken(ServiceError):
    """One answer for a password-reset token that is unknown, used, voided or expired."""

    status = 401
    code = "invalid_reset_token"
    title = "Invalid reset link"
    detail = "This password-reset link is invalid, used or expired: ask for a new one."


class InvalidVerificationToken(ServiceError):
    status = 401
    code = "invalid_verification_token"
    title = "Invalid verification link"
    detail = "This verification link is invalid, used or expired: ask for a new one."


class EmailNotVerified(ServiceError):
    status = 403
    code = "email_not_verified"
    title = "Email not verified"
    detail = "Confirm your email address first: a link was sent to it (follow the newest one)."


class EmailAlreadyVerified(ServiceError):
    status = 409
    code = "email_already_verified"
    title = "Email already verified"
    detail = "This account's email address is verified already."


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"
    detail = "The request body is larger than this service accepts."


class RequestValidationFailed(ServiceError):
    """The body or parameters do not match the route's schema: where and why, never the
    input (FastAPI's own answer echoes it, and it may be a password or a code)."""

    status = 422
    code = "validation_error"
    title = "Invalid request"
    detail = "The request body or parameters are not valid."
    schema = ValidationProblem

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__()

    def problem(self) -> dict[str, Any]:
        return {**super().problem(), "errors": self.errors}

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {**super().example(), "errors": VALIDATION_EXAMPLE_ERRORS}


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
    title = "Too many attempts"
    detail = "Too many failed attempts; try again later."
    documented_headers = {"Retry-After": "Seconds until an attempt is let through again."}

    def __init__(self, retry_after: int, detail: str | None = None):
        self.retry_after = max(1, int(retry_after))
        super().__init__(detail, {"Retry-After": str(self.retry_after)})


class ServiceUnavailable(ServiceError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
    detail = "A backing service is unreachable; nothing was changed. Try again shortly."
    documented_headers = {"Retry-After": "Seconds to wait before trying again."}

    def __init__(self, detail: str | None = None, retry_after: int = 1):
        super().__init__(detail, {"Retry-After": str(retry_after)})


class Overloaded(ServiceUnavailable):
    code = "overloaded"
    title = "Overloaded"
    detail = "Too many requests are waiting for password hashing; try again shortly."


def responses(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors a route can raise: per status, the
    problem+json schema with `code` narrowed to those errors' codes, their headers, and an
    example of each. The schemas it refers to are `problem_schemas()`."""
    by_status: dict[int, list[type[ServiceError]]] = {}
    for error in errors:
        group = by_status.setdefault(error.status, [])
        if error not in group:
            group.append(error)
    return {status: _response(status, group) for status, group in sorted(by_status.items())}


def _response(status: int, group: list[type[ServiceError]]) -> dict[str, Any]:
    examples: dict[str, Any] = {}
    for error in group:
        name = error.code if error.code not in examples else f"{error.code}_{len(examples)}"
        examples[name] = {"summary": error.title, "value": error.example()}
    entry: dict[str, Any] = {
        "description": "; ".join(dict.fromkeys(error.title for error in group)),
        "content": {PROBLEM_JSON: {"schema": _problem_schema(status, group), "examples": examples}},
    }
    if headers := _headers(group):
        entry["headers"] = headers
    return entry


def _problem_schema(status: int, group: list[type[ServiceError]]) -> dict[str, Any]:
    codes_by_model: dict[type[Problem], list[str]] = {}
    for error in group:
        codes = codes_by_model.setdefault(error.schema, [])
        if error.code not in codes:
            codes.append(error.code)
    variants = [
        {
            "allOf": [
                {"$ref": SCHEMA_REF.format(model=model.__name__)},
                {
                    "type": "object",
                    "required": ["status", "code"],
                    "properties": {
                        "status": {"type": "integer", "const": status},
                        "code": {"type": "string", "enum": codes},
                    },
                },
            ]
        }
        for model, codes in codes_by_model.items()
    ]
    return variants[0] if len(variants) == 1 else {"oneOf": variants}


def _headers(group: list[type[ServiceError]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = dict.fromkeys(name for error in group for name in error.documented_headers)
    for name in names:
        said = {e.code: e.documented_headers[name] for e in group if name in e.documented_headers}
        always = all(name in e.documented_headers for e in group)
        if always and len(set(said.values())) == 1:
            description = next(iter(said.values()))
        else:
            description = " ".join(f"With `{code}`: {text}" for code, text in said.items())
        out[name] = {"description": description, "required": always, "schema": HEADER_SCHEMAS[name]}
    return out


def problem_schemas() -> dict[str, dict[str, Any]]:
    """The component schemas `responses()` refers to."""
    _, top = models_json_schema(
        [(model, "serialization") for model in PROBLEM_MODELS], ref_template=SCHEMA_REF
    )
    return dict(top["$defs"])


def _render(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


# Exceptions that mean "a backing server is unreachable": refuse, never fail open.
BACKEND_DOWN: tuple[type[Exception], ...] = (
    *REDIS_UNAVAILABLE,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time: overloaded
    # From the raw driver (the hot paths' statements): the connection broke, or the server
    # ended it (shutdown, pg_terminate_backend, a cancelled statement).
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    ConnectionError,
    TimeoutError,
    OSError,
)


_BUSY = re.compile(r"another operation (\(\d+\) )?is in progress")


def connection_broke(exc: BaseException | None) -> bool:
    """Whether the raw driver's error says the connection broke under a request, though its
    class does not: a connection the server ended between two statements ("connection is
    closed"; its other InterfaceErrors are misuse, our bugs), or one checked out while the
    server's termination notice was read but its socket's end not yet (the protocol is still
    busy with the notice: asyncpg 0.32 says "cannot switch to state 12; another operation (2)
    is in progress")."""
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return _BUSY.search(str(exc)) is not None
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        return str(exc) == "connection is closed"
    return False


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
        err = RequestValidationFailed(
            [
                {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                for e in exc.errors()
            ]
        )
        return _render(err.status, err.problem())

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # The framework's only 400: a body it could not parse (JSON that is not UTF-8, a
            # broken multipart form). A malformed body is a 422, like malformed JSON.
            json_body = "json" in request.headers.get("content-type", "")
            err = RequestValidationFailed(
                [
                    {
                        "loc": ["body"],
                        "msg": "The body could not be parsed.",
                        "type": "json_invalid" if json_body else "body_invalid",
                    }
                ]
            )
            return _render(err.status, err.problem())
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        title = str(exc.detail) if isinstance(exc.detail, str) else "Error"
        return _render(
            exc.status_code, problem_body(exc.status_code, code, title, title), exc.headers
        )

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        # SQLAlchemy reports a connection the server ended mid-statement as a plain DBAPIError
        # (asyncpg's error has no more specific class there), marked as a disconnect.
        assert isinstance(exc, sqlalchemy.exc.DBAPIError)
        if exc.connection_invalidated or connection_broke(exc.orig and exc.orig.__cause__):
            return await backend_down(request, exc)
        return await unexpected(request, exc)

    async def driver_error(request: Request, exc: Exception) -> JSONResponse:
        if connection_broke(exc):
            return await backend_down(request, exc)
        return await unexpected(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The engine hides SQL parameters, and our own messages never hold secrets.
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        err = ServiceError()
        return _render(err.status, err.problem())

    app.add_exception_handler(ServiceError, service_error)
    for exc_type in BACKEND_DOWN:
        app.add_exception_handler(exc_type, backend_down)
    app.add_exception_handler(sqlalchemy.exc.DBAPIError, database_error)
    app.add_exception_handler(asyncpg.exceptions.InterfaceError, driver_error)
    app.add_exception_handler(asyncpg.exceptions.InternalClientError, driver_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
