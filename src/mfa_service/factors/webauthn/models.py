from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary
from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime, new_id


class WebAuthnCredential(SQLModel, table=True):
    """A security key or passkey of a user (SPEC §7)."""

    __tablename__ = "webauthn_credentials"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    # The authenticator's id for it: unique across users, found by it at passkey login.
    credential_id: bytes = Field(sa_type=LargeBinary, unique=True)
    public_key: bytes = Field(sa_type=LargeBinary)  # COSE_Key, as the authenticator sent it
    sign_count: int = Field(default=0, sa_type=BigInteger)
    transports: str = Field(default="", max_length=200)  # comma-separated, as reported
    aaguid: str = Field(max_length=36)
    passkey: bool  # registered as a discoverable credential with user verification
    device_bound: bool  # single-device; False: may be synced (backup eligible)
    backed_up: bool  # BS flag, as of its latest use
    name: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set when its counter went backwards: refused until removed and registered again.
    clone_suspected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
