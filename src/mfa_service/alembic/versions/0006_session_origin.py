"""where each session's login came from: client IP and user agent

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 11:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ip', sqlmodel.sql.sqltypes.AutoString(length=45), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('user_agent')
        batch_op.drop_column('ip')
