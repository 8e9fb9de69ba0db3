"""WebAuthn: registering credentials, a security key as a second factor (a two-step factor),
and passwordless login with a passkey (SPEC §7)."""

from __future__ import annotations

import re
import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User
from mfa_service.audit import service as audit
from mfa_service.clock import now
from mfa_service.errors import (
    AccountDisabled,
    EmailNotVerified,
    InvalidWebAuthnResponse,
    PasskeyRefused,
    WebAuthnCredentialExists,
    WebAuthnNotPending,
)
from mfa_service.factors.base import Context, Outcome, Verdict
from mfa_service.factors.webauthn import ceremony, pending, repository
from mfa_service.factors.webauthn.models import WebAuthnCredential
from mfa_service.factors.webauthn.schemas import (
    AuthenticationCredential,
    CreationOptions,
    CredentialOut,
    RegistrationRequest,
    RequestOptions,
)
from mfa_service.net import Client
from mfa_service.recovery import tokens as recovery_tokens
from mfa_service.services import Services
from mfa_service.sessions import service as sessions
from mfa_service.sessions.schemas import TokenResponse

WRONG = Outcome(Verdict.WRONG)
TRANSPORT = re.compile(r"[a-z][a-z-]{0,31}")  # usb, nfc, ble, hybrid, internal, smart-card


def to_out(credential: WebAuthnCredential) -> CredentialOut:
    return CredentialOut(
        id=str(credential.id),
        name=credential.name,
        created_at=credential.created_at,
        last_used_at=credential.last_used_at,
        passkey=credential.passkey,
        device_bound=credential.device_bound,
        backed_up=credential.backed_up,
        transports=ceremony.transports(credential),
        aaguid=credential.aaguid,
    )


# --- registration ---------------------------------------------------------------------------


async def creation_options(
    db: AsyncSession, svc: Services, user_id: uuid.UUID, email: str, sid: str, passkey: bool
) -> CreationOptions:
    """Options for `navigator.credentials.create()`, bound to this session; a newer call
    replaces an older one's challenge."""
    key = pending.user_key(svc, user_id, "registration", sid)
    challenge = await pending.put(svc, key, passkey=passkey)
    existing = await repository.for_user(db, user_id)
    return ceremony.creation_options(svc.settings, user_id, email, challenge, existing, passkey)


async def register(
    db: AsyncSession, svc: Services, user_id: uuid.UUID, sid: str, body: RegistrationRequest
) -> WebAuthnCredential:
    """Check the attestation against the session's pending options (consumed, whatever the
    verdict) and store the credential."""
    options = await pending.take(svc, pending.user_key(svc, user_id, "registration", sid))
    if options is None:
        raise WebAuthnNotPending()
    verified = ceremony.verify_registration(
        svc.settings, body.credential, options.challenge, options.passkey
    )
    if verified is None:
        raise InvalidWebAuthnResponse()
    transports = body.credential.response.transports or []
    credential = WebAuthnCredential(
        user_id=user_id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=",".join(t for t in transports if TRANSPORT.fullmatch(t))[:200],
        aaguid=verified.aaguid,
        passkey=options.passkey,
        device_bound=verified.credential_device_type == "single_device",
        backed_up=verified.credential_backed_up,
        name=body.name,
        created_at=now(svc.clock),
    )
    db.add(credential)
    try:
        await db.flush()
    except IntegrityError:  # its id is registered already (to this user or another)
        raise WebAuthnCredentialExists() from None
    return credential


# --- using a credential ---------------------------------------------------------------------


async def _use(
    db: AsyncSession,
    svc: Services,
    credential: WebAuthnCredential,
    assertion: AuthenticationCredential,
    challenge: bytes,
    user_verification: bool,
) -> Outcome:
    """Verify an assertion by this credential and move its counter forward, atomically.

    A counter that did not increase (when either value is non-zero) means two authenticators
    hold the key: the credential is refused from then on, until removed and registered
    again. Judged only for a valid signature, so a forgery cannot disable someone's key.
    """
    if credential.clone_suspected_at is not None:
        return WRONG
    verified = ceremony.verify_assertion(
        svc.settings, assertion, challenge, credential.public_key, user_verification
    )
    if verified is None:
        return WRONG
    sign_count, backed_up = verified
    at = now(svc.clock)
    if await repository.record_use(db, credential.id, sign_count, backed_up, at):
        return Outcome(Verdict.OK, amr="hwk" if credential.device_bound else "swk")
    if await repository.mark_cloned(db, credential.id, at):
        return Outcome(Verdict.WRONG, event="webauthn.clone_suspected")
    return WRONG


