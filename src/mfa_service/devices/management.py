"""What a signed-in user does with their devices: forget every remembered one."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import service as accounts
from mfa_service.audit import service as audit
from mfa_service.devices import service as devices
from mfa_service.factors.service import require_recent_authentication
from mfa_service.net import Client
from mfa_service.services import Services
from mfa_service.tokens.access import AccessClaims


async def forget_devices(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims
) -> None:
    """Every later login answers a challenge again. Needs a recent authentication with a
    second factor, as enrolling one does: a remembered device's session (amr `device`) does
    not count, so the device cannot keep itself remembered."""
    user = await accounts.current_user(db, claims)
    require_recent_authentication(svc, claims, user)
    forgotten = await devices.forget_all(db, user.id)
    audit.record(db, svc, client, "devices.forgotten", user.id, count=str(forgotten))
