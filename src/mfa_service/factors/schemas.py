from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from mfa_service.factors.webauthn.schemas import BACKUP_CODES_EXAMPLE, AuthenticationCredential
from mfa_service.sessions.schemas import TOKEN_RESPONSE_EXAMPLE, TokenResponse

CODE_DESCRIPTION = "A current 6-digit code from the authenticator app (spaces are ignored)."
BACKUP_DESCRIPTION = "One of the backup codes, e.g. `7k3qz-9wm2x` (case and hyphens ignored)."


class _OneOf(BaseModel):
    """A body that takes exactly one of `alternatives` (given and not null), as its validator
    insists: said in the JSON schema too, so a client or a fuzzer knows."""

    alternatives: ClassVar[tuple[str, ...]]

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        handler.resolve_ref_schema(schema)["oneOf"] = [
            {"type": "object", "required": [name], "properties": {name: {"not": {"type": "null"}}}}
            for name in cls.alternatives
        ]
        return schema


class FactorProof(_OneOf):
    """Exactly one of `code` (TOTP), `backup_code` or `webauthn` (a security key's assertion
    for the request options this challenge or session was given)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"code": "123456"}, {"backup_code": "7k3qz-9wm2x"}]}
    )
    alternatives = ("code", "backup_code", "webauthn")

    code: str | None = Field(default=None, description=CODE_DESCRIPTION)
    backup_code: str | None = Field(default=None, description=BACKUP_DESCRIPTION)
    webauthn: AuthenticationCredential | None = Field(
        default=None,
        description="`credential.toJSON()` of `navigator.credentials.get()` called with the "
        "request options from the login's `ChallengeResponse.webauthn` (or, for a step-up, "
        "from `POST /mfa/step-up/options`).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> FactorProof:
        given = [v for v in (self.code, self.backup_code, self.webauthn) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of code, backup_code or webauthn")
        return self


class PresenceProof(_OneOf):
    """Exactly one of `code` (a current TOTP code) or `webauthn` (a security key's assertion
    for the options of POST /mfa/step-up/options). Not a backup code: it proves presence of
    the authenticator that new backup codes stand in for."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "123456"}]})
    alternatives = ("code", "webauthn")

    code: str | None = Field(default=None, description=CODE_DESCRIPTION)
    webauthn: AuthenticationCredential | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PresenceProof:
        if (self.code is None) == (self.webauthn is None):
            raise ValueError("give exactly one of code or webauthn")
        return self

    def proof(self) -> FactorProof:
        return FactorProof(code=self.code, webauthn=self.webauthn)


class TotpCode(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "123456"}]})

    code: str = Field(description=CODE_DESCRIPTION)


class DisableRequest(FactorProof):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"password": "correct horse battery staple", "code": "123456"}]
        }
    )

    password: str = Field(min_length=1, max_length=128)


class TotpState(BaseModel):
    enabled: bool
    pending: bool


class BackupCodesState(BaseModel):
    remaining: int = Field(description="Unused backup codes; 0 until a second factor is enrolled.")


class WebAuthnState(BaseModel):
    credentials: int = Field(description="Registered security keys and passkeys.")


class MfaState(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "mfa_enabled": True,
                    "totp": {"enabled": True, "pending": False},
                    "backup_codes": {"remaining": 9},
                    "webauthn": {"credentials": 1},
                }
            ]
        }
    )

    mfa_enabled: bool
    totp: TotpState
    backup_codes: BackupCodesState
    webauthn: WebAuthnState


class TotpSetup(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                    "otpauth_uri": "otpauth://totp/mfa-service:alice%40example.com"
                    "?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=mfa-service",
                    "qr_svg": "data:image/svg+xml;charset=utf-8,%3Csvg...",
                }
            ]
        }
    )

    secret: str = Field(description="Base32, for typing into the app by hand.")
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as a QR code, a data:image/svg+xml URI.")


class BackupCodes(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"backup_codes": BACKUP_CODES_EXAMPLE}]}
    )

    backup_codes: list[str] = Field(description="Shown once; store them somewhere safe.")


class TotpConfirmed(BackupCodes):
    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,  # `mfa_enabled` is always sent
        json_schema_extra={
            "examples": [{"mfa_enabled": True, "backup_codes": BACKUP_CODES_EXAMPLE}]
        },
    )

    mfa_enabled: Literal[True] = True


class TotpEnrolled(TokenResponse, TotpConfirmed):
    """An enrollment with an enrollment token (MFA_REQUIRE_MFA): the login's tokens too."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,
        json_schema_extra={
            "examples": [
                {
                    "mfa_enabled": True,
                    "backup_codes": BACKUP_CODES_EXAMPLE,
                    **TOKEN_RESPONSE_EXAMPLE,
                }
            ]
        },
    )
