"""run job: the job whose attempt opened a run, so a run left open by a lost worker can be closed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 02:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_runs_job_id', ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_job_id')
        batch_op.drop_column('job_id')
