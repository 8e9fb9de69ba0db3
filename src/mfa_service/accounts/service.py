"""Accounts: register, check a password, change it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import repository
from mfa_service.accounts.models import User
from mfa_service.accounts.passwords import is_too_common
from mfa_service.audit import service as audit
from mfa_service.challenges import service as challenges
from mfa_service.challenges.schemas import ChallengeResponse
from mfa_service.clock import now
from mfa_service.db import end_transaction
from mfa_service.devices import service as devices
from mfa_service.devices.models import DeviceToken
from mfa_service.enrollment import service as enrollment
from mfa_service.enrollment.schemas import EnrollmentRequired
from mfa_service.errors import (
    AccountDisabled,
    EmailNotVerified,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    StepUpRequired,
    WeakPassword,
)
from mfa_service.factors import verification
from mfa_service.factors.base import Context
from mfa_service.factors.schemas import FactorProof
from mfa_service.net import Client
from mfa_service.recovery import repository as recovery_repository
from mfa_service.recovery import tokens as recovery_tokens
from mfa_service.services import Services
from mfa_service.sessions import service as sessions
from mfa_service.sessions.repository import session_user
from mfa_service.sessions.schemas import SignedIn, TokenResponse
from mfa_service.tokens.access import AccessClaims


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def register(
    db: AsyncSession, svc: Services, client: Client, email: str, password: str
) -> User:
    # Counted first, whatever the answer: registration is an oracle for which emails exist,
    # and each attempt costs a hash.
    await svc.login_limiter.count_registration(client.ip_bucket)
    email = normalise_email(email)
    if is_too_common(password, email):
        raise WeakPassword()
    if await repository.get_by_email(db, email) is not None:
        raise EmailTaken()
    await end_transaction(db)
    password_hash = await svc.hasher.hash(password)
    at = now(svc.clock)
    user = User(
        email=email,
        password_hash=password_hash,
        created_at=at,
        password_changed_at=at,
    )
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:  # two registrations raced for one email: the unique index decided
        raise EmailTaken() from None
    settings = svc.settings
    if settings.require_verified_email or settings.email_verify_url is not None:
        await recovery_tokens.send_verification(db, svc, user, quiet=True)
    return user


async def verify_password(
    db: AsyncSession,
    svc: Services,
    client: Client,
    email: str,
    user: User | None,
    password: str,
    device: DeviceToken | None = None,
) -> bool:
    """Check a password under the guessing limits (login, and re-entry for sensitive
    changes): the account's, the IP's and the pair's, or, from a recognised `device`, that
    device token's own. With no user (unknown email) a dummy hash is checked: same cost, same
    count."""
    limiter = svc.login_limiter
    settle: Callable[[bool | None], Awaitable[bool]]
    if device is None:
        attempt = await limiter.reserve_password(email, client.ip_bucket)

        async def settle(ok: bool | None) -> bool:
            await limiter.settle_password(attempt, ok)
            return False
    else:
        reservation = await limiter.reserve_device(device.id)

        async def settle(ok: bool | None) -> bool:
            return await limiter.settle_device(reservation, ok)

    await end_transaction(db)  # no connection (nor SQLite's write lock) held while hashing
    try:
        ok, new_hash = await svc.hasher.verify(password, user.password_hash if user else None)
    except BaseException:
        await settle(None)  # nothing was checked: give it back
        raise
    ok = ok and user is not None
    if await settle(ok) and device is not None:
        await devices.spend(db, device)
        audit.record(db, svc, client, "device.spent", device.user_id)
    if not ok or user is None:
        return False
    if new_hash is not None:  # hashing parameters were raised since it was stored
        # Only over the hash just checked: a password change that won a race keeps its own.
        await repository.replace_password_hash(db, user.id, user.password_hash, new_hash)
    return True


async def login(
    db: AsyncSession,
    svc: Services,
    client: Client,
    email: str,
    password: str,
    device_token: str | None = None,
) -> SignedIn | ChallengeResponse | EnrollmentRequired:
    email = normalise_email(email)
    user = await repository.get_by_email(db, email)
    device = await devices.recognise(db, svc, user, device_token)
    if not await verify_password(db, svc, client, email, user, password, device) or user is None:
        audit.record(db, svc, client, "login.failed", user.id if user else None)
        raise InvalidCredentials()
    if user.disabled_at is not None:  # after the password: a guesser learns nothing
        audit.record(db, svc, client, "login.refused", user.id, reason="account_disabled")
        raise AccountDisabled()
    if svc.settings.require_verified_email and not user.email_verified:
        # Only now, after the password: a guesser learns nothing. A fresh link goes out (at
        # most MFA_EMAIL_VERIFY_MAX an hour), since without tokens the user cannot ask.
        await recovery_tokens.send_verification(db, svc, user, quiet=True)
        audit.record(db, svc, client, "login.failed", user.id, reason="email_not_verified")
        raise EmailNotVerified()
    if user.mfa_enabled:
        if device is not None:
            # Read again after the hashing wait: a DELETE /users/me/devices may have come.
            device = await devices.recognise(db, svc, user, device_token)
        if device is not None and devices.is_remembered(svc, device, user):
            audit.record(db, svc, client, "login.succeeded", user.id, next="remembered_device")
            return await _signed_in(db, svc, client, user, ["pwd", "mfa", "device"], device)
        audit.record(db, svc, client, "login.succeeded", user.id, next="mfa_challenge")
        device_id = device.id if device else None
        return await challenges.start(db, svc, user.id, user.credentials_version, device_id)
    if svc.settings.require_mfa:
        audit.record(db, svc, client, "login.succeeded", user.id, next="mfa_enrollment")
        return await enrollment.start(svc, user)
    audit.record(db, svc, client, "login.succeeded", user.id)
    return await _signed_in(db, svc, client, user, ["pwd"], device)


async def _signed_in(
    db: AsyncSession,
    svc: Services,
    client: Client,
    user: User,
    amr: list[str],
    device: DeviceToken | None,
) -> SignedIn:
    """A new session and the device's next token (a new device's first)."""
    device_token = await devices.issue(db, svc, user.id, device.id if device else None)
    tokens = await sessions.start_session(
        db,
        svc,
        client=client,
        user_id=user.id,
        amr=amr,
        credentials_version=user.credentials_version,
    )
    return SignedIn(**tokens.model_dump(), device_token=device_token)


async def reauthenticate(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, password: str
) -> TokenResponse:
    """A fresh authentication event for the session, by password: for users without a
    second factor (theirs is a step-up), before enrolling one."""
    user = await current_user(db, claims)
    if user.mfa_enabled:
        raise StepUpRequired()
    if not await verify_password(db, svc, client, user.email, user, password):
        raise InvalidCredentials("The password is incorrect.")
    audit.record(db, svc, client, "reauthenticated", user.id)
    return await sessions.new_authentication_event(db, svc, claims, ["pwd"])


async def current_user(db: AsyncSession, claims: AccessClaims) -> User:
    user = session_user(db, claims.sub) or await repository.get(db, claims.sub)
    if user is None:
        raise InvalidToken()
    return user


async def change_password(
    db: AsyncSession,
    svc: Services,
    client: Client,
    claims: AccessClaims,
    current: str,
    new: str,
    proof: FactorProof | None,
) -> None:
    user = await current_user(db, claims)
    if not await verify_password(db, svc, client, user.email, user, current):
        raise InvalidCredentials("The current password is incorrect.")
    if is_too_common(new, user.email):
        raise WeakPassword()
    if user.mfa_enabled:
        if proof is None:
            raise InvalidCode("A second factor is required: MFA is enabled.")
        ctx = Context(user.id, "step_up", str(claims.sid))
        await verification.prove(db, svc, client, ctx, proof)
    user.password_hash = await svc.hasher.hash(new)
    user.password_changed_at = now(svc.clock)
    db.add(user)
    # A reset link mailed before the change must not undo it.
    await recovery_repository.void_all(
        db, user.id, recovery_tokens.PASSWORD_RESET, user.password_changed_at
    )
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=claims.sid, reason="password_changed")
    audit.record(db, svc, client, "password.changed", user.id)
