"""users and roles: each user's role, enabled flag and times; API keys; sessions by user

Every user existing before roles (the bootstrap ``admin``) becomes an Administrator; new users get the
role they are created with. ``password_changed_at`` stays NULL while a user keeps the password it was
created with at bootstrap. ``api_keys`` keeps only sha256 hashes of the keys, as ``auth_tokens`` does.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=32), nullable=False, server_default='Administrator'))
        batch_op.add_column(sa.Column('enabled', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('email', sa.String(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('full_name', sa.String(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE users SET updated_at = created_at")
    with op.batch_alter_table('users', schema=None) as batch_op:
        # the server default only made the existing users Administrators; new rows say their role
        batch_op.alter_column('role', server_default=None)
        batch_op.alter_column('updated_at', nullable=False)
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_tokens_user_id'), ['user_id'], unique=False)
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_table('api_keys')
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_tokens_user_id'))
    with op.batch_alter_table('users', schema=None) as batch_op:
        for column in ('password_changed_at', 'updated_at', 'full_name', 'email', 'enabled', 'role'):
            batch_op.drop_column(column)
