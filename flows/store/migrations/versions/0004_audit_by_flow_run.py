"""Audit rows indexed by flow run: a run's artifact is an aggregate over its own rows, not a
scan of the whole trail.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_flow_run", "audit", ["flow_run_id", "action"])


def downgrade() -> None:
    op.drop_index("ix_audit_flow_run", table_name="audit")
