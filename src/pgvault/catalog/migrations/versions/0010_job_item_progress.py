"""job items' live progress: the phase of a running item and the milliseconds it has streamed (to its
last report, then to its end): a running backup writes the bytes streamed so far about once a second, a restore
the bytes of the archive read so far, so that a client sees bytes and a rate while a database is dumped.
(A duration in integer milliseconds, not two timestamps: GET /Job/{id} is hot, and each timestamp is a
parse per item; an integer also reads as it is on the prepared read path, which a float does not.)

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
        batch_op.add_column(sa.Column('elapsed_ms', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job_items') as batch_op:
        batch_op.drop_column('elapsed_ms')
        batch_op.drop_column('phase')
