"""explanation engine: the precision and model copy each stored map was computed on

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('explanations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('engine', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('explanations', schema=None) as batch_op:
        batch_op.drop_column('engine')
