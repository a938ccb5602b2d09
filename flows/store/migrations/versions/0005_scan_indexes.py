"""Indexes for the housekeeping scans and the alert checks: date triggers read a range of
contract dates, inactivity a range of last contacts, count triggers a customer's events of one
type; stuck events, overdue waits and open tasks are found by status.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_customers_contract_end", "customers", ["contract_end"]),
    ("ix_customers_contract_start", "customers", ["contract_start"]),
    ("ix_customers_last_contact", "customers", ["last_contact_at", "created_at"]),
    ("ix_events_status", "events", ["status", "received_at"]),
    ("ix_events_count", "events", ["customer_id", "type", "occurred_at"]),
    ("ix_member_due", "members", ["status", "due_at"]),
    ("ix_tasks_status", "tasks", ["status", "due_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
