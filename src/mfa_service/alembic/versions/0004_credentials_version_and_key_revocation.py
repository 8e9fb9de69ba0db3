"""credentials version on users and sessions; signing key revocation

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 07:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mfa_service.base

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials_version', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials_version', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revoked_at', mfa_service.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('credentials_version')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('credentials_version')
