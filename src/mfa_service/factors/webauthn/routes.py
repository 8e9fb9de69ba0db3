from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.enrollment.dependencies import EnrollingClaims
from mfa_service.errors import (
    AccountDisabled,
    EmailNotVerified,
    InsufficientUserAuthentication,
    InvalidToken,
    InvalidWebAuthnResponse,
    NoWebAuthnCredential,
    PasskeyRefused,
    RateLimited,
    RequestValidationFailed,
    ServiceUnavailable,
    WebAuthnCredentialExists,
    WebAuthnCredentialNotFound,
    WebAuthnNotPending,
    responses,
)
from mfa_service.factors import service
from mfa_service.factors.webauthn import service as webauthn
from mfa_service.factors.webauthn.schemas import (
    CreationOptions,
    CredentialList,
    CredentialOut,
    PasskeyLogin,
    Registered,
    RegisteredEnrolled,
    RegistrationOptionsRequest,
    RegistrationRequest,
    Rename,
    RequestOptions,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions.dependencies import CurrentClaims
from mfa_service.sessions.schemas import TokenResponse

router = APIRouter()


@router.post(
    "/mfa/webauthn/registrations/options",
    response_model=CreationOptions,
    tags=["webauthn"],
    operation_id="webAuthnRegistrationOptions",
    summary="Options to register a security key or passkey",
    responses=responses(
        InvalidToken, InsufficientUserAuthentication, RequestValidationFailed, ServiceUnavailable
    ),
)
async def registration_options(
    claims: EnrollingClaims,
    db: SessionDep,
    svc: ServicesDep,
    body: RegistrationOptionsRequest | None = None,
) -> CreationOptions:
    """Pass them to `navigator.credentials.create({publicKey:
    PublicKeyCredential.parseCreationOptionsFromJSON(options)})`, then send
    `credential.toJSON()` to `POST /mfa/webauthn/registrations` within 300 s. Single use;
    bound to this session. Needs a recent authentication (as TOTP setup does). Takes an
    enrollment token (`MFA_REQUIRE_MFA`) instead of an access token too."""
    passkey = body.passkey if body else False
    return await service.webauthn_registration_options(db, svc, claims, passkey)


@router.post(
    "/mfa/webauthn/registrations",
    response_model=Registered | RegisteredEnrolled,
    status_code=status.HTTP_201_CREATED,
    tags=["webauthn"],
    operation_id="registerWebAuthnCredential",
    summary="Register a security key or passkey",
    responses=responses(
        WebAuthnNotPending,
        InvalidToken,
        InsufficientUserAuthentication,
        InvalidWebAuthnResponse,
        WebAuthnCredentialExists,
        RequestValidationFailed,
        ServiceUnavailable,
    ),
)
async def register(
    body: RegistrationRequest,
    claims: EnrollingClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
) -> Registered | RegisteredEnrolled:
    """`credential` is the `credential.toJSON()` of `navigator.credentials.create()` called
    with the options of `POST /mfa/webauthn/registrations/options` (single use, 300 s, bound
    to this session). The first second factor turns MFA on and returns 10 backup codes, shown
    this once. Every registration ends the user's other sessions and pending challenges.
    Needs a recent authentication.

    With an enrollment token (`MFA_REQUIRE_MFA`) instead of an access token, the answer has
    the `TokenResponse` fields too: the login's session, amr `["pwd", "mfa", "hwk" or
    "swk"]`."""
    return await service.register_webauthn(db, svc, client, claims, body)


@router.get(
    "/mfa/webauthn/credentials",
    response_model=CredentialList,
    tags=["webauthn"],
    operation_id="listWebAuthnCredentials",
    summary="The caller's security keys and passkeys",
    responses=responses(InvalidToken, ServiceUnavailable),
)
@statements_autocommit
async def credentials(claims: CurrentClaims, db: SessionDep) -> CredentialList:
    """Every registered credential with its name, kind (`passkey`, `device_bound`,
    `backed_up`) and when it was registered and last used."""
    return await service.webauthn_credentials(db, claims)


@router.patch(
    "/mfa/webauthn/credentials/{credential_id}",
    response_model=CredentialOut,
    tags=["webauthn"],
    operation_id="renameWebAuthnCredential",
    summary="Rename a security key or passkey",
    responses=responses(
        InvalidToken, WebAuthnCredentialNotFound, RequestValidationFailed, ServiceUnavailable
    ),
)
async def rename(
    credential_id: uuid.UUID, body: Rename, claims: CurrentClaims, db: SessionDep
) -> CredentialOut:
    """Only the name changes (1–64 characters). Another user's credential id is 404."""
    return await service.rename_webauthn(db, claims, credential_id, body.name)


@router.delete(
    "/mfa/webauthn/credentials/{credential_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["webauthn"],
    operation_id="removeWebAuthnCredential",
    summary="Remove a security key or passkey",
    responses=responses(
        InvalidToken,
        InsufficientUserAuthentication,
        WebAuthnCredentialNotFound,
        RequestValidationFailed,
        ServiceUnavailable,
    ),
)
async def remove(
    credential_id: uuid.UUID,
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
) -> None:
    """Needs a recent authentication. Removing the last second factor turns MFA off and voids
    the backup codes; any removal ends the user's other sessions."""
    await service.remove_webauthn(db, svc, client, claims, credential_id)


@router.post(
    "/mfa/step-up/options",
    response_model=RequestOptions,
    tags=["mfa"],
    operation_id="stepUpOptions",
    summary="Options to step up with a security key",
    responses=responses(InvalidToken, NoWebAuthnCredential, ServiceUnavailable),
)
async def step_up_options(
    claims: CurrentClaims, db: SessionDep, svc: ServicesDep
) -> RequestOptions:
    """Request options for the caller's security keys, bound to this session: answer with
    `POST /mfa/step-up {"webauthn": credential.toJSON()}` within 300 s (also accepted by
    the password change and TOTP removal as their second factor)."""
    return await service.step_up_options(db, svc, claims)


@router.post(
    "/auth/passkey/options",
    response_model=RequestOptions,
    tags=["webauthn"],
    operation_id="passkeyLoginOptions",
    summary="Options for a passwordless login",
    responses=responses(RateLimited, ServiceUnavailable),
)
async def passkey_options(svc: ServicesDep, client: ClientDep) -> RequestOptions:
    """No user yet: `allowCredentials` is empty, the authenticator offers its passkeys and
    must verify the user (PIN or biometric). Single use, 300 s; counted per client IP."""
    return await webauthn.passkey_options(svc, client)


@router.post(
    "/auth/passkey",
    response_model=TokenResponse,
    tags=["webauthn"],
    operation_id="passkeyLogin",
    summary="Log in with a passkey",
    responses=responses(
        PasskeyRefused,
        AccountDisabled,
        EmailNotVerified,
        RequestValidationFailed,
        RateLimited,
        ServiceUnavailable,
    ),
)
async def passkey_login(
    body: PasskeyLogin, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> TokenResponse:
    """`credential` is the `credential.toJSON()` of `navigator.credentials.get()` called with
    the options of `POST /auth/passkey/options`. Tokens with amr `["hwk" or "swk", "mfa"]`.
    Every failure answers the same 401; wrong assertions are counted per client IP."""
    return await webauthn.passkey_login(db, svc, client, body.credential)
