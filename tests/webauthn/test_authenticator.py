"""The software authenticator's output, checked against py_webauthn's own verifiers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from webauthn.authentication.generate_authentication_options import (
    generate_authentication_options,
)
from webauthn.authentication.verify_authentication_response import (
    VerifiedAuthentication,
    verify_authentication_response,
)
from webauthn.helpers import options_to_json, parse_attestation_object, parse_cbor
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.generate_registration_options import generate_registration_options
from webauthn.registration.verify_registration_response import (
    VerifiedRegistration,
    verify_registration_response,
)

from tests.webauthn.authenticator import (
    FLAG_AT,
    FLAG_BE,
    FLAG_BS,
    FLAG_UP,
    FLAG_UV,
    InvalidStateError,
    NotAllowedError,
    SoftAuthenticator,
    SoftCredential,
    b64url_decode,
    decode_client_data,
    tamper_signature,
)

RP_ID = "example.test"
ORIGIN = "https://example.test"
USER_ID = b"user-handle-0001"


def registration_options(
    *,
    resident_key: ResidentKeyRequirement = ResidentKeyRequirement.DISCOURAGED,
    exclude: list[SoftCredential] | None = None,
) -> dict[str, Any]:
    options = generate_registration_options(
        rp_id=RP_ID,
        rp_name="Example",
        user_name="alice@example.test",
        user_id=USER_ID,
        user_display_name="Alice",
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=resident_key,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=c.credential_id) for c in exclude or []
        ],
    )
    parsed: dict[str, Any] = json.loads(options_to_json(options))
    return parsed


def authentication_options(allow: list[SoftCredential] | None = None) -> dict[str, Any]:
    options = generate_authentication_options(
        rp_id=RP_ID,
        allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in allow or []],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    parsed: dict[str, Any] = json.loads(options_to_json(options))
    return parsed


def verify_registration(
    options: dict[str, Any], response: dict[str, Any], *, require_uv: bool = False
) -> VerifiedRegistration:
    return verify_registration_response(
        credential=response,
        expected_challenge=b64url_decode(options["challenge"]),
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=require_uv,
    )


def verify_authentication(
    options: dict[str, Any],
    response: dict[str, Any],
    credential: SoftCredential,
    *,
    current_sign_count: int,
    require_uv: bool = False,
) -> VerifiedAuthentication:
    return verify_authentication_response(
        credential=response,
        expected_challenge=b64url_decode(options["challenge"]),
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=credential.public_key_cose,
        credential_current_sign_count=current_sign_count,
        require_user_verification=require_uv,
    )


def register(authenticator: SoftAuthenticator, **kwargs: Any) -> SoftCredential:
    options = registration_options(**kwargs)
    verify_registration(options, authenticator.create(options))
    return authenticator.credentials[-1]


def flags_of(response: dict[str, Any]) -> int:
    return b64url_decode(response["response"]["authenticatorData"])[32]


def test_registration_verifies_with_user_verification() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    options = registration_options()
    response = authenticator.create(options)

    verified = verify_registration(options, response, require_uv=True)

    credential = authenticator.credentials[0]
    assert verified.credential_id == credential.credential_id
    assert verified.credential_public_key == credential.public_key_cose
    assert verified.sign_count == 0
    assert verified.fmt == "none"
    assert verified.user_verified is True
    assert verified.credential_backed_up is False
    assert verified.aaguid == "00000000-0000-0000-0000-000000000000"
    assert set(response) == {
        "id",
        "rawId",
        "type",
        "response",
        "authenticatorAttachment",
        "clientExtensionResults",
    }
    assert set(response["response"]) == {"clientDataJSON", "attestationObject", "transports"}
    assert response["type"] == "public-key"
    assert response["authenticatorAttachment"] == "cross-platform"
    assert response["response"]["transports"] == ["usb"]
    assert response["clientExtensionResults"] == {}
    for value in (response["id"], response["rawId"], *response["response"].values()):
        assert not isinstance(value, str) or "=" not in value  # base64url without padding
    assert decode_client_data(response) == {
        "type": "webauthn.create",
        "challenge": options["challenge"],
        "origin": ORIGIN,
        "crossOrigin": False,
    }


def test_registration_without_user_verification_fails_when_required() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN, uv=False)
    options = registration_options()
    response = authenticator.create(options)

    assert verify_registration(options, response).user_verified is False
    with pytest.raises(InvalidRegistrationResponse):
        verify_registration(options, response, require_uv=True)


def test_registration_with_wrong_origin_or_rp_id_fails() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    options = registration_options()
    with pytest.raises(InvalidRegistrationResponse):
        verify_registration(options, authenticator.create(options, origin="https://evil.test"))
    with pytest.raises(InvalidRegistrationResponse):
        verify_registration(options, authenticator.create(options, rp_id="evil.test"))


def test_authentication_verifies_and_counts() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = register(authenticator)

    options = authentication_options([credential])
    response = authenticator.get(options)
    verified = verify_authentication(options, response, credential, current_sign_count=0)

    assert verified.credential_id == credential.credential_id
    assert verified.new_sign_count == 1
    assert verified.user_verified is True
    assert verified.credential_backed_up is False
    assert "userHandle" not in response["response"]
    assert set(response["response"]) == {"clientDataJSON", "authenticatorData", "signature"}
    assert decode_client_data(response)["type"] == "webauthn.get"
    assert flags_of(response) == FLAG_UP | FLAG_UV

    options = authentication_options([credential])
    second = verify_authentication(
        options, authenticator.get(options), credential, current_sign_count=1, require_uv=True
    )
    assert second.new_sign_count == 2


def test_tampered_signature_fails() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = register(authenticator)
    options = authentication_options([credential])
    response = authenticator.get(options)

    tampered = tamper_signature(response)

    assert tampered["response"]["signature"] != response["response"]["signature"]
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication(options, tampered, credential, current_sign_count=0)
    verify_authentication(options, response, credential, current_sign_count=0)  # original intact


def test_wrong_origin_fails() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = register(authenticator)
    options = authentication_options([credential])
    response = authenticator.get(options, origin="https://evil.test")
    with pytest.raises(InvalidAuthenticationResponse, match="origin"):
        verify_authentication(options, response, credential, current_sign_count=0)


def test_wrong_rp_id_fails() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = register(authenticator)
    options = authentication_options([credential])
    response = authenticator.get(options, rp_id="evil.test")
    with pytest.raises(InvalidAuthenticationResponse, match="RP ID hash"):
        verify_authentication(options, response, credential, current_sign_count=0)


def test_another_challenge_fails() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = register(authenticator)
    options = authentication_options([credential])
    other = authentication_options([credential])
    response = authenticator.get(options, challenge=other["challenge"])
    with pytest.raises(InvalidAuthenticationResponse, match="challenge"):
        verify_authentication(options, response, credential, current_sign_count=0)


def test_missing_user_verification_fails_when_required() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = register(authenticator)
    options = authentication_options([credential])
    response = authenticator.get(options, uv=False)
    assert flags_of(response) == FLAG_UP
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication(options, response, credential, current_sign_count=0, require_uv=True)


def test_counter_rollback_fails() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN, counter_step=5)
    credential = register(authenticator)

    options = authentication_options([credential])
    assert (
        verify_authentication(
            options, authenticator.get(options), credential, current_sign_count=0
        ).new_sign_count
        == 5
    )

    options = authentication_options([credential])
    rolled_back = authenticator.get(options, sign_count=3)
    with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
        verify_authentication(options, rolled_back, credential, current_sign_count=5)
    assert credential.sign_count == 5  # a forced count leaves the stored counter alone

    options = authentication_options([credential])
    replayed_count = authenticator.get(options, sign_count=5)
    with pytest.raises(InvalidAuthenticationResponse, match="sign count"):
        verify_authentication(options, replayed_count, credential, current_sign_count=5)


def test_backed_up_credential() -> None:
    authenticator = SoftAuthenticator(
        origin=ORIGIN,
        backup_eligible=True,
        backed_up=True,
        attachment="platform",
        transports=["internal", "hybrid"],
    )
    options = registration_options()
    response = authenticator.create(options)
    verified = verify_registration(options, response)
    assert verified.credential_backed_up is True
    assert verified.credential_device_type == "multi_device"
    assert response["authenticatorAttachment"] == "platform"
    assert response["response"]["transports"] == ["internal", "hybrid"]

    credential = authenticator.credentials[0]
    options = authentication_options([credential])
    response = authenticator.get(options)
    assert flags_of(response) == FLAG_UP | FLAG_UV | FLAG_BE | FLAG_BS
    assert (
        verify_authentication(
            options, response, credential, current_sign_count=0
        ).credential_backed_up
        is True
    )


def test_backup_eligible_not_yet_backed_up() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN, backup_eligible=True)
    credential = register(authenticator)
    options = authentication_options([credential])
    verified = verify_authentication(
        options, authenticator.get(options), credential, current_sign_count=0
    )
    assert verified.credential_device_type == "multi_device"
    assert verified.credential_backed_up is False

    credential.backed_up = True  # the provider has since synced it
    options = authentication_options([credential])
    assert (
        verify_authentication(
            options, authenticator.get(options), credential, current_sign_count=1
        ).credential_backed_up
        is True
    )


def test_counter_step_zero_keeps_sign_count_zero() -> None:
    authenticator = SoftAuthenticator(
        origin=ORIGIN, counter_step=0, backup_eligible=True, backed_up=True
    )
    credential = register(authenticator)
    for _ in range(3):
        options = authentication_options([credential])
        verified = verify_authentication(
            options, authenticator.get(options), credential, current_sign_count=0
        )
        assert verified.new_sign_count == 0
    assert credential.sign_count == 0


def test_discoverable_get_returns_user_handle() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    non_discoverable = register(authenticator)
    discoverable = register(authenticator, resident_key=ResidentKeyRequirement.REQUIRED)
    assert non_discoverable.discoverable is False
    assert discoverable.discoverable is True
    assert discoverable.user_handle == USER_ID

    options = authentication_options()
    assert options["allowCredentials"] == []
    response = authenticator.get(options)

    assert response["id"] == discoverable.id_b64
    assert b64url_decode(response["response"]["userHandle"]) == USER_ID
    verified = verify_authentication(options, response, discoverable, current_sign_count=0)
    assert verified.credential_id == discoverable.credential_id


def test_get_without_a_matching_credential_raises() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    with pytest.raises(NotAllowedError):
        authenticator.get(authentication_options())  # nothing discoverable held

    other = SoftAuthenticator(origin=ORIGIN)
    foreign = register(other)
    register(authenticator)  # not discoverable
    with pytest.raises(NotAllowedError):
        authenticator.get(authentication_options([foreign]))
    with pytest.raises(NotAllowedError):
        authenticator.get(authentication_options())


def test_get_with_an_explicit_credential_ignores_allow_credentials() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    first = register(authenticator)
    second = register(authenticator)
    options = authentication_options([first])
    response = authenticator.get(options, credential=second)
    assert response["id"] == second.id_b64
    verify_authentication(options, response, second, current_sign_count=0)


def test_exclude_credentials_makes_create_raise() -> None:
    authenticator = SoftAuthenticator(origin=ORIGIN)
    credential = register(authenticator)

    with pytest.raises(InvalidStateError):
        authenticator.create(registration_options(exclude=[credential]))
    assert len(authenticator.credentials) == 1

    foreign = register(SoftAuthenticator(origin=ORIGIN))
    register(authenticator, exclude=[foreign])  # another authenticator's credential: fine
    assert len(authenticator.credentials) == 2


def test_attested_data_layout() -> None:
    aaguid = bytes(range(16))
    authenticator = SoftAuthenticator(origin=ORIGIN, aaguid=aaguid)
    options = registration_options()
    response = authenticator.create(options)
    verified = verify_registration(options, response)
    assert verified.aaguid == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    attestation = parse_attestation_object(b64url_decode(response["response"]["attestationObject"]))
    assert attestation.fmt == "none"
    assert attestation.auth_data.flags.up is True
    assert attestation.auth_data.flags.uv is True
    assert attestation.auth_data.flags.at is True
    assert attestation.auth_data.attested_credential_data is not None
    assert len(attestation.auth_data.attested_credential_data.credential_id) == 32
    assert attestation.auth_data.rp_id_hash == hashlib.sha256(RP_ID.encode()).digest()
    raw = parse_cbor(b64url_decode(response["response"]["attestationObject"]))
    assert raw["attStmt"] == {}
    assert raw["authData"][32] == FLAG_UP | FLAG_UV | FLAG_AT
