"""generative collections and their editions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:06:51.587044
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata_cid", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "collection_editions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("traits", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("regenerations", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=True),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.Column("token_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["draft_id"],
            ["drafts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "number"),
    )
    with op.batch_alter_table("collection_editions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_collection_editions_collection_id"), ["collection_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("collection_editions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_collection_editions_collection_id"))

    op.drop_table("collection_editions")
    op.drop_table("collections")
