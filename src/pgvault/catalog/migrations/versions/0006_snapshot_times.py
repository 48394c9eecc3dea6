"""per-database snapshot times on restore points ("restore as of T" compares with them)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("restore_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("snapshot_times", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("restore_points", schema=None) as batch_op:
        batch_op.drop_column("snapshot_times")
