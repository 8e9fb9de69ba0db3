"""Withdrawals: a downstream service that trusts mfa-service's access tokens.

Any signed-in user may read a balance; moving money needs a TOTP code proven in the last five
minutes. Only `mfa_verify` and FastAPI: no database, no Redis, no mfa-service code.

Run (after `mfa-service serve` on 127.0.0.1:8000), from the repository root:

    uvicorn --factory examples.withdrawals.app:create_app --port 8001

Settings (environment): `WITHDRAWALS_MFA_URL` where mfa-service is reached
[http://127.0.0.1:8000], `WITHDRAWALS_MFA_ISSUER` its `MFA_ISSUER` [http://localhost:8000],
`WITHDRAWALS_MFA_AUDIENCE` its `MFA_AUDIENCE` [mfa-service].
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from mfa_verify import AccessClaims, Verifier
from mfa_verify.fastapi import MfaAuth, install_error_handlers
from pydantic import BaseModel, Field

# Backup codes (`recovery`) do not count: they are for getting back in after losing the
# authenticator, and a printed sheet of them should not be enough to move money. A user who
# signed in with one proves a TOTP code (POST /mfa/step-up) before withdrawing.
WITHDRAWAL_METHODS = frozenset({"otp"})
WITHDRAWAL_MAX_AGE = 300  # seconds since the factor was proven
OPENING_BALANCE_CENTS = 100_000


@dataclass(frozen=True)
class Settings:
    mfa_url: str = "http://127.0.0.1:8000"
    issuer: str = "http://localhost:8000"  # mfa-service's default MFA_ISSUER
    audience: str = "mfa-service"  # mfa-service's default MFA_AUDIENCE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        defaults = cls()
        return cls(
            mfa_url=environ.get("WITHDRAWALS_MFA_URL", defaults.mfa_url).rstrip("/"),
            issuer=environ.get("WITHDRAWALS_MFA_ISSUER", defaults.issuer),
            audience=environ.get("WITHDRAWALS_MFA_AUDIENCE", defaults.audience),
        )


class Ledger:
    """In memory, per process: an example, not a bank."""

    def __init__(self) -> None:
        self._balances: dict[str, int] = {}

    def balance(self, user: str) -> int:
        return self._balances.get(user, OPENING_BALANCE_CENTS)

    def withdraw(self, user: str, amount: int) -> int | None:
        """The new balance, or None when it does not cover the amount. No await inside, so
        the check and the update cannot interleave with another request's."""
        balance = self.balance(user)
        if amount > balance:
            return None
        self._balances[user] = balance - amount
        return balance - amount


def get_verifier(request: Request) -> Verifier:
    verifier: Verifier = request.app.state.verifier
    return verifier


def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


auth = MfaAuth(get_verifier)
CurrentUser = Annotated[AccessClaims, Depends(auth.require_user())]
RecentOtp = Annotated[
    AccessClaims,
    Depends(auth.require_mfa(max_age=WITHDRAWAL_MAX_AGE, methods=WITHDRAWAL_METHODS)),
]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]


class Balance(BaseModel):
    user: str
    balance_cents: int


class WithdrawalRequest(BaseModel):
    amount_cents: int = Field(gt=0, le=1_000_000)


class Withdrawal(BaseModel):
    id: str
    amount_cents: int
    balance_cents: int


def create_app(config: Settings | Verifier | None = None) -> FastAPI:
    """With Settings (default: from the environment) the app builds its Verifier in the
    lifespan and closes it; with a Verifier (tests) it uses that one and leaves it open."""
    given = config if isinstance(config, Verifier) else None
    settings = config if isinstance(config, Settings) else Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if given is not None:
            app.state.verifier = given
            yield
            return
        async with Verifier(
            issuer=settings.issuer,
            audience=settings.audience,
            jwks_url=f"{settings.mfa_url}/.well-known/jwks.json",
        ) as verifier:
            app.state.verifier = verifier
            yield

    app = FastAPI(title="withdrawals (mfa-verify example)", lifespan=lifespan)
    app.state.ledger = Ledger()
    install_error_handlers(app)

    @app.get("/balance", response_model=Balance)
    async def balance(user: CurrentUser, ledger: LedgerDep) -> Balance:
        """Any valid access token."""
        return Balance(user=user.sub, balance_cents=ledger.balance(user.sub))

    @app.post("/withdrawals", response_model=Withdrawal)
    async def withdraw(
        body: WithdrawalRequest, user: RecentOtp, ledger: LedgerDep
    ) -> Withdrawal | JSONResponse:
        """A TOTP code proven in the last 5 minutes (401 insufficient_user_authentication
        otherwise: step up at mfa-service and retry)."""
        remaining = ledger.withdraw(user.sub, body.amount_cents)
        if remaining is None:
            return JSONResponse(
                {
                    "type": "urn:mfa-service:problem:insufficient_funds",
                    "title": "Insufficient funds",
                    "status": 409,
                    "detail": "The balance does not cover the amount.",
                    "code": "insufficient_funds",
                },
                status_code=409,
                media_type="application/problem+json",
            )
        return Withdrawal(
            id=uuid.uuid4().hex, amount_cents=body.amount_cents, balance_cents=remaining
        )

    return app
