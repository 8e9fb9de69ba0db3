from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORM_EXAMPLE_TOKEN = "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiIsInR5cCI6ImF0K2p3dCJ9..."


class Introspection(BaseModel):
    """RFC 7662 answer: `{"active": false}` alone, or `active` with the token's claims."""

    active: bool
    token_type: Literal["Bearer"] | None = None
    iss: str | None = None
    aud: str | None = None
    sub: str | None = None
    iat: int | None = None
    nbf: int | None = None
    exp: int | None = None
    jti: str | None = None
    auth_time: int | None = None
    amr: list[str] | None = None
    sid: str | None = None


# What the OpenAPI document says, one model per kind of answer (the route validates the
# `Introspection` it is given against them).


class InactiveToken(BaseModel):
    """Expired, forged, logged out, its session revoked, or not one of our access tokens:
    nothing more is said."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"active": False}]})

    active: Literal[False]


class ActiveToken(BaseModel):
    """An active access token and its claims."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "active": True,
                    "token_type": "Bearer",
                    "iss": "https://auth.example.com",
                    "aud": "mfa-service",
                    "sub": "3f8e2c1a-7b4d-4e2a-9c61-2d5e8f9a0b1c",
                    "iat": 1795857302,
                    "nbf": 1795857302,
                    "exp": 1795858202,
                    "jti": "9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d",
                    "auth_time": 1795857302,
                    "amr": ["pwd", "mfa", "otp"],
                    "sid": "5d2f7c9e-0a41-4b6e-8f3d-1c2b3a4d5e6f",
                }
            ]
        }
    )

    active: Literal[True]
    token_type: Literal["Bearer"]
    iss: str
    aud: str
    sub: str = Field(description="The user id.")
    iat: int
    nbf: int
    exp: int
    jti: str
    auth_time: int = Field(description="When the user last authenticated (Unix seconds).")
    amr: list[str] = Field(description="RFC 8176 methods, e.g. pwd mfa otp.")
    sid: str = Field(description="The session (refresh-token family).")
