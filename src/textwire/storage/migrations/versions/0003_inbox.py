"""The inbox (inbound messages the worker handles) and each outbox row's
segment count (its cost against the sender's rate limit).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("contact", sa.String(length=64), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("public_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_inbox_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_inbox_message_id")),
    )
    op.create_index(
        op.f("ix_inbox_status_next_attempt_at"),
        "inbox",
        ["status", "next_attempt_at"],
    )
    op.create_index(op.f("ix_inbox_contact_id"), "inbox", ["contact", "id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("segments", sa.Integer(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("segments")
    op.drop_index(op.f("ix_inbox_contact_id"), table_name="inbox")
    op.drop_index(op.f("ix_inbox_status_next_attempt_at"), table_name="inbox")
    op.drop_table("inbox")
