"""WebAuthn bodies: the W3C JSON forms (WebAuthn Level 3 §5.1.8–§5.1.10) as typed models, so
a generated client gets real types and a browser passes them to
`PublicKeyCredential.parseCreationOptionsFromJSON()` / sends `credential.toJSON()` unchanged.
Binary fields are base64url strings without padding."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from mfa_service.sessions.schemas import TOKEN_RESPONSE_EXAMPLE, TokenResponse

# base64url without padding. Generous bounds: a real attestation object is a few hundred bytes
# to a few kilobytes, a credential id at most 1023 bytes.
B64 = r"^[A-Za-z0-9_-]*$"
Id = Annotated[str, StringConstraints(max_length=1400, pattern=B64)]
Small = Annotated[str, StringConstraints(max_length=8192, pattern=B64)]
Large = Annotated[str, StringConstraints(max_length=32768, pattern=B64)]


class W3CModel(BaseModel):
    """camelCase on the wire; unknown members (future extensions) are ignored."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="ignore",
        # Sent means always there: a member with a default is present in every answer.
        json_schema_serialization_defaults_required=True,
    )

    # No return annotation on purpose: with one (even `Any`) pydantic documents what the
    # serializer returns instead of the model's fields, and the OpenAPI schema of every W3C
    # answer (creation and request options) was `{}`.
    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # Absent, not null: a browser's parse*FromJSON() throws on `hints: null` and the like.
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """As sent, an unset member is absent, never null: documented so."""
        schema = handler(core_schema)
        if handler.mode == "serialization":
            target = handler.resolve_ref_schema(schema)
            for name, member in target.get("properties", {}).items():
                branches = member.get("anyOf", [])
                if {"type": "null"} in branches:
                    rest = [b for b in member.pop("anyOf") if b != {"type": "null"}]
                    member.pop("default", None)
                    member.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
                    target["required"] = [n for n in target.get("required", []) if n != name]
            if target.get("required") == []:
                del target["required"]
        return schema

    def wire(self) -> dict[str, Any]:
        """Back to the W3C JSON form, for py_webauthn."""
        return self.model_dump(by_alias=True, exclude_none=True)


class CredentialDescriptor(W3CModel):
    type: Literal["public-key"] = "public-key"
    id: str
    transports: list[str] | None = None


class RelyingParty(W3CModel):
    id: str
    name: str


class UserEntity(W3CModel):
    id: str = Field(description="The user handle, base64url: random, not the email.")
    name: str
    display_name: str


class CredentialParameters(W3CModel):
    type: Literal["public-key"] = "public-key"
    alg: int = Field(description="A COSE algorithm identifier (-7 ES256, -8 EdDSA, -257 RS256).")


class AuthenticatorSelection(W3CModel):
    authenticator_attachment: str | None = None
    resident_key: str | None = None
    require_resident_key: bool | None = None
    user_verification: str | None = None


