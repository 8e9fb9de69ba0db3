"""The verified claims of an access token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """Claims of a verified mfa-service access token (times in seconds since the epoch).

    `amr` (RFC 8176) holds `pwd`, plus `mfa` and the second factor once one was proven:
    `otp` (TOTP), `recovery` (a backup code), later `hwk` (a security key).
    """

    sub: str
    sid: str
    jti: str
    iat: int
    nbf: int
    exp: int
    auth_time: int
    amr: frozenset[str]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def mfa(self) -> bool:
        """True when a second factor was proven in this session."""
        return "mfa" in self.amr

    def age(self, now: float) -> float:
        """Seconds since the factors in `amr` were last proven (login or step-up)."""
        return now - self.auth_time

    def expires_in(self, now: float) -> float:
        return self.exp - now
