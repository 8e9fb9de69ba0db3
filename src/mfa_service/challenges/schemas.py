from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mfa_service.factors.schemas import FactorProof


class ChallengeResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "mfa_required",
                    "challenge_token": "5b0c…",
                    "expires_in": 300,
                    "methods": ["totp", "backup_code"],
                }
            ]
        }
    )

    status: Literal["mfa_required"] = "mfa_required"
    challenge_token: str = Field(description="Opaque; send it to POST /mfa/challenge.")
    expires_in: int
    methods: list[str]


class ChallengeAnswer(FactorProof):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"challenge_token": "5b0c…", "code": "123456"},
                {"challenge_token": "5b0c…", "backup_code": "7k3qz-9wm2x"},
            ]
        }
    )

    challenge_token: str | None = Field(
        default=None, description="Or send it as `Authorization: Bearer <challenge_token>`."
    )
