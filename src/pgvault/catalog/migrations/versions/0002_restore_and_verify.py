"""restore and verification jobs; restore point verification results; plan drills

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drill_every", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("restore_point_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_restore_point_id_restore_points"), "restore_points", ["restore_point_id"], ["id"]
        )
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("restore_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("databases", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("verify_status", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("verify_message", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("drill_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("drill_status", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("drill_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("drill_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("restore_points", schema=None) as batch_op:
        for col in ("drill_message", "drill_seconds", "drill_status", "drill_at", "verify_message", "verify_status",
                    "verified_at", "databases"):
            batch_op.drop_column(col)
    with op.batch_alter_table("job_items", schema=None) as batch_op:
        batch_op.drop_column("details")
        batch_op.drop_column("target")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_restore_point_id_restore_points"), type_="foreignkey")
        batch_op.drop_column("restore_point_id")
        batch_op.drop_column("options")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("drill_every")