class WebAuthnFactor:
    """A security key as a second factor: request options bound to the challenge (or
    session) first, then the assertion."""

    method = "webauthn"

    async def enrolled(self, db: AsyncSession, user_id: uuid.UUID) -> bool:
        return await repository.count(db, user_id, usable=True) > 0

    async def begin(self, db: AsyncSession, svc: Services, ctx: Context) -> RequestOptions | None:
        usable = [c for c in await repository.for_user(db, ctx.user_id) if not c.clone_suspected_at]
        if not usable:
            return None
        challenge = await pending.put(
            svc, pending.user_key(svc, ctx.user_id, ctx.purpose, ctx.binding)
        )
        return ceremony.request_options(svc.settings, challenge, usable, user_verification=False)

    async def verify(
        self, db: AsyncSession, svc: Services, ctx: Context, submitted: object
    ) -> Outcome:
        if not isinstance(submitted, AuthenticationCredential):
            return WRONG
        # Taken first: the options are used up by this answer, right or wrong.
        options = await pending.take(
            svc, pending.user_key(svc, ctx.user_id, ctx.purpose, ctx.binding)
        )
        credential_id = ceremony.credential_id(submitted)
        if options is None or credential_id is None:
            return WRONG
        found = await repository.by_credential_id(db, credential_id, ctx.user_id)
        if found is None:  # not this user's
            return WRONG
        return await _use(db, svc, found[0], submitted, options.challenge, False)


# --- passkey login ---------------------------------------------------------------------------


async def passkey_options(svc: Services, client: Client) -> RequestOptions:
    """Options for a passwordless login: no user yet, so none of their credentials listed;
    the authenticator offers its discoverable ones and must verify the user."""
    await svc.login_limiter.count_passkey_options(client.ip_bucket)
    challenge = await pending.put(svc)
    return ceremony.request_options(svc.settings, challenge, [], user_verification=True)


async def passkey_login(
    db: AsyncSession, svc: Services, client: Client, assertion: AuthenticationCredential
) -> TokenResponse:
    """Tokens for the passkey's user, amr [hwk|swk, mfa]: the authenticator proved possession
    and verified the user (PIN or biometric). Every failure answers the same 401."""
    limiter = svc.login_limiter
    reservation = await limiter.reserve_ip("passkey", client.ip_bucket)
    try:
        found, outcome = await _passkey_outcome(db, svc, assertion)
    except BaseException:
        await limiter.release(reservation)
        raise
    ok = outcome.verdict is Verdict.OK
    await limiter.settle(reservation, ok)
    user_id = found[0].user_id if found else None
    if outcome.event is not None:
        audit.record(db, svc, client, outcome.event, user_id)
    if not ok or found is None:
        audit.record(db, svc, client, "login.failed", user_id, method="passkey")
        raise PasskeyRefused()
    credential, credentials_version = found
    user = await db.get(User, credential.user_id)
    if user is None or user.disabled_at is not None:
        reason = "account_disabled"
        audit.record(db, svc, client, "login.refused", credential.user_id, reason=reason)
        raise AccountDisabled()
    if svc.settings.require_verified_email and not user.email_verified:
        # As a password login (SPEC §10): refused, and a fresh link mailed.
        await recovery_tokens.send_verification(db, svc, user, quiet=True)
        audit.record(
            db, svc, client, "login.failed", user.id, method="passkey", reason="email_not_verified"
        )
        raise EmailNotVerified()
    audit.record(db, svc, client, "login.succeeded", credential.user_id, method="passkey")
    return await sessions.start_session(
        db,
        svc,
        client=client,
        user_id=credential.user_id,
        amr=[outcome.amr, "mfa"],
        credentials_version=credentials_version,
    )


async def _passkey_outcome(
    db: AsyncSession, svc: Services, assertion: AuthenticationCredential
) -> tuple[tuple[WebAuthnCredential, int] | None, Outcome]:
    claimed = pending.claimed_challenge(assertion.response.client_data_json)
    options = None if claimed is None else await pending.take(svc, pending.login_key(svc, claimed))
    credential_id = ceremony.credential_id(assertion)
    if options is None or credential_id is None:
        return None, WRONG
    found = await repository.by_credential_id(db, credential_id)
    if found is None or not found[0].passkey:
        return None, WRONG
    credential = found[0]
    handle = assertion.response.user_handle
    if handle is not None and handle != ceremony.user_handle(credential.user_id):
        return found, WRONG
    return found, await _use(db, svc, credential, assertion, options.challenge, True)
