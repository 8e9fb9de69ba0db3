"""Verify mfa-service access tokens offline and demand recent MFA (RFC 9470 step-up).

    verifier = Verifier(issuer="https://auth.example.com", audience="mfa-service")
    claims = await verifier.verify(token)          # InvalidToken, JWKSUnavailable
    verifier.require(claims, max_age=300, methods={"otp"})  # InsufficientAuthentication

FastAPI dependencies are in `mfa_verify.fastapi` (extra `mfa-verify[fastapi]`).
"""

from mfa_verify.claims import AccessClaims
from mfa_verify.errors import (
    InsufficientAuthentication,
    InvalidToken,
    JWKSUnavailable,
    MissingToken,
    VerificationError,
)
from mfa_verify.jwks import JWKSCache, VerificationKey
from mfa_verify.verifier import SUPPORTED_ALGORITHMS, Verifier

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AccessClaims",
    "InsufficientAuthentication",
    "InvalidToken",
    "JWKSCache",
    "JWKSUnavailable",
    "MissingToken",
    "VerificationError",
    "VerificationKey",
    "Verifier",
]
