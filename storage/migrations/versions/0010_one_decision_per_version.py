"""one decision per version: a unique index on signoffs.model_version_id

A version is approved or rejected once (four-eyes sign-off on a stored report); the index makes a second
sign-off for the same version fail in the database even when two signers race past the service's checks.
An installation that already holds two sign-offs of one version is refused with the versions named: which of
them stands is a governance decision, not a migration's.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 13:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

INDEX = 'uq_signoffs_model_version_id'


def upgrade() -> None:
    signoffs = sa.table('signoffs', sa.column('model_version_id', sa.Integer))
    twice = op.get_bind().execute(
        sa.select(signoffs.c.model_version_id).group_by(signoffs.c.model_version_id)
        .having(sa.func.count() > 1)).scalars().all()
    if twice:
        raise RuntimeError(
            "model version id(s) " + ", ".join(str(v) for v in sorted(twice)) + " hold more than one sign-off "
            "(signed concurrently before this check existed); keep the one that stands and delete the other "
            "signoffs rows by hand (the audit log keeps both report.sign events), then migrate again")
    op.create_index(INDEX, 'signoffs', ['model_version_id'], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name='signoffs')
