"""one running cycle per collection, scheduler lease, mint intents' transaction

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:09:25.977048
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evolve_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Before the unique index can exist, a collection with several 'running' cycles (left by two
    # processes racing before this migration) keeps only its newest; the others were interrupted.
    op.execute(
        "UPDATE evolve_cycles SET status = 'interrupted', "
        "error = 'a second cycle ran at the same time (found by migration 0004)' "
        "WHERE status = 'running' AND id NOT IN "
        "(SELECT MAX(id) FROM evolve_cycles WHERE status = 'running' GROUP BY collection, dry_run) AND dry_run = false"
    )
    with op.batch_alter_table("evolve_cycles", schema=None) as batch_op:
        batch_op.create_index(
            "uq_evolve_cycles_one_running",
            ["collection"],
            unique=True,
            sqlite_where=sa.text("status = 'running' AND dry_run = 0"),
            postgresql_where=sa.text("status = 'running' AND dry_run = false"),
        )

    with op.batch_alter_table("mint_intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("sender", sa.String(length=42), nullable=True))
        batch_op.add_column(sa.Column("nonce", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("tx_hash", sa.String(length=66), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mint_intents", schema=None) as batch_op:
        batch_op.drop_column("tx_hash")
        batch_op.drop_column("nonce")
        batch_op.drop_column("sender")
        batch_op.drop_column("owner")

    with op.batch_alter_table("evolve_cycles", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_evolve_cycles_one_running",
            sqlite_where=sa.text("status = 'running' AND dry_run = 0"),
            postgresql_where=sa.text("status = 'running' AND dry_run = false"),
        )

    op.drop_table("evolve_leases")
