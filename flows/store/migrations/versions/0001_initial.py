"""The initial schema: every table of flows/store/tables.py, and the append-only audit trigger.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Generated once with ``alembic revision --autogenerate`` and tidied by hand; the test
tests/store/test_migrations.py checks it still matches the models on SQLite and PostgreSQL.
Datetime columns are ``DateTime(timezone=True)``: the models' ``UTCDateTime`` is a Python-side
decorator of that type and has no schema of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# PostgreSQL: the database itself refuses UPDATE, DELETE and TRUNCATE on audit, for every
# role; only the table owner can switch the trigger off (and `audit verify` would then still
# catch any change through the hash chain).
PG_AUDIT_FUNCTION = """
CREATE OR REPLACE FUNCTION touchpoints_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on table audit is refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'audit rows are never changed or removed; append a new row instead';
END;
$$
"""
PG_AUDIT_TRIGGER = """
CREATE TRIGGER audit_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION touchpoints_audit_append_only()
"""
# SQLite has no TRUNCATE, and its triggers are per row; these two refuse every UPDATE and
# DELETE of an audit row (DELETE FROM audit fires them too).
SQLITE_AUDIT_TRIGGERS = {
    "audit_refuse_update": "UPDATE",
    "audit_refuse_delete": "DELETE",
}


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("plan", sa.String(64), nullable=True),
        sa.Column("contract_start", sa.Date(), nullable=True),
        sa.Column("contract_end", sa.Date(), nullable=True),
        sa.Column("account_owner", sa.String(320), nullable=True),
        sa.Column("account_owner_name", sa.String(200), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("last_contact_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customers_email", "customers", ["email"])
    op.create_index("ix_customers_region", "customers", ["region"])

    op.create_table(
        "preferences",
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", "category"),
    )

    op.create_table(
        "suppressions",
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )

    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("until", UTC, nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "source", name="uq_hold_source"),
    )
    op.create_index("ix_holds_customer_id", "holds", ["customer_id"])

    op.create_table(
        "events",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("occurred_at", UTC, nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dispatched_at", UTC, nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_customer_id", "events", ["customer_id"])
    op.create_index("ix_events_type", "events", ["type"])

    op.create_table(
        "journeys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("touchpoint", sa.String(128), nullable=False),
        sa.Column("entry_key", sa.String(300), nullable=False),
        sa.Column("entry_lock", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("ended_at", UTC, nullable=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_journeys_customer_id", "journeys", ["customer_id"])
    op.create_index("ix_journeys_touchpoint", "journeys", ["touchpoint"])
    op.create_index("uq_journey_entry", "journeys", ["touchpoint", "entry_key"], unique=True,
                    sqlite_where=sa.text("entry_lock"), postgresql_where=sa.text("entry_lock"))

    op.create_table(
        "members",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("wave", sa.String(64), nullable=True),
        sa.Column("lane", sa.String(500), nullable=False),
        sa.Column("pointer", sa.String(64), nullable=True),
        sa.Column("resume_mode", sa.String(8), nullable=False),
        sa.Column("due_at", UTC, nullable=True),
        sa.Column("waiting_for", sa.String(128), nullable=True),
        sa.Column("match", sa.Text(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "customer_id", name="uq_member"),
    )
    op.create_index("ix_member_select", "members", ["journey_id", "status", "wave"])
    op.create_index("ix_member_waiting", "members", ["status", "waiting_for"])
    op.create_index("ix_members_customer_id", "members", ["customer_id"])

    op.create_table(
        "continuations",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("touchpoint", sa.String(128), nullable=False),
        sa.Column("pointer", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_continuations_due_at", "continuations", ["due_at"])
    op.create_index("ix_continuations_journey_id", "continuations", ["journey_id"])

    op.create_table(
        "deliveries",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("touchpoint", sa.String(128), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(998), nullable=False),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_deliveries_customer_id", "deliveries", ["customer_id"])
    op.create_index("ix_deliveries_journey_id", "deliveries", ["journey_id"])

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=True),
        sa.Column("touchpoint", sa.String(128), nullable=True),
        sa.Column("step_id", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(320), nullable=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("escalations", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("acknowledged_at", UTC, nullable=True),
        sa.Column("acknowledged_by", sa.String(320), nullable=True),
        sa.Column("completed_at", UTC, nullable=True),
        sa.Column("completed_by", sa.String(320), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_tasks_customer_id", "tasks", ["customer_id"])
    op.create_index("ix_tasks_journey_id", "tasks", ["journey_id"])
    op.create_index("ix_tasks_team", "tasks", ["team"])

    op.create_table(
        "surveys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("touchpoint", sa.String(128), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("question", sa.String(16), nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("answered_at", UTC, nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("answer", sa.String(200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_surveys_customer_id", "surveys", ["customer_id"])
    op.create_index("ix_surveys_journey_id", "surveys", ["journey_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("hmac_secret", sa.String(128), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "audit",
        sa.Column("seq", BIGID, autoincrement=True, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("touchpoint", sa.String(128), nullable=True),
        sa.Column("step", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("journey_id", sa.String(64), nullable=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_action", "audit", ["action"])
    op.create_index("ix_audit_customer_id", "audit", ["customer_id"])
    op.create_index("ix_audit_touchpoint", "audit", ["touchpoint"])
    _create_audit_guard()


def downgrade() -> None:
    _drop_audit_guard()
    for table in ("audit", "api_keys", "surveys", "tasks", "deliveries", "continuations",
                  "members", "journeys", "events", "holds", "suppressions", "preferences",
                  "customers"):
        op.drop_table(table)


def _create_audit_guard() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(PG_AUDIT_FUNCTION)
        op.execute(PG_AUDIT_TRIGGER)
    elif dialect == "sqlite":
        for name, statement in SQLITE_AUDIT_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} BEFORE {statement} ON audit BEGIN "
                       f"SELECT RAISE(ABORT, 'the audit trail is append-only: {statement} on "
                       f"table audit is refused'); END")


def _drop_audit_guard() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_append_only ON audit")
        op.execute("DROP FUNCTION IF EXISTS touchpoints_audit_append_only()")
    elif dialect == "sqlite":
        for name in SQLITE_AUDIT_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
