from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class BackupCode(SQLModel, table=True):
    __tablename__ = "backup_codes"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    salt: str = Field(max_length=32)
    # HMAC-SHA256 of salt + code under a key derived from the data key: a stolen database
    # alone does not allow an offline search of the 50-bit code space.
    digest: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
