from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # Normalised (trimmed, lower case) before it is stored or looked up.
    email: str = Field(max_length=320, unique=True)
    password_hash: str = Field(max_length=255)
    mfa_enabled: bool = Field(default=False)
    created_at: datetime = Field(sa_type=UTCDateTime)
    password_changed_at: datetime = Field(sa_type=UTCDateTime)
    # Bumped by every password or second-factor change: a session lives only while it was
    # made under the current version, so no login in flight during a change outlives it.
    credentials_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Set by following the link of an email verification (SPEC §10).
    email_verified: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    # Set by an operator (`mfa-service users disable`): no login, refresh or session (SPEC §9).
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
