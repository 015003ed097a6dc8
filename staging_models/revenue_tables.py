"""Recognized revenue per project and accounting period (issue 17, docs/revenue.md).

`revenue_recognized` is derived, rewritten whole by every run of the revenue asset
(`staging_models.revenue.compute_revenue`) from the current valid data: it says what the
revenue of each project is to the end of each period *as known now*. What the ERP was told
lives in the journal ledger (`ledger_tables.journal_ledger`); a closed period's difference
between the two becomes an adjustment in the next open period.
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_money = sa.Numeric(18, 2)

revenue_recognized = sa.Table(
    "revenue_recognized",
    metadata,
    sa.Column("project_code", sa.Text, nullable=False),
    sa.Column("period", sa.Text, nullable=False),  # YYYY-MM
    sa.Column("legal_entity", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("method", sa.Text, nullable=False),  # time_and_materials | fixed_fee | milestone
    # fixed fee: hours (budget_hours) or cost (budget_cost) to the period's end, and the budget
    sa.Column("progress_to_date", sa.Numeric(18, 4)),
    sa.Column("budget", sa.Numeric(18, 4)),
    # fixed fee: percent complete, 0.0000-100.0000, rounded half up to 4 decimals (display)
    sa.Column("percent_complete", sa.Numeric(9, 4)),
    sa.Column("recognized_to_date", _money, nullable=False),
    sa.Column("period_amount", _money, nullable=False),  # to date minus the previous period's
    sa.Column("invoiced_to_date", _money, nullable=False),  # released invoice lines
    # recognized - invoiced: > 0 unbilled (WIP), < 0 deferred revenue (billed ahead)
    sa.Column("wip", _money, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("project_code", "period"),
)
