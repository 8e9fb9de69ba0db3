"""The contract every second factor keeps (django-otp's shape, STYLE §6 and §16).

A factor only verifies and consumes: `verify()` answers whether the submitted value proves the
factor *and* uses it up (a TOTP time step, a backup code, a WebAuthn challenge), atomically.
Whether the user may try at all (lockout, per-challenge attempts) is the throttle's business
(`factors.throttle`), shared by every factor.

Two-step factors (WebAuthn: options, then an assertion) implement `begin()`, which stores
their pending state bound to user, purpose and what it belongs to (`Context`); one-step
factors inherit `OneStep.begin()`, which offers nothing. Callers never ask which kind a
factor is.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.services import Services


class Verdict(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    REPLAY = "replay"  # right value, already used


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    amr: str = ""  # the RFC 8176 value a success adds (WebAuthn: hwk or swk, per credential)
    event: str | None = None  # an audit event the outcome is (a replay, a code used, a clone)


@dataclass(frozen=True)
class Context:
    """Who is proving a factor, what for, and what the proof is bound to: the challenge's
    token hash for a login challenge, the session id for a step-up, the reset token's hash
    for a password reset."""

    user_id: uuid.UUID
    purpose: Literal["challenge", "step_up", "password_reset"]
    binding: str


class Factor(Protocol):
    #: the name clients see in `methods`, and the field of a proof that carries it
    method: str

    async def enrolled(self, db: AsyncSession, user_id: uuid.UUID) -> bool: ...

    async def begin(self, db: AsyncSession, svc: Services, ctx: Context) -> Any | None:
        """What the client needs before it can answer (WebAuthn request options), or None."""

    async def verify(
        self, db: AsyncSession, svc: Services, ctx: Context, submitted: object
    ) -> Outcome: ...


class OneStep:
    """For factors whose proof needs nothing from the server first (a code)."""

    async def begin(self, db: AsyncSession, svc: Services, ctx: Context) -> None:  # noqa: ARG002
        return None
