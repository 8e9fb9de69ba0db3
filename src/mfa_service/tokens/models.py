from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary
from sqlmodel import Field, SQLModel

from mfa_service.base import UTCDateTime


class SigningKey(SQLModel, table=True):
    """A JWT signing key; the private part sealed with the data key."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=10)
    public_jwk: str  # JSON, published in the JWKS
    private_key: bytes = Field(sa_type=LargeBinary)  # PKCS#8 PEM, AES-GCM sealed
    data_key_id: str = Field(max_length=32)
    created_at: datetime = Field(sa_type=UTCDateTime)
    # A newer key took over; stays published until its last token has expired.
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Emergency revocation (`keys revoke`): never published, accepted or used to sign again
    # (every instance sees it within 10 s).
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
