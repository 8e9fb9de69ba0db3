from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from mfa_service.schemas import optional_in_clients

TOKEN_RESPONSE_EXAMPLE: dict[str, JsonValue] = {
    "status": "authenticated",
    "token_type": "Bearer",
    "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiIsInR5cCI6ImF0K2p3dCJ9...",
    "expires_in": 900,
    "refresh_token": "t3Ftq0b1V1t1uJ5c0m2z3qT7nQ...",
}


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        # Every field is always sent: the document says so (`status` is the login union's tag).
        json_schema_serialization_defaults_required=True,
        json_schema_extra={"examples": [TOKEN_RESPONSE_EXAMPLE]},
    )

    status: Literal["authenticated"] = "authenticated"
    token_type: Literal["Bearer"] = "Bearer"
    access_token: str = Field(description="JWT; verify it against /.well-known/jwks.json.")
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(description="Opaque; rotated on every use.")


DEVICE_TOKEN_EXAMPLE = "dV7n2mYcQe0pXr4sT9uW1zA3bC5dE7fG9hJ1kL3mN5o"


class SignedIn(TokenResponse):
    """The tokens of a completed login (password, and the challenge when there is one): with
    the device token."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,
        json_schema_extra={
            "examples": [{**TOKEN_RESPONSE_EXAMPLE, "device_token": DEVICE_TOKEN_EXAMPLE}]
        },
    )

    device_token: str = Field(
        description="Opaque; keep it on this device and send it with every later login "
        "(`POST /auth/login`): its logins are exempt from the account-wide and per-IP password "
        "limits (a stranger's guessing cannot lock you out). Each login answers a new one."
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "t3Ftq0b1V1t1uJ5c0m2z3qT7nQ..."}]}
    )

    refresh_token: str = Field(min_length=1, max_length=200)


LogoutScope = Literal["local", "others", "global"]


class LogoutRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"refresh_token": "t3Ftq0b1V1t1uJ5c0m2z3qT7nQ..."},
                {"scope": "others"},
                {},
            ]
        }
    )

    refresh_token: str | None = Field(
        default=None,
        max_length=200,
        description="A refresh token of the caller's: its session ends too (this session "
        "ends either way; another user's token is ignored).",
    )
    scope: LogoutScope = Field(
        default="local",
        description="`local` (the default): this session; `others`: every other session of "
        "the user (this one stays signed in); `global`: every session, this one included.",
        json_schema_extra=optional_in_clients,
    )


_SESSION_EXAMPLE: dict[str, Any] = {
    "id": "8c0d1f7e-2b9a-4c55-8e1f-3a6b7c8d9e0f",
    "created_at": "2026-11-29T08:12:03Z",
    "last_seen_at": "2026-11-29T08:42:10Z",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0",
    "amr": ["pwd", "mfa", "otp"],
    "current": True,
}


class SessionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_SESSION_EXAMPLE]})

    id: uuid.UUID
    created_at: datetime = Field(description="When the session's login completed.")
    last_seen_at: datetime = Field(
        description="Its latest login, refresh or fresh authentication (step-up)."
    )
    ip: str | None = Field(description="The client IP of its login (null: not recorded).")
    user_agent: str | None = Field(description="The User-Agent of its login.")
    amr: list[str] = Field(description="The methods of its latest authentication event.")
    current: bool = Field(description="True for the session of the access token asking.")


class SessionList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_SESSION_EXAMPLE]}]})

    items: list[SessionOut] = Field(description="Live sessions, newest first.")
