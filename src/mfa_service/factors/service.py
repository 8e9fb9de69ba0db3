"""Managing a user's second factors: state, enrolment, removal, new backup codes, step-up."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import service as accounts
from mfa_service.accounts.models import User
from mfa_service.audit import service as audit
from mfa_service.errors import InsufficientUserAuthentication, InvalidCredentials, MfaNotEnabled
from mfa_service.factors import verification
from mfa_service.factors.backup_codes import repository as backup_repository
from mfa_service.factors.backup_codes import service as backup_codes
from mfa_service.factors.schemas import (
    BackupCodes,
    BackupCodesState,
    DisableRequest,
    FactorProof,
    MfaState,
    TotpConfirmed,
    TotpSetup,
    TotpState,
)
from mfa_service.factors.totp import otp
from mfa_service.factors.totp import repository as totp_repository
from mfa_service.factors.totp import service as totp
from mfa_service.net import Client
from mfa_service.services import Services
from mfa_service.sessions import service as sessions
from mfa_service.sessions.schemas import TokenResponse
from mfa_service.tokens.access import AccessClaims


async def state(db: AsyncSession, claims: AccessClaims) -> MfaState:
    user = await accounts.current_user(db, claims)
    enabled, pending = await totp.status(db, user.id)
    remaining = await backup_repository.count_unused(db, user.id) if enabled else 0
    return MfaState(
        mfa_enabled=user.mfa_enabled,
        totp=TotpState(enabled=enabled, pending=pending),
        backup_codes=BackupCodesState(remaining=remaining),
    )


def require_recent_authentication(svc: Services, claims: AccessClaims, user: User) -> None:
    """Enrolling a factor needs a recent authentication event, with a second factor for a
    user who has one (SPEC §4): a stolen, older access token cannot bind an attacker's
    authenticator."""
    max_age = svc.settings.reauth_max_age
    recent = svc.clock.time() - claims.auth_time <= max_age
    if not recent or (user.mfa_enabled and "mfa" not in claims.amr):
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
) -> TotpConfirmed:
    user = await accounts.current_user(db, claims)
    require_recent_authentication(svc, claims, user)
    await totp.confirm(db, svc, user.id, code)
    user.mfa_enabled = True
    db.add(user)
    codes = await backup_codes.issue(db, svc, user.id)
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=claims.sid, reason="mfa_enabled")
    audit.record(db, svc, client, "totp.enabled", user.id)
    return TotpConfirmed(backup_codes=codes)


async def _mfa_user(db: AsyncSession, claims: AccessClaims) -> User:
    user = await accounts.current_user(db, claims)
    if not user.mfa_enabled:
        raise MfaNotEnabled()
    return user


async def disable_totp(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, body: DisableRequest
) -> None:
    user = await _mfa_user(db, claims)
    if not await accounts.verify_password(db, svc, client, user.email, user, body.password):
        raise InvalidCredentials("The password is incorrect.")
    await verification.prove(db, svc, client, user.id, body)
    await totp_repository.delete_for_user(db, user.id)
    await backup_repository.delete_for_user(db, user.id)
    user.mfa_enabled = False
    db.add(user)
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=claims.sid, reason="mfa_disabled")
    audit.record(db, svc, client, "totp.disabled", user.id)


async def regenerate_backup_codes(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, code: str
) -> BackupCodes:
    user = await _mfa_user(db, claims)
    await verification.prove(db, svc, client, user.id, FactorProof(code=code))
    fresh = await backup_codes.issue(db, svc, user.id)
    audit.record(db, svc, client, "backup_codes.regenerated", user.id)
    return BackupCodes(backup_codes=fresh)


async def step_up(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, proof: FactorProof
) -> TokenResponse:
    user = await _mfa_user(db, claims)
    factor = await verification.prove(db, svc, client, user.id, proof, audit_as="step_up")
    return await sessions.new_authentication_event(db, svc, claims, ["mfa", factor.amr])