class CreationOptions(W3CModel):
    """PublicKeyCredentialCreationOptionsJSON: pass to `parseCreationOptionsFromJSON()`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rp": {"id": "example.com", "name": "mfa-service"},
                    "user": {
                        "id": "3q2-7wAAQACAAMAD",
                        "name": "alice@example.com",
                        "displayName": "alice@example.com",
                    },
                    "challenge": "Zk9xZ2V0c0t6b3h2c1dWQ2t5cWpYZw",
                    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                    "timeout": 300000,
                    "excludeCredentials": [],
                    "authenticatorSelection": {
                        "residentKey": "discouraged",
                        "requireResidentKey": False,
                        "userVerification": "discouraged",
                    },
                    "attestation": "none",
                }
            ]
        }
    )

    rp: RelyingParty
    user: UserEntity
    challenge: str
    pub_key_cred_params: list[CredentialParameters]
    timeout: int | None = None
    exclude_credentials: list[CredentialDescriptor] = []
    authenticator_selection: AuthenticatorSelection | None = None
    attestation: str = "none"
    hints: list[str] | None = None


REQUEST_OPTIONS_EXAMPLE: dict[str, Any] = {
    "challenge": "Zk9xZ2V0c0t6b3h2c1dWQ2t5cWpYZw",
    "timeout": 300000,
    "rpId": "example.com",
    "allowCredentials": [{"type": "public-key", "id": "AXkXa0P8qS7p0cA", "transports": ["usb"]}],
    "userVerification": "discouraged",
}


class RequestOptions(W3CModel):
    """PublicKeyCredentialRequestOptionsJSON: pass to `parseRequestOptionsFromJSON()`."""

    model_config = ConfigDict(json_schema_extra={"examples": [REQUEST_OPTIONS_EXAMPLE]})

    challenge: str
    timeout: int | None = None
    rp_id: str
    allow_credentials: list[CredentialDescriptor] = []
    user_verification: str = "preferred"
    hints: list[str] | None = None


class AttestationResponse(W3CModel):
    client_data_json: Small = Field(alias="clientDataJSON")
    attestation_object: Large
    transports: list[str] | None = Field(default=None, max_length=16)
    authenticator_data: Large | None = None
    public_key: Small | None = None
    public_key_algorithm: int | None = None


class PublicKeyCredential(W3CModel):
    """What every `credential.toJSON()` holds besides its `response`."""

    id: Id
    raw_id: Id
    type: Literal["public-key"]
    authenticator_attachment: str | None = None
    client_extension_results: dict[str, Any] = Field(default_factory=dict)


REGISTRATION_EXAMPLE: dict[str, Any] = {
    "id": "AXkXa0P8qS7p0cA",
    "rawId": "AXkXa0P8qS7p0cA",
    "type": "public-key",
    "response": {
        "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0",
        "attestationObject": "o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVjFSZYN5YgOjGh0NBcPZHZgW4",
        "transports": ["usb", "nfc"],
    },
    "authenticatorAttachment": "cross-platform",
    "clientExtensionResults": {},
}


class RegistrationCredential(PublicKeyCredential):
    """RegistrationResponseJSON: what `credential.toJSON()` gives after `create()`."""

    model_config = ConfigDict(json_schema_extra={"examples": [REGISTRATION_EXAMPLE]})

    response: AttestationResponse


class AssertionResponse(W3CModel):
    client_data_json: Small = Field(alias="clientDataJSON")
    authenticator_data: Small
    signature: Small
    user_handle: Id | None = None


ASSERTION_EXAMPLE: dict[str, Any] = {
    "id": "AXkXa0P8qS7p0cA",
    "rawId": "AXkXa0P8qS7p0cA",
    "type": "public-key",
    "response": {
        "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0",
        "authenticatorData": "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAAAQ",
        "signature": "MEUCIQDxc2lnbmF0dXJl",
        "userHandle": None,
    },
    "authenticatorAttachment": "cross-platform",
    "clientExtensionResults": {},
}


# A passkey's assertion: it names its user (the user handle), as a discoverable credential does.
PASSKEY_EXAMPLE: dict[str, Any] = {
    **ASSERTION_EXAMPLE,
    "response": {**ASSERTION_EXAMPLE["response"], "userHandle": "3q2-7wAAQACAAMAD"},
    "authenticatorAttachment": "platform",
}


class AuthenticationCredential(PublicKeyCredential):
    """AuthenticationResponseJSON: what `credential.toJSON()` gives after `get()`."""

    model_config = ConfigDict(json_schema_extra={"examples": [ASSERTION_EXAMPLE]})

    response: AssertionResponse


# Ten codes, as every answer that issues backup codes shows them (also used by factors.schemas,
# which imports this module).
BACKUP_CODES_EXAMPLE: list[JsonValue] = [
    "7k3qz-9wm2x",
    "h4c8r-2vt6n",
    "q0d5m-8bx3k",
    "w2n7f-5pj9a",
    "t6y1e-3hs4c",
    "b9k2v-7rz0m",
    "f3x8q-1wn5d",
    "m5a0j-6ct2y",
    "r8e4s-9kb7h",
    "z1p6w-4dq3t",
]


# --- our own bodies --------------------------------------------------------------------------


class RegistrationOptionsRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"passkey": False}]})

    passkey: bool = Field(
        default=False,
        description="Ask for a discoverable credential with user verification (a passkey, "
        "for passwordless login); false: a security key as a second factor.",
    )


# Shown in lists; stored as text (PostgreSQL refuses U+0000): no control characters.
CredentialName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class RegistrationRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"credential": REGISTRATION_EXAMPLE, "name": "YubiKey 5C"}]}
    )

    credential: RegistrationCredential
    name: CredentialName = Field(description="Shown in the credential list.")


CREDENTIAL_EXAMPLE: dict[str, Any] = {
    "id": "0b8c6a2e-5d7f-4a35-9a3e-2f1c4d5e6f70",
    "name": "YubiKey 5C",
    "created_at": "2026-11-29T10:00:00Z",
    "last_used_at": "2026-11-30T08:12:40Z",  # null until first used
    "passkey": False,
    "device_bound": True,
    "backed_up": False,
    "transports": ["usb", "nfc"],
    "aaguid": "00000000-0000-0000-0000-000000000000",
}


class CredentialOut(BaseModel):
    """WebAuthnCredential."""

    model_config = ConfigDict(json_schema_extra={"examples": [CREDENTIAL_EXAMPLE]})

    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    passkey: bool = Field(description="Registered for passwordless login.")
    device_bound: bool = Field(description="Cannot leave its authenticator (amr `hwk`).")
    backed_up: bool = Field(description="Synced to a cloud account (amr `swk`).")
    transports: list[str]
    aaguid: str = Field(description="The authenticator model (all zeros: not disclosed).")


class Registered(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "credential": CREDENTIAL_EXAMPLE,
                    "backup_codes": BACKUP_CODES_EXAMPLE,
                },
                {"credential": CREDENTIAL_EXAMPLE, "backup_codes": []},
            ]
        }
    )

    credential: CredentialOut
    backup_codes: list[str] = Field(
        description="10 codes when this registration turned MFA on (shown once), else []."
    )


class RegisteredEnrolled(TokenResponse, Registered):
    """A registration with an enrollment token (MFA_REQUIRE_MFA): the login's tokens too."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True,
        json_schema_extra={
            "examples": [
                {
                    "credential": CREDENTIAL_EXAMPLE,
                    "backup_codes": BACKUP_CODES_EXAMPLE,
                    **TOKEN_RESPONSE_EXAMPLE,
                }
            ]
        },
    )


class CredentialList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [CREDENTIAL_EXAMPLE]}]})

    items: list[CredentialOut]


class Rename(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Backup YubiKey"}]})

    name: CredentialName


class PasskeyLogin(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"credential": PASSKEY_EXAMPLE}]})

    credential: AuthenticationCredential
