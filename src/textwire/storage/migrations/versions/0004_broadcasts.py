"""Broadcasts, and what the outbox needs for them and for scheduled messages:
a send time, a priority, the broadcast link and quiet hours.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("media", JSON, nullable=False),
        sa.Column("send_at_text", sa.Text(), nullable=True),
        sa.Column("planned_at", sa.DateTime(), nullable=False),
        sa.Column("quiet_hours", sa.String(length=16), nullable=True),
        sa.Column("number_column", sa.String(length=255), nullable=False),
        sa.Column("region", sa.String(length=8), nullable=False),
        sa.Column("from_number", sa.String(length=64), nullable=True),
        sa.Column("messaging_service_sid", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("valid", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("opted_out", sa.Integer(), nullable=False),
        sa.Column("imported_rows", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
        sa.UniqueConstraint(
            "name", "source_sha256", name=op.f("uq_broadcasts_name_source_sha256")
        ),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("send_at", sa.DateTime(), nullable=True))
        batch.add_column(
            sa.Column("priority", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("broadcast_id", ID, nullable=True))
        batch.add_column(sa.Column("quiet_hours", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("held_until", sa.DateTime(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_outbox_broadcast_id_broadcasts"),
            "broadcasts",
            ["broadcast_id"],
            ["id"],
        )
        batch.create_index(
            op.f("ix_outbox_broadcast_id_status"), ["broadcast_id", "status"]
        )
        batch.create_index(
            op.f("ix_outbox_status_priority_next_attempt_at_id"),
            ["status", "priority", "next_attempt_at", "id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index(op.f("ix_outbox_status_priority_next_attempt_at_id"))
        batch.drop_index(op.f("ix_outbox_broadcast_id_status"))
        batch.drop_constraint(
            op.f("fk_outbox_broadcast_id_broadcasts"), type_="foreignkey"
        )
        for column in (
            "held_until",
            "time_zone",
            "quiet_hours",
            "broadcast_id",
            "priority",
            "send_at",
        ):
            batch.drop_column(column)
    op.drop_table("broadcasts")
