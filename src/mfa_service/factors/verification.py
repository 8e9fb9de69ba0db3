"""Proving a second factor: throttle, verify and consume, record the outcome."""

from __future__ import annotations

import contextlib

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.audit import service as audit
from mfa_service.errors import InvalidCode
from mfa_service.factors.backup_codes.service import BackupCodeFactor
from mfa_service.factors.base import Context, Factor, Outcome, Verdict
from mfa_service.factors.schemas import FactorProof
from mfa_service.factors.totp.service import TotpFactor
from mfa_service.factors.webauthn.service import WebAuthnFactor
from mfa_service.net import Client
from mfa_service.redis_keys import UserKeys
from mfa_service.services import Services

TOTP: Factor = TotpFactor()
BACKUP_CODE: Factor = BackupCodeFactor()
WEBAUTHN: Factor = WebAuthnFactor()
# The proof field that carries each factor, in the order `methods` lists them.
BY_FIELD: dict[str, Factor] = {"code": TOTP, "backup_code": BACKUP_CODE, "webauthn": WEBAUTHN}


def selected(proof: FactorProof) -> tuple[Factor, object]:
    """The factor a proof is for, and what it carries (the schema admits exactly one)."""
    for field, factor in BY_FIELD.items():
        value = getattr(proof, field)
        if value is not None:
            return factor, value
    raise InvalidCode()


async def offer(
    db: AsyncSession, svc: Services, ctx: Context
) -> tuple[list[str], dict[str, object]]:
    """The user's methods, and what each two-step one needs first (bound to `ctx`)."""
    methods: list[str] = []
    offers: dict[str, object] = {}
    for factor in BY_FIELD.values():
        if await factor.enrolled(db, ctx.user_id):
            methods.append(factor.method)
            if (begun := await factor.begin(db, svc, ctx)) is not None:
                offers[factor.method] = begun
    return methods, offers


async def prove(
    db: AsyncSession,
    svc: Services,
    client: Client,
    ctx: Context,
    proof: FactorProof,
    *,
    challenge_key: str | None = None,
    audit_as: str | None = None,
) -> Outcome:
    """The successful outcome (its `amr`), or RateLimited / ChallengeExpired / InvalidCode.

    Two Redis steps (begin, finish) around one check that also consumes what was proven.
    With `audit_as` ("challenge", "step_up") the outcome is an audit event of that name.
    """
    factor, submitted = selected(proof)
    keys = UserKeys(svc.settings.redis_prefix, ctx.user_id)
    attempt = await svc.throttle.begin(keys, challenge_key)
    try:
        outcome = await factor.verify(db, svc, ctx, submitted)
    except BaseException:
        # Nothing was judged (the database failed): give the reservation back, if Redis
        # still answers; otherwise it counts as a failure until its window ends.
        with contextlib.suppress(Exception):
            await svc.throttle.finish(attempt, None)
        raise
    ok = outcome.verdict is Verdict.OK
    locked = await svc.throttle.finish(attempt, ok)
    if outcome.event is not None and not ok:
        audit.record(db, svc, client, outcome.event, ctx.user_id)
    if locked:
        audit.record(db, svc, client, "factor.locked", ctx.user_id)
    if audit_as is not None:
        result = "succeeded" if ok else "failed"
        audit.record(db, svc, client, f"{audit_as}.{result}", ctx.user_id, method=factor.method)
    if not ok:
        raise InvalidCode()
    if outcome.event is not None:
        audit.record(db, svc, client, outcome.event, ctx.user_id)
    return outcome
