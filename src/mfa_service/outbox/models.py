from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Column, Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class OutboxMessage(SQLModel, table=True):
    """Something to deliver after the transaction that wrote it committed.

    `kind` names the handler that delivers it ('mail', 'password_reset_request'; 'webhook'
    next). `payload` is the handler's JSON; a secret in it (a link's token) is sealed with the
    data key. A claimed row's `next_attempt_at` is its lease: a worker that dies mid-delivery
    leaves a row that falls due again. `lease_id` tells a late worker that the row is no
    longer its own. `last_error` is the error's class and a fixed text, never a secret.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The worker's query: undelivered, live rows that are due, oldest first.
        Index("ix_outbox_next_attempt_at", "next_attempt_at"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    kind: str = Field(max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    lease_id: uuid.UUID | None = None
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dead_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=300)
