"""governance: four-eyes sign-off records and signed audit-log checkpoints

Reports and sign-offs record the audit-log head; signed checkpoints and a small settings table are added;
the audit log gets its first event (a genesis on an empty log), so an empty log never verifies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 19:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _first_event() -> None:
    """Chain one event: ``log.genesis`` on an empty log, ``log.checkpoints.start`` on an existing one (from here
    on the log is checkpointed; the verifier expects checkpoints only after it)."""
    from datetime import datetime, timezone

    from storage.auditlog import GENESIS, canonical_json, entry_hash

    log = sa.table('audit_log', sa.column('seq', sa.Integer), sa.column('at', sa.String),
                   sa.column('actor', sa.String), sa.column('action', sa.String), sa.column('subject', sa.String),
                   sa.column('details', sa.Text), sa.column('prev_hash', sa.String), sa.column('hash', sa.String))
    bind = op.get_bind()
    last = bind.execute(sa.select(log.c.seq, log.c.hash).order_by(log.c.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    action = 'log.checkpoints.start' if last else 'log.genesis'
    at = datetime.now(timezone.utc).isoformat()
    details = canonical_json({"schema": revision})
    bind.execute(log.insert().values(seq=seq, at=at, actor='system', action=action, subject='audit_log',
                                     details=details, prev_hash=prev,
                                     hash=entry_hash(seq, at, 'system', action, 'audit_log', details, prev)))


def upgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('log_seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('log_hash', sa.String(length=64), nullable=True))
    with op.batch_alter_table('signoffs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('log_seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('log_hash', sa.String(length=64), nullable=True))
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints')),
    sa.UniqueConstraint('seq', name=op.f('uq_audit_checkpoints_seq'))
    )
    op.create_table('settings',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('value', sa.JSON(), nullable=True),
    sa.Column('updated_by', sa.String(length=80), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    _first_event()


def downgrade() -> None:
    op.drop_table('settings')
    op.drop_table('audit_checkpoints')
    with op.batch_alter_table('signoffs', schema=None) as batch_op:
        batch_op.drop_column('log_hash')
        batch_op.drop_column('log_seq')
        batch_op.drop_column('report_sha256')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_column('log_hash')
        batch_op.drop_column('log_seq')
