"""Why a token was refused. Messages are fixed strings: never the token, never its claims."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class VerificationError(Exception):
    """Base class; `reason` is a fixed, loggable string, `code` a stable machine string."""

    code: ClassVar[str] = "verification_error"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class InvalidToken(VerificationError):
    """Not a valid access token of this issuer for this audience: answer 401 invalid_token."""

    code = "invalid_token"


class MissingToken(InvalidToken):
    """No bearer token at all (RFC 6750 section 3.1: answer 401 without an error code)."""

    def __init__(self, reason: str = "no bearer token") -> None:
        super().__init__(reason)


class InsufficientAuthentication(VerificationError):
    """A valid token whose authentication is too weak or too old (RFC 9470): the client
    should prove a second factor again (mfa-service: POST /mfa/step-up) and retry."""

    code = "insufficient_user_authentication"

    def __init__(self, reason: str, *, max_age: int | None, methods: Iterable[str] | None) -> None:
        super().__init__(reason)
        self.max_age = max_age
        self.methods = None if methods is None else frozenset(methods)


class JWKSUnavailable(VerificationError):
    """The issuer's keys could not be fetched: nothing can be verified (fail closed, 503)."""

    code = "jwks_unavailable"
