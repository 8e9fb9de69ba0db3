from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mfa_service.factors.schemas import FactorProof
from mfa_service.factors.webauthn.schemas import (
    ASSERTION_EXAMPLE,
    REQUEST_OPTIONS_EXAMPLE,
    RequestOptions,
)
from mfa_service.schemas import optional_in_clients


def _as_sent(schema: dict[str, Any]) -> None:
    """`status` is always sent (the login union's tag); `webauthn` is left out rather than
    null (the login route drops None)."""
    schema["required"] = ["status", *(n for n in schema.get("required", []) if n != "status")]
    webauthn = schema["properties"]["webauthn"]
    webauthn.pop("default", None)
    (options,) = [s for s in webauthn.pop("anyOf") if s.get("type") != "null"]
    webauthn.update(options)
    schema["examples"] = [
        {
            "status": "mfa_required",
            "challenge_token": "5b0c…",
            "expires_in": 300,
            "methods": ["totp", "backup_code"],
        },
        {
            "status": "mfa_required",
            "challenge_token": "5b0c…",
            "expires_in": 300,
            "methods": ["totp", "backup_code", "webauthn"],
            "webauthn": REQUEST_OPTIONS_EXAMPLE,
        },
    ]


class ChallengeResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra=_as_sent)

    status: Literal["mfa_required"] = "mfa_required"
    challenge_token: str = Field(description="Opaque; send it to POST /mfa/challenge.")
    expires_in: int
    methods: list[str] = Field(
        description="What the user can answer with: `totp`, `backup_code`, `webauthn`."
    )
    webauthn: RequestOptions | None = Field(
        default=None,
        description="With `webauthn` in `methods`: request options for the user's security "
        "keys, bound to this challenge; pass them to `PublicKeyCredential."
        "parseRequestOptionsFromJSON()`, then send `credential.toJSON()` as `webauthn`.",
    )


class ChallengeAnswer(FactorProof):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"challenge_token": "5b0c…", "code": "123456"},
                {"challenge_token": "5b0c…", "code": "123456", "remember_device": True},
                {"challenge_token": "5b0c…", "backup_code": "7k3qz-9wm2x"},
                {"challenge_token": "5b0c…", "webauthn": ASSERTION_EXAMPLE},
            ]
        }
    )

    challenge_token: str | None = Field(
        default=None, description="Or send it as `Authorization: Bearer <challenge_token>`."
    )
    remember_device: bool = Field(
        default=False,
        description="Remember this device (default false): for `MFA_REMEMBER_DEVICE_DAYS` "
        "(30), a login that sends the `device_token` of this answer skips the challenge (amr "
        "`[pwd, mfa, device]`). Forgotten on a password or MFA change and by "
        "`DELETE /users/me/devices`.",
        json_schema_extra=optional_in_clients,
    )
