"""stages.run_alone: a stage that ran out of GPU memory beside others runs alone from then on

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stages") as b:
        b.add_column(
            sa.Column("run_alone", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("stages") as b:
        b.drop_column("run_alone")
