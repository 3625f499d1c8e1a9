"""sample label names: each labelled sample keeps its class name, which consumers map to a model by name

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 13:30:00.000000
"""

import json

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label_name', sa.String(length=200), nullable=True))
    # A stored label was a position in its dataset's own name list: write the name it stands for.
    bind = op.get_bind()
    datasets = bind.execute(sa.text("SELECT id, labels FROM datasets")).fetchall()
    for ds_id, labels in datasets:
        names = json.loads(labels) if isinstance(labels, str) else list(labels or [])
        for position, name in enumerate(names):
            bind.execute(sa.text("UPDATE samples SET label_name = :name WHERE dataset_id = :ds AND label = :pos"),
                         {"name": str(name), "ds": ds_id, "pos": position})


def downgrade() -> None:
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.drop_column('label_name')
