from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class AccountToken(SQLModel, table=True):
    """A link's token (password reset, email verification): only its SHA-256 is stored
    (256 random bits need no salt). Single use: `used_at` is set by a conditional update,
    and a newer token of the same purpose sets it on the older ones (voids them)."""

    __tablename__ = "account_tokens"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    purpose: str = Field(max_length=20)  # "password_reset" or "email_verify"
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
