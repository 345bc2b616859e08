"""studies: a grid of experiments submitted as one

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FK = "fk_experiments_study_id_studies"
INDEX = "ix_experiments_study_id"


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_studies_owner", "studies", ["owner"])
    with op.batch_alter_table("experiments") as b:
        b.add_column(sa.Column("study_id", sa.String(32), nullable=True))
        b.create_foreign_key(FK, "studies", ["study_id"], ["id"], ondelete="CASCADE")
        b.create_index(INDEX, ["study_id"])


def downgrade() -> None:
    with op.batch_alter_table("experiments") as b:
        b.drop_index(INDEX)
        b.drop_constraint(FK, type_="foreignkey")
        b.drop_column("study_id")
    op.drop_index("ix_studies_owner", "studies")
    op.drop_table("studies")
