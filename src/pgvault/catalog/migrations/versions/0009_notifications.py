"""notifications: targets (apprise URLs, sealed), the outbox of deliveries, and each instance's RPO breach

Events (a failed job, a failed drill, an RPO breach and its recovery) are written to ``notifications`` in
the transaction that saw them and sent after the commit by the notifier thread; ``rpo_breaches`` keeps the
breach state per instance so that each breach notifies once, and its recovery once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notification_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('name_key', sa.String(length=255), nullable=False),
    sa.Column('url_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('url_redacted', sa.String(length=255), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('abandoned', sa.Integer(), nullable=False),
    sa.Column('dropped', sa.Integer(), nullable=False),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_notification_targets_plan_id_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_targets')),
    sa.UniqueConstraint('name_key', name=op.f('uq_notification_targets_name_key'))
    )
    with op.batch_alter_table('notification_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_targets_plan_id'), ['plan_id'], unique=False)
    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['target_id'], ['notification_targets.id'], name=op.f('fk_notifications_target_id_notification_targets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_due', ['next_attempt_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_target_id'), ['target_id'], unique=False)
    op.create_table('rpo_breaches',
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('noticed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_rpo_breaches_instance_id_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_rpo_breaches'))
    )


def downgrade() -> None:
    op.drop_table('rpo_breaches')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_target_id'))
        batch_op.drop_index('ix_notifications_due')
    op.drop_table('notifications')
    with op.batch_alter_table('notification_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_targets_plan_id'))
    op.drop_table('notification_targets')
