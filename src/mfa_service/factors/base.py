"""The contract every second factor keeps (django-otp's shape).

A factor only verifies and consumes: `verify()` answers whether the submitted value proves the
factor *and* uses it up (a TOTP time step, a backup code), atomically in the database. Whether
the user may try at all (lockout, per-challenge attempts) is the throttle's business
(`factors.throttle`), shared by every factor, so WebAuthn will plug in the same way.
"""

from __future__ import annotations

import enum
import uuid
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.services import Services


class Verdict(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    REPLAY = "replay"  # right value, already used


class Factor(Protocol):
    #: the name clients use in `methods` and request fields
    method: str
    #: the RFC 8176 `amr` value a success adds
    amr: str

    async def verify(
        self, db: AsyncSession, svc: Services, user_id: uuid.UUID, submitted: str
    ) -> Verdict: ...
