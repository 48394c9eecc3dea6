"""plans that run themselves: schedules, retention, destinations, restore point copies, encryption

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schedule_kind", sa.String(length=16), nullable=False, server_default="rpo"))
        batch_op.add_column(sa.Column("cron", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC"))
        batch_op.add_column(sa.Column("window_start", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("window_end", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("keep_min", sa.Integer(), nullable=False, server_default="3"))
        batch_op.add_column(sa.Column("gfs_daily", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("gfs_weekly", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("gfs_monthly", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("encrypt", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "plan_destinations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_plan_destinations_plan_id_plans"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_destinations")),
    )
    with op.batch_alter_table("plan_destinations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_destinations_plan_id"), ["plan_id"], unique=False)
    op.create_table(
        "restore_point_copies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("restore_point_id", sa.Integer(), nullable=False),
        sa.Column("destination_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["destination_id"], ["plan_destinations.id"],
                                name=op.f("fk_restore_point_copies_destination_id_plan_destinations"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["restore_point_id"], ["restore_points.id"],
                                name=op.f("fk_restore_point_copies_restore_point_id_restore_points"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_point_copies")),
    )
    with op.batch_alter_table("restore_point_copies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_restore_point_copies_restore_point_id"), ["restore_point_id"],
                              unique=False)

    # Data: each plan's storage becomes its first destination; each restore point's storage its first copy.
    conn = op.get_bind()
    for plan_id, kind, path in conn.execute(sa.text("select id, storage_kind, storage_path from plans")).fetchall():
        conn.execute(sa.text("insert into plan_destinations (plan_id, name, kind, config, position) "
                             "values (:p, 'primary', :k, :c, 0)"),
                     {"p": plan_id, "k": kind, "c": json.dumps({"path": path})})
    for point_id, kind, location, created in conn.execute(sa.text(
            "select id, storage_kind, storage_location, created_at from restore_points")).fetchall():
        conn.execute(sa.text("insert into restore_point_copies (restore_point_id, kind, config, state, created_at) "
                             "values (:r, :k, :c, 'present', :t)"),
                     {"r": point_id, "k": kind, "c": json.dumps({"path": location}), "t": created})

    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("storage_kind")
        batch_op.drop_column("storage_path")
    with op.batch_alter_table("restore_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data_key_sealed", sa.LargeBinary(), nullable=True))
        batch_op.drop_column("storage_kind")
        batch_op.drop_column("storage_location")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trigger", sa.String(length=16), nullable=False, server_default="manual"))


def downgrade() -> None:
    raise NotImplementedError("0004 moves storage into destinations and copies; restore the catalog from a backup")
