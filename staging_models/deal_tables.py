"""Project set-up from won CRM deals: one row per deal, its set-up ledger and status.

`posting.deal_setup` writes it: the row is committed (`sending`) before the ERP sees the
deal, so a set-up killed half-way is settled by the next run (the ERP is asked for the
deal's external IDs first, and only what is missing is created). The immutable values the
deal was set up with (customer, legal entity, currency, template) stay here: the contract
`DEAL_IMMUTABLE_CHANGED` compares a later version with them. The columns `status`, `reason`,
`erp_customer_id`, `erp_project_id` and `updated_at` are the set-up status fed back to the
CRM with the billing loop's status feedback.
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_ts = sa.DateTime(timezone=True)

#: sending | set_up | updated | quarantined | failed (see docs/posting.md, *Project set-up*).
DEAL_STATUSES = ("sending", "set_up", "updated", "quarantined", "failed")

deal_setups = sa.Table(
    "deal_setups",
    metadata,
    sa.Column("deal_id", sa.Text, primary_key=True),
    sa.Column("project_code", sa.Text),
    # The version being sent (a kill leaves it here) and the last one the ERP holds.
    sa.Column("sending_version", sa.Integer),
    sa.Column("applied_version", sa.Integer),
    # What may not change once set up (compared by DEAL_IMMUTABLE_CHANGED).
    sa.Column("customer_id", sa.Text),
    sa.Column("legal_entity", sa.Text),
    sa.Column("currency", sa.Text),
    sa.Column("template_code", sa.Text),
    # External IDs (deterministic per deal) and the ERP's own ids, read back.
    sa.Column("customer_external_id", sa.Text),
    sa.Column("project_external_id", sa.Text),
    sa.Column("erp_customer_id", sa.Text),
    sa.Column("erp_project_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    # The PSA import file holding the applied version (written after the ERP confirmed it).
    sa.Column("psa_file", sa.Text),
    sa.Column("psa_version", sa.Integer),
    sa.Column("run_id", sa.Text),
    sa.Column("set_up_at", _ts),
    sa.Column("updated_at", _ts, nullable=False),
)
