"""Every table, imported once so the metadata is complete (Alembic and tests use this)."""

from sqlmodel import SQLModel

from mfa_service.accounts.models import User
from mfa_service.audit.models import AuditEvent
from mfa_service.devices.models import DeviceToken
from mfa_service.factors.backup_codes.models import BackupCode
from mfa_service.factors.totp.models import TotpCredential
from mfa_service.factors.webauthn.models import WebAuthnCredential
from mfa_service.outbox.models import OutboxMessage
from mfa_service.recovery.models import AccountToken
from mfa_service.sessions.models import RefreshToken, Session
from mfa_service.tokens.models import SigningKey

metadata = SQLModel.metadata

__all__ = [
    "AccountToken",
    "AuditEvent",
    "BackupCode",
    "DeviceToken",
    "RefreshToken",
    "OutboxMessage",
    "Session",
    "SigningKey",
    "TotpCredential",
    "User",
    "WebAuthnCredential",
    "metadata",
]
