from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class DeviceToken(SQLModel, table=True):
    """A device that logged in to its user's account; the token itself is only ever hashed."""

    __tablename__ = "device_tokens"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    # SHA-256 of the token: 256 random bits need no salt. Replaced at every login (rotation).
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    # "Remember this device": until when, and on which credentials version of the user. A
    # password or MFA change bumps the version, which forgets the device with no extra write
    # and no race with a challenge answer in flight.
    remembered_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    remembered_version: int | None = None
