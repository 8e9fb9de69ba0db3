"""MFA challenges: the step between a proven password and a proven second factor."""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.audit import service as audit
from mfa_service.challenges import store
from mfa_service.challenges.schemas import ChallengeResponse
from mfa_service.devices import service as devices
from mfa_service.factors import verification
from mfa_service.factors.base import Context
from mfa_service.factors.schemas import FactorProof
from mfa_service.net import Client
from mfa_service.services import Services
from mfa_service.sessions import service as sessions
from mfa_service.sessions.schemas import SignedIn


async def start(
    db: AsyncSession,
    svc: Services,
    user_id: uuid.UUID,
    credentials_version: int,
    device_id: uuid.UUID | None,
) -> ChallengeResponse:
    """A challenge token, the user's methods, and what a two-step factor needs first (WebAuthn
    request options bound to this challenge). The token carries the login's device, whose
    token the answer rotates."""
    token, challenge = await store.create(svc, user_id, credentials_version, device_id)
    ctx = Context(user_id, "challenge", challenge.token_hash)
    methods, offers = await verification.offer(db, svc, ctx)
    return ChallengeResponse.model_validate(
        {
            "challenge_token": token,
            "expires_in": svc.settings.challenge_ttl,
            "methods": methods,
            **offers,
        }
    )


async def answer(
    db: AsyncSession,
    svc: Services,
    client: Client,
    token: str,
    proof: FactorProof,
    remember_device: bool = False,
) -> SignedIn:
    challenge = store.parse(svc, token)
    user_id = challenge.keys.user_id
    outcome = await verification.prove(
        db,
        svc,
        client,
        Context(user_id, "challenge", challenge.token_hash),
        proof,
        challenge_key=challenge.key,
        audit_as="challenge",
    )
    version = challenge.credentials_version
    remember = remember_device and svc.settings.remember_device_days > 0
    device_token = await devices.issue(
        db, svc, user_id, challenge.device_id, remember_version=version if remember else None
    )
    if remember:
        audit.record(db, svc, client, "device.remembered", user_id)
    tokens = await sessions.start_session(
        db,
        svc,
        client=client,
        user_id=user_id,
        amr=["pwd", "mfa", outcome.amr],
        credentials_version=version,
    )
    return SignedIn(**tokens.model_dump(), device_token=device_token)
