from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        # Every field is always sent: the document says so (`status` is the login union's tag).
        json_schema_serialization_defaults_required=True,
        json_schema_extra={
            "examples": [
                {
                    "status": "authenticated",
                    "token_type": "Bearer",
                    "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiIsInR5cCI6ImF0K2p3dCJ9...",
                    "expires_in": 900,
                    "refresh_token": "t3Ftq0b1V1t1uJ5c0m2z3qT7nQ...",
                }
            ]
        },
    )

    status: Literal["authenticated"] = "authenticated"
    token_type: Literal["Bearer"] = "Bearer"
    access_token: str = Field(description="JWT; verify it against /.well-known/jwks.json.")
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(description="Opaque; rotated on every use.")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "t3Ftq0b1V1t1uJ5c0m2z3qT7nQ..."}]}
    )

    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "t3Ftq0b1V1t1uJ5c0m2z3qT7nQ..."}, {}]}
    )

    refresh_token: str | None = Field(
        default=None,
        max_length=200,
        description="A refresh token of the caller's: its session ends too (this session "
        "ends either way; another user's token is ignored).",
    )
