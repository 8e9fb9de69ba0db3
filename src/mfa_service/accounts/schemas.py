from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from mfa_service.accounts.passwords import MAX_LENGTH, MIN_LENGTH

PasswordField = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)


class Credentials(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "alice@example.com", "password": "correct horse battery staple"}]
        }
    )

    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class RegisterRequest(Credentials):
    password: str = PasswordField


class ReauthenticateRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"password": "correct horse battery staple"}]}
    )

    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class PasswordChangeRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current_password": "correct horse battery staple",
                    "new_password": "a new and longer passphrase",
                }
            ]
        }
    )

    current_password: str = Field(min_length=1, max_length=MAX_LENGTH)
    new_password: str = PasswordField
    code: str | None = Field(
        default=None,
        max_length=64,
        description="A current TOTP code; required when MFA is enabled.",
    )


class UserOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f8e2c1a-7b4d-4e2a-9c61-2d5e8f9a0b1c",
                    "email": "alice@example.com",
                    "mfa_enabled": False,
                }
            ]
        }
    )

    id: uuid.UUID
    email: str
    mfa_enabled: bool


class MeOut(UserOut):
    created_at: datetime
