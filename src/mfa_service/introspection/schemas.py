from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Introspection(BaseModel):
    """RFC 7662 answer: `{"active": false}` alone, or `active` with the token's claims."""

    active: bool
    token_type: Literal["Bearer"] | None = None
    iss: str | None = None
    aud: str | None = None
    sub: str | None = Field(default=None, description="The user id.")
    iat: int | None = None
    nbf: int | None = None
    exp: int | None = None
    jti: str | None = None
    auth_time: int | None = Field(
        default=None, description="When the user last proved a factor (Unix seconds)."
    )
    amr: list[str] | None = Field(default=None, description="RFC 8176 methods, e.g. pwd mfa otp.")
    sid: str | None = Field(default=None, description="The session (refresh-token family).")
