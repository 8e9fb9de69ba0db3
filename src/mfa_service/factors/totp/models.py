from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary
from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class TotpCredential(SQLModel, table=True):
    """One authenticator per user: pending until a first code confirms it."""

    __tablename__ = "totp_credentials"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", unique=True, ondelete="CASCADE")
    secret: bytes = Field(sa_type=LargeBinary)  # base32 secret, AES-GCM sealed
    data_key_id: str = Field(max_length=32)
    created_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The newest time step accepted: a code of this step or an older one is a replay.
    last_used_step: int | None = Field(default=None, sa_type=BigInteger)
