"""Backup codes as a factor, and the issuing of a new set."""

from __future__ import annotations

import hmac
import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.clock import now
from mfa_service.factors.backup_codes import codes, repository
from mfa_service.factors.backup_codes.models import BackupCode
from mfa_service.factors.base import Context, OneStep, Outcome, Verdict
from mfa_service.services import Services


def _pepper(svc: Services) -> bytes:
    return svc.box.derive("backup-codes")


async def issue(db: AsyncSession, svc: Services, user_id: uuid.UUID) -> list[str]:
    """A new set of codes; every earlier code is void. The plain codes are returned once."""
    await repository.delete_for_user(db, user_id)
    fresh = codes.generate()
    at = now(svc.clock)
    pepper = _pepper(svc)
    for code in fresh:
        salt = codes.new_salt()
        normalised = codes.normalise(code)
        assert normalised is not None
        db.add(
            BackupCode(
                user_id=user_id,
                salt=salt,
                digest=codes.digest(pepper, salt, normalised),
                created_at=at,
            )
        )
    await db.flush()
    return fresh


class BackupCodeFactor(OneStep):
    method = "backup_code"

    async def enrolled(self, db: AsyncSession, user_id: uuid.UUID) -> bool:
        return await repository.count_unused(db, user_id) > 0

    async def verify(
        self, db: AsyncSession, svc: Services, ctx: Context, submitted: object
    ) -> Outcome:
        normalised = codes.normalise(submitted) if isinstance(submitted, str) else None
        if normalised is None:
            return WRONG
        pepper = _pepper(svc)
        match = None
        for row in await repository.unused(db, ctx.user_id):
            if hmac.compare_digest(codes.digest(pepper, row.salt, normalised), row.digest):
                match = row
        if match is None:
            return WRONG
        if not await repository.consume(db, match.id, now(svc.clock)):
            return Outcome(Verdict.REPLAY)  # a concurrent request used it first
        return Outcome(Verdict.OK, amr="recovery", event="backup_code.used")


WRONG = Outcome(Verdict.WRONG)
