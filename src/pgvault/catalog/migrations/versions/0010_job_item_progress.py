"""job items' live progress: the phase of a running item, when it started, and when its bytes were last
reported (a running backup writes the bytes streamed so far about once a second, a restore the bytes of
the archive read so far), so that a client sees bytes and a rate while a database is being dumped.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job_items') as batch_op:
        batch_op.add_column(sa.Column('phase', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('progress_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job_items') as batch_op:
        batch_op.drop_column('progress_at')
        batch_op.drop_column('started_at')
        batch_op.drop_column('phase')
