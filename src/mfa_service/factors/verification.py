"""Proving a second factor: throttle, verify and consume, record the outcome."""

from __future__ import annotations

import contextlib
import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.audit import service as audit
from mfa_service.errors import InvalidCode
from mfa_service.factors.backup_codes.service import BackupCodeFactor
from mfa_service.factors.base import Factor, Verdict
from mfa_service.factors.schemas import FactorProof
from mfa_service.factors.totp.service import TotpFactor
from mfa_service.net import Client
from mfa_service.redis_keys import UserKeys
from mfa_service.services import Services

TOTP: Factor = TotpFactor()
BACKUP_CODE: Factor = BackupCodeFactor()


async def prove(
    db: AsyncSession,
    svc: Services,
    client: Client,
    user_id: uuid.UUID,
    proof: FactorProof,
    *,
    challenge_key: str | None = None,
    audit_as: str | None = None,
) -> Factor:
    """The factor proven, or RateLimited / ChallengeExpired / InvalidCode.

    Two Redis steps (begin, finish) around one database check that also consumes the code.
    With `audit_as` ("challenge", "step_up") the outcome is an audit event of that name.
    """
    if proof.code is not None:
        factor, submitted = TOTP, proof.code
    else:
        assert proof.backup_code is not None
        factor, submitted = BACKUP_CODE, proof.backup_code
    keys = UserKeys(svc.settings.redis_prefix, user_id)
    attempt = await svc.throttle.begin(keys, challenge_key)
    try:
        verdict = await factor.verify(db, svc, user_id, submitted)
    except BaseException:
        # Nothing was judged (the database failed): give the reservation back, if Redis
        # still answers; otherwise it counts as a failure until its window ends.
        with contextlib.suppress(Exception):
            await svc.throttle.finish(attempt, None)
        raise
    locked = await svc.throttle.finish(attempt, verdict is Verdict.OK)
    if verdict is Verdict.REPLAY and factor is TOTP:
        audit.record(db, svc, client, "totp.replay_refused", user_id)
    if locked:
        audit.record(db, svc, client, "factor.locked", user_id)
    if audit_as is not None:
        outcome = "succeeded" if verdict is Verdict.OK else "failed"
        audit.record(db, svc, client, f"{audit_as}.{outcome}", user_id, method=factor.method)
    if verdict is not Verdict.OK:
        raise InvalidCode()
    if factor is BACKUP_CODE:
        audit.record(db, svc, client, "backup_code.used", user_id)
    return factor
