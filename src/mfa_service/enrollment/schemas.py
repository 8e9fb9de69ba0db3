from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EnrollmentRequired(BaseModel):
    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,  # `status` is the login union's tag
        json_schema_extra={
            "examples": [
                {
                    "status": "mfa_enrollment_required",
                    "enrollment_token": "q8Zr0c1d…",
                    "expires_in": 600,
                }
            ]
        },
    )

    status: Literal["mfa_enrollment_required"] = "mfa_enrollment_required"
    enrollment_token: str = Field(
        description="Opaque; a Bearer credential for the enrollment routes only (TOTP setup, "
        "QR, confirm; WebAuthn registration options and registration). The enrollment's "
        "success answers with tokens."
    )
    expires_in: int = Field(description="Seconds the enrollment token stays usable.")
