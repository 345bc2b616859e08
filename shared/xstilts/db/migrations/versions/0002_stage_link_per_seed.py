"""a stage may serve several seeds of one experiment

A stage whose output does not depend on the seed (a retrieval target's predictions on the bare
model) is one stage linked once per seed, so the link is unique per (experiment, stage, seed).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD = "experiment_stages_experiment_id_stage_id_key"  # Postgres's name for 0001's constraint
NEW = "uq_experiment_stages_experiment_id_stage_id_seed"
# SQLite constraints have no names; batch mode reflects them under this convention.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("experiment_stages", naming_convention=SQLITE_NAMES) as b:
            b.drop_constraint("uq_experiment_stages_experiment_id_stage_id", type_="unique")
            b.create_unique_constraint(NEW, ["experiment_id", "stage_id", "seed"])
    else:
        op.drop_constraint(OLD, "experiment_stages", type_="unique")
        op.create_unique_constraint(NEW, "experiment_stages", ["experiment_id", "stage_id", "seed"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("experiment_stages", naming_convention=SQLITE_NAMES) as b:
            b.drop_constraint(NEW, type_="unique")
            b.create_unique_constraint(
                "uq_experiment_stages_experiment_id_stage_id", ["experiment_id", "stage_id"]
            )
    else:
        op.drop_constraint(NEW, "experiment_stages", type_="unique")
        op.create_unique_constraint(OLD, "experiment_stages", ["experiment_id", "stage_id"])
