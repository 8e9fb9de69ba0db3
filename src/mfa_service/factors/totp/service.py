"""TOTP enrollment (pending secret → confirmed) and TOTP as a factor."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.clock import now
from mfa_service.errors import InvalidCode, NothingPending, PendingNotFound, TotpAlreadyEnabled
from mfa_service.factors.base import Context, OneStep, Outcome, Verdict
from mfa_service.factors.totp import otp, repository
from mfa_service.factors.totp.models import TotpCredential
from mfa_service.services import Services


def _context(user_id: uuid.UUID) -> bytes:
    return f"totp-secret:{user_id}".encode()


def _secret(svc: Services, credential: TotpCredential | repository.ConfirmedTotp) -> str:
    sealed = credential.secret
    plain = svc.box.open(
        sealed, key_id=credential.data_key_id, context=_context(credential.user_id)
    )
    return plain.decode()


async def setup(db: AsyncSession, svc: Services, user_id: uuid.UUID, email: str) -> str:
    """A new pending secret (replacing any earlier pending one); returns the otpauth URI."""
    credential = await repository.get(db, user_id)
    if credential is not None and credential.confirmed_at is not None:
        raise TotpAlreadyEnabled()
    secret = otp.new_secret()
    sealed = svc.box.seal(secret.encode(), context=_context(user_id))
    if credential is None:
        credential = TotpCredential(
            user_id=user_id, secret=sealed, data_key_id=svc.box.key_id, created_at=now(svc.clock)
        )
    else:
        credential.secret, credential.data_key_id = sealed, svc.box.key_id
        credential.created_at = now(svc.clock)
    db.add(credential)
    await db.flush()
    return otp.otpauth_uri(secret, email, svc.settings.totp_issuer)


async def pending_uri(db: AsyncSession, svc: Services, user_id: uuid.UUID, email: str) -> str:
    """The pending secret's URI, for the QR images; never once TOTP is active."""
    credential = await repository.get(db, user_id)
    if credential is None or credential.confirmed_at is not None:
        raise PendingNotFound()
    return otp.otpauth_uri(_secret(svc, credential), email, svc.settings.totp_issuer)


async def confirm(db: AsyncSession, svc: Services, user_id: uuid.UUID, code: str) -> None:
    credential = await repository.get(db, user_id)
    if credential is None or credential.confirmed_at is not None:
        raise NothingPending()
    step = otp.matching_step(_secret(svc, credential), code, svc.clock.time())
    if step is None:
        raise InvalidCode()
    # The enrolment code's step counts as used. Conditional: of concurrent confirmations
    # only one enables TOTP (and shows backup codes); the others find nothing pending.
    if not await repository.confirm(db, credential.id, now(svc.clock), step):
        raise NothingPending()


async def status(db: AsyncSession, user_id: uuid.UUID) -> tuple[bool, bool]:
    """(enabled, pending)."""
    credential = await repository.get(db, user_id)
    if credential is None:
        return False, False
    return credential.confirmed_at is not None, credential.confirmed_at is None


class TotpFactor(OneStep):
    method = "totp"

    async def enrolled(self, db: AsyncSession, user_id: uuid.UUID) -> bool:
        return await repository.get_confirmed(db, user_id) is not None

    async def verify(
        self, db: AsyncSession, svc: Services, ctx: Context, submitted: object
    ) -> Outcome:
        credential = await repository.get_confirmed(db, ctx.user_id)
        if credential is None or not isinstance(submitted, str):
            return WRONG
        step = otp.matching_step(_secret(svc, credential), submitted, svc.clock.time())
        if step is None:
            return WRONG
        if credential.last_used_step is not None and step <= credential.last_used_step:
            return REPLAY
        if not await repository.consume_step(db, credential.id, step):
            return REPLAY  # a concurrent request took this step first
        return OK


OK = Outcome(Verdict.OK, amr="otp")
WRONG = Outcome(Verdict.WRONG)
REPLAY = Outcome(Verdict.REPLAY, event="totp.replay_refused")
