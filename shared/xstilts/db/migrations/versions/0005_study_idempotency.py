"""studies.idempotency_key, studies.request_hash: POST /studies at most once per Idempotency-Key

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UNIQUE = "uq_studies_owner_idempotency_key"


def upgrade() -> None:
    with op.batch_alter_table("studies") as b:
        b.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        b.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
        b.create_unique_constraint(UNIQUE, ["owner", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("studies") as b:
        b.drop_constraint(UNIQUE, type_="unique")
        b.drop_column("request_hash")
        b.drop_column("idempotency_key")
