"""Tables of plan vs actual (issue 21): the latest comparison of resource plans with approved time.

`plan_actuals` holds one row per employee, project and ISO week (the week's Monday) of the
period last compared: planned hours (and the planned amount when the plan carries a bill
rate), approved actual hours, of which billable, and their amount. It is also the outbound
actuals feed for the scheduling tool, row for row (`staging_models.resource_plans.actuals_feed`).
`plan_capacity` holds one row per employee and week: the capacity utilization is measured
against, from the employee's `weekly_capacity_hours` or `STAGEPOST_WEEKLY_CAPACITY_HOURS`.
Both are replaced whole by each comparison (`staging_models.resource_plans.compare_plans`).
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_ts = sa.DateTime(timezone=True)
_hours = sa.Numeric(12, 4, asdecimal=True)
_money = sa.Numeric(18, 2, asdecimal=True)

plan_actuals = sa.Table(
    "plan_actuals",
    metadata,
    sa.Column("employee_id", sa.Text, nullable=False),
    sa.Column("project_code", sa.Text, nullable=False),
    sa.Column("week_start", sa.Date, nullable=False),  # the ISO week's Monday
    sa.Column("legal_entity", sa.Text),  # the project's
    sa.Column("currency", sa.Text),  # the project's
    sa.Column("planned_hours", _hours, nullable=False),
    sa.Column("actual_hours", _hours, nullable=False),  # approved and valid
    sa.Column("billable_hours", _hours, nullable=False),  # of those, billable
    sa.Column("variance_hours", _hours, nullable=False),  # actual - planned
    sa.Column("planned_amount", _money),  # planned hours x planned bill rate, when planned
    sa.Column("actual_amount", _money, nullable=False),  # validated amounts
    sa.Column("computed_at", _ts, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("employee_id", "project_code", "week_start"),
)

plan_capacity = sa.Table(
    "plan_capacity",
    metadata,
    sa.Column("employee_id", sa.Text, nullable=False),
    sa.Column("week_start", sa.Date, nullable=False),
    sa.Column("legal_entity", sa.Text),  # the employee's
    sa.Column("capacity_hours", _hours, nullable=False),
    sa.Column("capacity_source", sa.Text, nullable=False),  # employee | default
    sa.Column("computed_at", _ts, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("employee_id", "week_start"),
)
