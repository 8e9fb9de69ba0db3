from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from mfa_service.config import Settings
from mfa_service.tokens.access import REQUIRED_CLAIMS

ES256_KEY_EXAMPLE: dict[str, JsonValue] = {
    "kty": "EC",
    "crv": "P-256",
    "x": "dUCAZjZIaGnrIS4YWqPfipuOlE_4vImKR0sd9uSyKCo",
    "y": "Pd_H4JbbuF9VMxqBbgWYZ85ftDOYNZibHLlp-djX71M",
    "kid": "k8Xq2vT0",
    "alg": "ES256",
    "use": "sig",
}


class Jwk(BaseModel):
    """A public signing key (RFC 7517): EC P-256 (ES256), OKP Ed25519 (EdDSA) or RSA
    (RS256)."""

    # Members a key may carry beyond these (RFC 7517 allows them) are published as they are.
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [ES256_KEY_EXAMPLE]})

    kty: Literal["EC", "OKP", "RSA"]
    kid: str = Field(description="Matches the `kid` in an access token's header.")
    alg: Literal["ES256", "EdDSA", "RS256"]
    use: Literal["sig"]
    crv: Literal["P-256", "Ed25519"] | None = Field(default=None, description="EC and OKP keys.")
    x: str | None = Field(default=None, description="EC and OKP keys, base64url.")
    y: str | None = Field(default=None, description="EC keys, base64url.")
    n: str | None = Field(default=None, description="RSA keys: the modulus, base64url.")
    e: str | None = Field(default=None, description="RSA keys: the exponent, base64url.")
    key_ops: list[str] | None = None


class Jwks(BaseModel):
    """The keys that verify our access tokens: the active one, and retired ones until every
    token they signed has expired."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"keys": [ES256_KEY_EXAMPLE]}]})

    keys: list[Jwk]


# RFC 8176 values, and `device`: a login that skipped the challenge on a remembered device.
AMR_VALUES = ["pwd", "mfa", "otp", "recovery", "hwk", "swk", "device"]


class OpenIdConfiguration(BaseModel):
    """OpenID Connect Discovery 1.0 metadata, as far as it is true of this service: what a
    service that verifies our access tokens needs. This service is no OpenID Provider (yet):
    it has no authorization or token endpoint (so `response_types_supported` is empty) and
    issues no ID tokens; `id_token_signing_alg_values_supported` names the algorithm that
    signs every token this issuer makes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "issuer": "https://auth.example.com",
                    "jwks_uri": "https://auth.example.com/.well-known/jwks.json",
                    "response_types_supported": [],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                    "introspection_endpoint": "https://auth.example.com/oauth/introspect",
                    "introspection_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                    ],
                    "access_token_signing_alg_values_supported": ["ES256"],
                    "claims_supported": [*REQUIRED_CLAIMS],
                    "amr_values_supported": [*AMR_VALUES],
                    "service_documentation": "https://auth.example.com/docs",
                }
            ]
        }
    )

    issuer: str = Field(description="`MFA_ISSUER`: every access token's `iss`.")
    jwks_uri: str
    response_types_supported: list[str] = Field(
        description="None: there is no authorization endpoint."
    )
    subject_types_supported: list[Literal["public"]] = Field(
        description="`sub` is the user's id, the same for every client."
    )
    id_token_signing_alg_values_supported: list[str]
    introspection_endpoint: str
    introspection_endpoint_auth_methods_supported: list[str]
    access_token_signing_alg_values_supported: list[str]
    claims_supported: list[str]
    amr_values_supported: list[str] = Field(description="RFC 8176 values that `amr` may hold.")
    service_documentation: str = Field(description="Swagger UI.")

    @classmethod
    def of(cls, settings: Settings) -> OpenIdConfiguration:
        algorithms = [settings.jwt_algorithm]
        return cls(
            issuer=settings.issuer,
            jwks_uri=settings.jwks_uri,
            response_types_supported=[],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=algorithms,
            introspection_endpoint=f"{settings.issuer}/oauth/introspect",
            introspection_endpoint_auth_methods_supported=[
                "client_secret_basic",
                "client_secret_post",
            ],
            access_token_signing_alg_values_supported=algorithms,
            claims_supported=REQUIRED_CLAIMS,
            amr_values_supported=AMR_VALUES,
            service_documentation=f"{settings.issuer}/docs",
        )
