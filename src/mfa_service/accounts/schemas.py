from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from mfa_service.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from mfa_service.factors.schemas import FactorProof
from mfa_service.factors.webauthn.schemas import AuthenticationCredential
from mfa_service.sessions.schemas import DEVICE_TOKEN_EXAMPLE

PasswordField = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)


class Credentials(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "alice@example.com", "password": "correct horse battery staple"}]
        }
    )

    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class LoginRequest(Credentials):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"email": "alice@example.com", "password": "correct horse battery staple"},
                {
                    "email": "alice@example.com",
                    "password": "correct horse battery staple",
                    "device_token": DEVICE_TOKEN_EXAMPLE,
                },
            ]
        }
    )

    device_token: str | None = Field(
        default=None,
        max_length=200,
        description="The `device_token` of this device's last login to this account, if any.",
    )


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
        description="When MFA is enabled, one of `code` (a current TOTP code), `backup_code` "
        "or `webauthn` (an assertion for the options of POST /mfa/step-up/options).",
    )
    backup_code: str | None = Field(default=None, max_length=64)
    webauthn: AuthenticationCredential | None = None

    @model_validator(mode="after")
    def _at_most_one_factor(self) -> PasswordChangeRequest:
        if sum(v is not None for v in (self.code, self.backup_code, self.webauthn)) > 1:
            raise ValueError("give at most one of code, backup_code or webauthn")
        return self

    def second_factor(self) -> FactorProof | None:
        if self.code is None and self.backup_code is None and self.webauthn is None:
            return None
        return FactorProof(code=self.code, backup_code=self.backup_code, webauthn=self.webauthn)


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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f8e2c1a-7b4d-4e2a-9c61-2d5e8f9a0b1c",
                    "email": "alice@example.com",
                    "mfa_enabled": True,
                    "created_at": "2026-11-28T09:14:51Z",
                    "email_verified": True,
                }
            ]
        }
    )

    created_at: datetime
    email_verified: bool = Field(
        description="Whether the owner proved the address (`POST /auth/email/verification`)."
    )
