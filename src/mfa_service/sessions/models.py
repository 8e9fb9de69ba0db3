from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class Session(SQLModel, table=True):
    """A login session: one refresh-token family; its id is the access token's `sid`."""

    __tablename__ = "sessions"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(sa_type=UTCDateTime)
    # When the factors in `amr` were last proven (the token's auth_time).
    auth_time: datetime = Field(sa_type=UTCDateTime)
    amr: str = Field(max_length=100)  # space-separated RFC 8176 values
    last_refreshed_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_reason: str | None = Field(default=None, max_length=50)
    # The user's credentials_version this session was decided on (see accounts.models).
    credentials_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Where the login came from, for the user's list of sessions (None: made before 0006).
    ip: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=300)


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="sessions.id", index=True, ondelete="CASCADE")
    # SHA-256 of the token: 256 random bits need no salt.
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
