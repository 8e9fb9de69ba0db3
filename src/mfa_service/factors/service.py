"""Managing a user's second factors: state, enrolment, removal, new backup codes, step-up.

A user has MFA on while they have a second factor (confirmed TOTP or a WebAuthn credential).
The first factor turns it on with backup codes; removing the last one turns it off and voids
them. Every factor change revokes the user's other sessions and pending challenges.
"""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import service as accounts
from mfa_service.accounts.models import User
from mfa_service.audit import service as audit
from mfa_service.enrollment import service as enrollment
from mfa_service.enrollment.store import EnrollmentClaims
from mfa_service.errors import (
    InsufficientUserAuthentication,
    InvalidCredentials,
    MfaNotEnabled,
    NoWebAuthnCredential,
    TotpNotEnabled,
    WebAuthnCredentialNotFound,
)
from mfa_service.factors import verification
from mfa_service.factors.backup_codes import repository as backup_repository
from mfa_service.factors.backup_codes import service as backup_codes
from mfa_service.factors.base import Context
from mfa_service.factors.schemas import (
    BackupCodes,
    BackupCodesState,
    DisableRequest,
    FactorProof,
    MfaState,
    TotpConfirmed,
    TotpEnrolled,
    TotpSetup,
    TotpState,
    WebAuthnState,
)
from mfa_service.factors.totp import otp
from mfa_service.factors.totp import repository as totp_repository
from mfa_service.factors.totp import service as totp
from mfa_service.factors.webauthn import repository as webauthn_repository
from mfa_service.factors.webauthn import service as webauthn
from mfa_service.factors.webauthn.schemas import (
    CreationOptions,
    CredentialList,
    CredentialOut,
    Registered,
    RegisteredEnrolled,
    RegistrationRequest,
    RequestOptions,
)
from mfa_service.net import Client
from mfa_service.services import Services
from mfa_service.sessions import service as sessions
from mfa_service.sessions.schemas import TokenResponse
from mfa_service.tokens.access import AccessClaims


async def state(db: AsyncSession, claims: AccessClaims) -> MfaState:
    user = await accounts.current_user(db, claims)
    enabled, pending = await totp.status(db, user.id)
    remaining = await backup_repository.count_unused(db, user.id) if user.mfa_enabled else 0
    return MfaState(
        mfa_enabled=user.mfa_enabled,
        totp=TotpState(enabled=enabled, pending=pending),
        backup_codes=BackupCodesState(remaining=remaining),
        webauthn=WebAuthnState(credentials=await webauthn_repository.count(db, user.id)),
    )


def require_recent_authentication(svc: Services, claims: AccessClaims, user: User) -> None:
    """Enrolling a factor needs a recent authentication event, with a second factor for a
    user who has one (SPEC §4): a stolen, older access token cannot bind an attacker's
    authenticator. A login on a remembered device (amr `device`) proved no factor now."""
    if isinstance(claims, EnrollmentClaims):
        return  # the login just proved the password; the token's short life is its recency
    max_age = svc.settings.reauth_max_age
    recent = svc.clock.time() - claims.auth_time <= max_age
    factor_now = "mfa" in claims.amr and "device" not in claims.amr
    if not recent or (user.mfa_enabled and not factor_now):
        raise InsufficientUserAuthentication(max_age)


async def setup_totp(db: AsyncSession, svc: Services, claims: AccessClaims) -> TotpSetup:
    user = await accounts.current_user(db, claims)
    require_recent_authentication(svc, claims, user)
    uri = await totp.setup(db, svc, user.id, user.email)
    secret = uri.split("secret=", 1)[1].split("&", 1)[0]
    return TotpSetup(secret=secret, otpauth_uri=uri, qr_svg=otp.qr_svg_data_uri(uri))


async def pending_uri(db: AsyncSession, svc: Services, claims: AccessClaims) -> str:
    user = await accounts.current_user(db, claims)
    return await totp.pending_uri(db, svc, user.id, user.email)


async def confirm_totp(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, code: str
) -> TotpConfirmed | TotpEnrolled:
    user = await accounts.current_user(db, claims)
    require_recent_authentication(svc, claims, user)
    await totp.confirm(db, svc, user.id, code)
    if isinstance(claims, EnrollmentClaims):
        await enrollment.claim(db, claims)
    codes = await _factor_added(db, svc, claims, user, "mfa_enabled")
    audit.record(db, svc, client, "totp.enabled", user.id)
    if isinstance(claims, EnrollmentClaims):
        tokens = await enrollment.finish(db, svc, client, claims, user, "otp")
        return TotpEnrolled(backup_codes=codes, **tokens.model_dump())
    return TotpConfirmed(backup_codes=codes)


async def _factor_added(
    db: AsyncSession, svc: Services, claims: AccessClaims, user: User, reason: str
) -> list[str]:
    """MFA on with 10 backup codes if this is the first factor (returned once), else [];
    the user's other sessions and pending challenges end."""
    codes: list[str] = []
    if not user.mfa_enabled:
        user.mfa_enabled = True
        db.add(user)
        codes = await backup_codes.issue(db, svc, user.id)
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=claims.sid, reason=reason)
    return codes


