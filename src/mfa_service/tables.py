"""Every table, imported once so the metadata is complete (Alembic and tests use this)."""

from sqlmodel import SQLModel

from mfa_service.accounts.models import User
from mfa_service.sessions.models import RefreshToken, Session
from mfa_service.tokens.models import SigningKey

metadata = SQLModel.metadata

__all__ = ["RefreshToken", "Session", "SigningKey", "User", "metadata"]
