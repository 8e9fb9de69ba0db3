from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Index
from sqlmodel import Column, Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class AuditEvent(SQLModel, table=True):
    """A security event. `detail` holds small facts (a method, a reason), never a secret."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_user_id_at", "user_id", "at", "id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # None for events about an unknown email (a failed login); such rows are nobody's to read.
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="CASCADE")
    type: str = Field(max_length=40)
    at: datetime = Field(sa_type=UTCDateTime)
    ip: str = Field(max_length=45)
    user_agent: str = Field(max_length=300)
    detail: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
