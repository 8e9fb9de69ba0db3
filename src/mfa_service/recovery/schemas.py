from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from mfa_service.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from mfa_service.factors.schemas import BACKUP_DESCRIPTION, CODE_DESCRIPTION, FactorProof
from mfa_service.factors.webauthn.schemas import AuthenticationCredential

TOKEN_EXAMPLE = "kq3Vd0m9yX2bT7cR1sN4eW8hJ6uZ5aQ0pL3fG9iK2oE"
TokenField = Field(min_length=1, max_length=200, description="The `token` of the mailed link.")


class ForgotRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "alice@example.com"}]})

    email: EmailStr = Field(max_length=320)


class Accepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "If an account has this email, ..."}]}
    )

    detail: str


class TokenRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"token": TOKEN_EXAMPLE}]})

    token: str = TokenField


class ResetRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"token": TOKEN_EXAMPLE, "new_password": "a new and longer passphrase"},
                {
                    "token": TOKEN_EXAMPLE,
                    "new_password": "a new and longer passphrase",
                    "code": "123456",
                },
            ]
        }
    )

    token: str = TokenField
    new_password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    code: str | None = Field(
        default=None,
        max_length=64,
        description=f"When the user has a second factor, one of `code`, `backup_code` or "
        f"`webauthn` (an assertion for the options of POST /auth/password/reset/options). "
        f"{CODE_DESCRIPTION}",
    )
    backup_code: str | None = Field(default=None, max_length=64, description=BACKUP_DESCRIPTION)
    webauthn: AuthenticationCredential | None = None

    @model_validator(mode="after")
    def _at_most_one_factor(self) -> ResetRequest:
        if sum(v is not None for v in (self.code, self.backup_code, self.webauthn)) > 1:
            raise ValueError("give at most one of code, backup_code or webauthn")
        return self

    def second_factor(self) -> FactorProof | None:
        if self.code is None and self.backup_code is None and self.webauthn is None:
            return None
        return FactorProof(code=self.code, backup_code=self.backup_code, webauthn=self.webauthn)
