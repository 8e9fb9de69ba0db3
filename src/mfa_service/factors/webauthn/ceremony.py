"""The WebAuthn ceremonies on py_webauthn: options out, responses checked (origin, RP ID hash,
challenge, signature, flags). No storage here; `service` decides what a result means."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from mfa_service.config import Settings
from mfa_service.factors.webauthn.models import WebAuthnCredential
from mfa_service.factors.webauthn.schemas import (
    AuthenticationCredential,
    CreationOptions,
    RegistrationCredential,
    RequestOptions,
)

# ES256 (every authenticator), EdDSA, RS256 (Windows Hello): py_webauthn verifies all three.
ALGORITHMS = [-7, -8, -257]


def _descriptors(credentials: Sequence[WebAuthnCredential]) -> list[PublicKeyCredentialDescriptor]:
    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=c.credential_id,
            transports=[AuthenticatorTransport(t) for t in transports(c) if t in known] or None,
        )
        for c in credentials
    ]


def transports(credential: WebAuthnCredential) -> list[str]:
    return [t for t in credential.transports.split(",") if t]


def creation_options(
    settings: Settings,
    user_id: uuid.UUID,
    email: str,
    challenge: bytes,
    existing: Sequence[WebAuthnCredential],
    passkey: bool,
) -> CreationOptions:
    """Attestation `none`; the user's credentials excluded (no second registration of one
    authenticator); a passkey must be discoverable and verify the user."""
    if passkey:
        selection = AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
    else:
        selection = AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.DISCOURAGED,
        )
    options = generate_registration_options(
        rp_id=settings.webauthn_rp_id or "",
        rp_name=settings.webauthn_rp_name or "",
        user_name=email,
        user_id=user_id.bytes,  # the user handle: our random id, never the email
        challenge=challenge,
        timeout=settings.challenge_ttl * 1000,
        authenticator_selection=selection,
        exclude_credentials=_descriptors(existing),
        supported_pub_key_algs=ALGORITHMS,  # type: ignore[arg-type]
    )
    return CreationOptions.model_validate(json.loads(options_to_json(options)))


def request_options(
    settings: Settings,
    challenge: bytes,
    allowed: Sequence[WebAuthnCredential],
    user_verification: bool,
) -> RequestOptions:
    """For a second factor: the user's credentials, no PIN prompt asked for (the password was
    the first factor). For a passkey: none listed (the authenticator offers its own), user
    verification required."""
    options = generate_authentication_options(
        rp_id=settings.webauthn_rp_id or "",
        challenge=challenge,
        timeout=settings.challenge_ttl * 1000,
        allow_credentials=_descriptors(allowed),
        user_verification=UserVerificationRequirement.REQUIRED
        if user_verification
        else UserVerificationRequirement.DISCOURAGED,
    )
    return RequestOptions.model_validate(json.loads(options_to_json(options)))


def verify_registration(
    settings: Settings, credential: RegistrationCredential, challenge: bytes, passkey: bool
) -> VerifiedRegistration | None:
    """The attested credential, or None for any fault (origin, RP, challenge, format)."""
    try:
        return verify_registration_response(
            credential=credential.wire(),
            expected_challenge=challenge,
            expected_rp_id=settings.webauthn_rp_id or "",
            expected_origin=settings.webauthn_origins,
            require_user_verification=passkey,
            supported_pub_key_algs=ALGORITHMS,  # type: ignore[arg-type]
        )
    except (InvalidRegistrationResponse, InvalidJSONStructure, ValueError, KeyError, TypeError):
        return None


def verify_assertion(
    settings: Settings,
    credential: AuthenticationCredential,
    challenge: bytes,
    public_key: bytes,
    user_verification: bool,
) -> tuple[int, bool] | None:
    """(the authenticator's sign count, backed up) of a valid assertion, else None.

    The counter is judged by the caller, after the signature: py_webauthn checks it before,
    and a forged assertion must not be able to mark a credential as cloned.
    """
    try:
        verified = verify_authentication_response(
            credential=credential.wire(),
            expected_challenge=challenge,
            expected_rp_id=settings.webauthn_rp_id or "",
            expected_origin=settings.webauthn_origins,
            credential_public_key=public_key,
            credential_current_sign_count=0,  # never refused here: see above
            require_user_verification=user_verification,
        )
    except (InvalidAuthenticationResponse, InvalidJSONStructure, ValueError, KeyError, TypeError):
        # InvalidJSONStructure: e.g. an authenticatorAttachment the spec does not define.
        return None
    return verified.new_sign_count, verified.credential_backed_up


def user_handle(user_id: uuid.UUID) -> str:
    """The user handle our creation options give (base64url of the user id)."""
    return bytes_to_base64url(user_id.bytes)


def credential_id(credential: AuthenticationCredential) -> bytes | None:
    """The raw id an assertion names (it must match its `id`)."""
    try:
        raw = base64url_to_bytes(credential.raw_id)
    except ValueError:
        return None
    return raw if raw and bytes_to_base64url(raw) == credential.id else None
