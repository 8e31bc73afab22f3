"""accounts, settings, exports, webhooks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Owners get sign-in names, passwords and several revocable API keys (each existing
owner's key moves to the api_key table); projects get the settings volunteers see
(field guide, tutorial, languages), publishing and webhooks; batches report progress;
exports run as jobs; webhook deliveries are recorded.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['owner.id'], name=op.f('fk_api_key_owner_id_owner'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_key')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_key_key_hash'))
    )
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_key_owner_id'), ['owner_id'], unique=False)

    op.create_table('export',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('format', sa.String(length=20), nullable=False),
    sa.Column('state', sa.Enum('pending', 'running', 'done', 'failed', name='exportstate', native_enum=False, length=20), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('provenance', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_export_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export'))
    )
    with op.batch_alter_table('export', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_export_project_id'), ['project_id'], unique=False)

    op.create_table('webhook_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('event_key', sa.String(length=120), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_webhook_delivery_project_id_project'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
    sa.UniqueConstraint('event_key', name='uq_webhook_delivery_event_key')
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_delivery_project_id'), ['project_id'], unique=False)

    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.Enum('archive', 'tiles', name='batchkind', native_enum=False, length=20), nullable=False, server_default=sa.text("'archive'")))
        batch_op.add_column(sa.Column('options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('total', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('processed', sa.Integer(), nullable=False, server_default='0'))

    with op.batch_alter_table('consensus_result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agreement', sa.Float(), nullable=True))

    # Each owner's one key becomes their first named key.
    op.execute("INSERT INTO api_key (owner_id, name, prefix, key_hash, created_at) "
               "SELECT id, 'first key', 'mt_', api_key_hash, created_at FROM owner")
    with op.batch_alter_table('owner', schema=None) as batch_op:
        batch_op.add_column(sa.Column('username', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('password_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('is_admin', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_constraint(batch_op.f('uq_owner_api_key_hash'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_owner_username'), ['username'])
        batch_op.drop_column('api_key_hash')

    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('published', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('qualification', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('field_guide', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('tutorial', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('languages', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='["en"]'))
        batch_op.add_column(sa.Column('translations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('topics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('webhook_url', sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column('webhook_secret', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('unit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('thumbnail', sa.String(length=80), nullable=True))

    with op.batch_alter_table('volunteer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('username', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('password_hash', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_volunteer_username'), ['username'])

    with op.batch_alter_table('answer', schema=None) as batch_op:
        batch_op.create_index('ix_answer_created_at', ['created_at'], unique=False)



def downgrade() -> None:
    # Owners keep one key each: the oldest that is not revoked (an owner without one cannot sign in).
    with op.batch_alter_table('answer', schema=None) as batch_op:
        batch_op.drop_index('ix_answer_created_at')

    with op.batch_alter_table('volunteer', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_volunteer_username'), type_='unique')
        batch_op.drop_column('password_hash')
        batch_op.drop_column('username')

    with op.batch_alter_table('unit', schema=None) as batch_op:
        batch_op.drop_column('thumbnail')

    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('qualification')
        batch_op.drop_column('completed_at')
        batch_op.drop_column('webhook_secret')
        batch_op.drop_column('webhook_url')
        batch_op.drop_column('topics')
        batch_op.drop_column('translations')
        batch_op.drop_column('languages')
        batch_op.drop_column('tutorial')
        batch_op.drop_column('field_guide')
        batch_op.drop_column('published')

    with op.batch_alter_table('owner', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_key_hash', sa.VARCHAR(length=64), nullable=True))
    op.execute("UPDATE owner SET api_key_hash = (SELECT key_hash FROM api_key WHERE api_key.owner_id = owner.id "
               "AND revoked_at IS NULL ORDER BY id LIMIT 1)")
    op.execute("UPDATE owner SET api_key_hash = 'revoked-' || id WHERE api_key_hash IS NULL")
    with op.batch_alter_table('owner', schema=None) as batch_op:
        batch_op.alter_column('api_key_hash', nullable=False)
        batch_op.drop_constraint(batch_op.f('uq_owner_username'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_owner_api_key_hash'), ['api_key_hash'])
        batch_op.drop_column('is_admin')
        batch_op.drop_column('password_hash')
        batch_op.drop_column('username')

    with op.batch_alter_table('consensus_result', schema=None) as batch_op:
        batch_op.drop_column('agreement')

    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_column('processed')
        batch_op.drop_column('total')
        batch_op.drop_column('options')
        batch_op.drop_column('kind')

    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_project_id'))

    op.drop_table('webhook_delivery')
    with op.batch_alter_table('export', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_export_project_id'))

    op.drop_table('export')
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_key_owner_id'))

    op.drop_table('api_key')
