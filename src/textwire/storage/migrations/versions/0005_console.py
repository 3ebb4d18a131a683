"""The operator console: handoff to a person and read markers on contacts,
the operator who wrote an outbound message, and the indexes the console's
live view reads changes through.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
# Re-chained onto 0004 (issue 10) when both land; nothing here depends on it.
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("handoff_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("handoff_active_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("handoff_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("handoff_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("read_message_id", ID, nullable=True))
        batch.create_index(op.f("ix_contacts_updated_at"), ["updated_at"])
        batch.create_index(op.f("ix_contacts_handoff_at"), ["handoff_at"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("sent_by", sa.String(length=128), nullable=True))
        batch.create_index(op.f("ix_messages_updated_at"), ["updated_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_updated_at"), table_name="messages")
    if op.get_bind().dialect.name == "sqlite":
        # Batch mode would copy the table, and messages is referenced by the
        # inbox and the outbox: SQLite (3.35+) drops the column in place.
        op.execute("ALTER TABLE messages DROP COLUMN sent_by")
    else:
        op.drop_column("messages", "sent_by")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_index(op.f("ix_contacts_handoff_at"))
        batch.drop_index(op.f("ix_contacts_updated_at"))
        batch.drop_column("read_message_id")
        batch.drop_column("handoff_by")
        batch.drop_column("handoff_note")
        batch.drop_column("handoff_active_at")
        batch.drop_column("handoff_at")
