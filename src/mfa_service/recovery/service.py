"""Forgotten passwords and email verification (SPEC §10).

The forgot answer must not tell whether an email has an account, by its body or its time: the
request does the same work for every email (count the limits, seal the address, write one
outbox row) and the worker looks the account up later, off the request (`ResetRequests`),
issuing a token and a mail only for a real, enabled account.
"""

from __future__ import annotations

import base64
import hashlib
import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import repository as accounts_repository
from mfa_service.accounts.models import User
from mfa_service.accounts.passwords import is_too_common
from mfa_service.accounts.service import current_user, normalise_email
from mfa_service.audit import service as audit
from mfa_service.clock import now
from mfa_service.db import end_transaction
from mfa_service.errors import (
    EmailAlreadyVerified,
    InvalidCode,
    InvalidResetToken,
    InvalidVerificationToken,
    NoWebAuthnCredential,
    WeakPassword,
)
from mfa_service.factors import verification
from mfa_service.factors.base import Context
from mfa_service.factors.schemas import FactorProof
from mfa_service.factors.webauthn.schemas import RequestOptions
from mfa_service.net import Client
from mfa_service.outbox.service import enqueue
from mfa_service.outbox.worker import Item, Undeliverable
from mfa_service.recovery import repository, tokens
from mfa_service.recovery.models import AccountToken
from mfa_service.secretbox import DataKeyError
from mfa_service.services import Services
from mfa_service.sessions import service as sessions
from mfa_service.tokens.access import AccessClaims

logger = logging.getLogger(__name__)

REQUEST_KIND = "password_reset_request"
_REQUEST_CONTEXT = b"password-reset-request"


async def forgot(db: AsyncSession, svc: Services, client: Client, email: str) -> None:
    s = svc.settings
    email = normalise_email(email)
    window = s.password_reset_window_seconds
    limiter = svc.login_limiter
    await limiter.count("reset-ip", client.ip_bucket, s.password_reset_ip_max, window)
    account = hashlib.sha256(email.encode()).hexdigest()[:32]
    await limiter.count("reset-account", account, s.password_reset_account_max, window)
    sealed = svc.box.seal(email.encode(), context=_REQUEST_CONTEXT)
    payload = {"email": base64.b64encode(sealed).decode(), "key_id": svc.box.key_id}
    enqueue(db, svc, REQUEST_KIND, payload)


class ResetRequests:
    """The outbox handler of `password_reset_request`: a link for a known, enabled account
    (its mail enqueued in the same transaction as the token), nothing for any other email."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc

    async def deliver(self, item: Item) -> None:
        svc = self._svc
        try:
            sealed = base64.b64decode(item.payload["email"])
            key_id = item.payload["key_id"]
            email = svc.box.open(sealed, key_id=key_id, context=_REQUEST_CONTEXT).decode()
        except (DataKeyError, ValueError, KeyError) as exc:
            raise Undeliverable("the request cannot be opened (data key changed?)") from exc
        async with svc.sessionmaker() as db:
            user = await accounts_repository.get_by_email(db, email)
            if user is None or user.disabled_at is not None:
                return
            await tokens.send_password_reset(db, svc, user)
            await db.commit()


def install(svc: Services) -> None:
    svc.outbox.register(REQUEST_KIND, ResetRequests(svc).deliver)


async def _reset_target(db: AsyncSession, svc: Services, token: str) -> tuple[AccountToken, User]:
    at = now(svc.clock)
    row = await repository.find_valid(db, tokens.PASSWORD_RESET, tokens.hash_token(token), at)
    user = await accounts_repository.get(db, row.user_id) if row is not None else None
    if row is None or user is None or user.disabled_at is not None:
        raise InvalidResetToken()
    return row, user


def _reset_context(user: User, row: AccountToken) -> Context:
    """A factor proven for this reset link only (WebAuthn options bound to it)."""
    return Context(user.id, "password_reset", row.token_hash)


async def reset_options(db: AsyncSession, svc: Services, token: str) -> RequestOptions:
    row, user = await _reset_target(db, svc, token)
    options = await verification.WEBAUTHN.begin(db, svc, _reset_context(user, row))
    if not isinstance(options, RequestOptions):
        raise NoWebAuthnCredential()
    return options


async def reset(
    db: AsyncSession,
    svc: Services,
    client: Client,
    token: str,
    new_password: str,
    proof: FactorProof | None,
) -> None:
    """A new password by a mailed link; a user with a second factor proves it too (under the
    factor's throttle and replay rules: the link alone never bypasses MFA). Every session,
    pending challenge and remembered device of the user ends, and every other link."""
    row, user = await _reset_target(db, svc, token)
    if is_too_common(new_password, user.email):
        raise WeakPassword()
    if user.mfa_enabled:
        if proof is None:
            raise InvalidCode("A second factor is required: MFA is enabled.")
        await verification.prove(db, svc, client, _reset_context(user, row), proof)
    await end_transaction(db)  # no connection (nor SQLite's write lock) held while hashing
    password_hash = await svc.hasher.hash(new_password)
    at = now(svc.clock)
    # The user's row first, as every writer of account tokens takes it (no deadlock).
    await repository.lock_user(db, user.id)
    if not await repository.consume(db, row.id, at):  # a racing reset with this link won
        raise InvalidResetToken()
    user.password_hash = password_hash
    user.password_changed_at = at
    user.email_verified = True  # the link reached the mailbox: the address works
    db.add(user)
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=None, reason="password_reset")
    await repository.void_all(db, user.id, tokens.PASSWORD_RESET, at)
    audit.record(db, svc, client, "password.reset", user.id)


async def request_verification(db: AsyncSession, svc: Services, claims: AccessClaims) -> None:
    user = await current_user(db, claims)
    if user.email_verified:
        raise EmailAlreadyVerified()
    await tokens.send_verification(db, svc, user, quiet=False)


async def verify_email(db: AsyncSession, svc: Services, client: Client, token: str) -> None:
    at = now(svc.clock)
    row = await repository.find_valid(db, tokens.EMAIL_VERIFY, tokens.hash_token(token), at)
    if row is None:
        raise InvalidVerificationToken()
    await repository.lock_user(db, row.user_id)  # before the token, like every writer
    if not await repository.consume(db, row.id, at):
        raise InvalidVerificationToken()
    user = await accounts_repository.get(db, row.user_id)
    if user is None:
        raise InvalidVerificationToken()
    user.email_verified = True
    db.add(user)
    await repository.void_all(db, user.id, tokens.EMAIL_VERIFY, at)
    audit.record(db, svc, client, "email.verified", user.id)