async def _factor_removed(
    db: AsyncSession, svc: Services, claims: AccessClaims, user: User, reason: str
) -> dict[str, str]:
    """With no factor left, MFA off and the backup codes void; other sessions end. The
    audit detail to add: `mfa: off` when that was the last factor (its notice says so)."""
    left = await verification.TOTP.enrolled(db, user.id) or await webauthn_repository.count(
        db, user.id
    )
    if not left:
        await backup_repository.delete_for_user(db, user.id)
        user.mfa_enabled = False
        db.add(user)
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=claims.sid, reason=reason)
    return {} if left else {"mfa": "off"}


def _in_session(user: User, claims: AccessClaims) -> Context:
    """A proof made within the caller's session: WebAuthn options from /mfa/step-up/options."""
    return Context(user.id, "step_up", str(claims.sid))


async def _mfa_user(db: AsyncSession, claims: AccessClaims) -> User:
    user = await accounts.current_user(db, claims)
    if not user.mfa_enabled:
        raise MfaNotEnabled()
    return user


async def disable_totp(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, body: DisableRequest
) -> None:
    user = await _mfa_user(db, claims)
    if not await verification.TOTP.enrolled(db, user.id):
        raise TotpNotEnabled()
    if not await accounts.verify_password(db, svc, client, user.email, user, body.password):
        raise InvalidCredentials("The password is incorrect.")
    await verification.prove(db, svc, client, _in_session(user, claims), body)
    await totp_repository.delete_for_user(db, user.id)
    off = await _factor_removed(db, svc, claims, user, "mfa_disabled")
    audit.record(db, svc, client, "totp.disabled", user.id, **off)


async def regenerate_backup_codes(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, proof: FactorProof
) -> BackupCodes:
    user = await _mfa_user(db, claims)
    await verification.prove(db, svc, client, _in_session(user, claims), proof)
    fresh = await backup_codes.issue(db, svc, user.id)
    audit.record(db, svc, client, "backup_codes.regenerated", user.id)
    return BackupCodes(backup_codes=fresh)


async def step_up(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, proof: FactorProof
) -> TokenResponse:
    user = await _mfa_user(db, claims)
    ctx = _in_session(user, claims)
    outcome = await verification.prove(db, svc, client, ctx, proof, audit_as="step_up")
    return await sessions.new_authentication_event(db, svc, claims, ["mfa", outcome.amr])


async def step_up_options(db: AsyncSession, svc: Services, claims: AccessClaims) -> RequestOptions:
    """Request options for the user's security keys, bound to this session (a newer call
    replaces an older one's challenge)."""
    user = await accounts.current_user(db, claims)
    options = await verification.WEBAUTHN.begin(db, svc, _in_session(user, claims))
    if not isinstance(options, RequestOptions):
        raise NoWebAuthnCredential()
    return options


# --- WebAuthn credentials -----------------------------------------------------------------


async def webauthn_registration_options(
    db: AsyncSession, svc: Services, claims: AccessClaims, passkey: bool
) -> CreationOptions:
    user = await accounts.current_user(db, claims)
    require_recent_authentication(svc, claims, user)
    return await webauthn.creation_options(db, svc, user.id, user.email, str(claims.sid), passkey)


async def register_webauthn(
    db: AsyncSession,
    svc: Services,
    client: Client,
    claims: AccessClaims,
    body: RegistrationRequest,
) -> Registered | RegisteredEnrolled:
    user = await accounts.current_user(db, claims)
    require_recent_authentication(svc, claims, user)
    credential = await webauthn.register(db, svc, user.id, str(claims.sid), body)
    if isinstance(claims, EnrollmentClaims):
        await enrollment.claim(db, claims)
    codes = await _factor_added(db, svc, claims, user, "webauthn_registered")
    audit.record(db, svc, client, "webauthn.registered", user.id, credential=str(credential.id))
    out = webauthn.to_out(credential)
    if isinstance(claims, EnrollmentClaims):
        amr = "hwk" if credential.device_bound else "swk"
        tokens = await enrollment.finish(db, svc, client, claims, user, amr)
        return RegisteredEnrolled(credential=out, backup_codes=codes, **tokens.model_dump())
    return Registered(credential=out, backup_codes=codes)


async def webauthn_credentials(db: AsyncSession, claims: AccessClaims) -> CredentialList:
    user = await accounts.current_user(db, claims)
    items = await webauthn_repository.for_user(db, user.id)
    return CredentialList(items=[webauthn.to_out(c) for c in items])


async def rename_webauthn(
    db: AsyncSession, claims: AccessClaims, id_: uuid.UUID, name: str
) -> CredentialOut:
    user = await accounts.current_user(db, claims)
    credential = await webauthn_repository.owned(db, user.id, id_)
    if credential is None:
        raise WebAuthnCredentialNotFound()
    credential.name = name
    db.add(credential)
    return webauthn.to_out(credential)


async def remove_webauthn(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, id_: uuid.UUID
) -> None:
    user = await accounts.current_user(db, claims)
    require_recent_authentication(svc, claims, user)
    if not await webauthn_repository.remove(db, user.id, id_):
        raise WebAuthnCredentialNotFound()
    off = await _factor_removed(db, svc, claims, user, "webauthn_removed")
    audit.record(db, svc, client, "webauthn.removed", user.id, credential=str(id_), **off)
