"""The canonical PSA export format: datasets, their columns, types and keys.

Everything else (file parsing, DDL, versioning, contracts) is derived from these
specs, so a column is declared exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal[
    "text", "date", "timestamptz", "bool", "int", "hours", "rate", "money", "qty", "fx_rate"
]

#: Precision and scale of each decimal kind. Hours and money stay decimals end to end.
DECIMALS: dict[str, tuple[int, int]] = {
    "hours": (10, 4),  # hours as delivered, up to 4 decimals (minutes are 0.0167 h)
    "rate": (14, 4),  # rates per hour or unit
    "qty": (14, 4),  # invoice quantities
    "money": (18, 2),  # amounts, rounded to cents once
    "fx_rate": (18, 8),  # exchange rates: units of the `to` currency for one of `from`
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "text"
    required: bool = True  # must be present in the file header (values may still be empty)
    default: str | None = None  # canonical text used when the cell is empty
    #: In the content hash only when set (columns added after data was landed: an old row,
    #: re-landed, keeps its hash, so an upgrade versions nothing).
    hash_when_set: bool = False
    #: Filled by vendor mappings (approval policies, exact durations, the PSA's own amounts):
    #: optional in a canonical file and not part of its usual layout (`Dataset.layout`).
    vendor: bool = False

    @property
    def is_decimal(self) -> bool:
        return self.type in DECIMALS


@dataclass(frozen=True)
class Dataset:
    """One PSA export: its columns in file order, the key and what the content hash ignores."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    #: Key columns that may be empty (rate cards: blank employee or role means "anyone").
    key_nullable: frozenset[str] = field(default_factory=frozenset)
    #: Columns left out of the content hash: a change to them alone is not a new version.
    hash_exclude: frozenset[str] = field(default_factory=frozenset)
    #: Column -> another column: hashed only while the other is empty.
    hash_unless: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def layout(self) -> tuple[str, ...]:
        """The columns of a canonical export file (without the vendor-mapping extras)."""
        return tuple(c.name for c in self.columns if not c.vendor)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def landing_table(self) -> str:
        return f"land_{self.name}"

    @property
    def versions_table(self) -> str:
        return f"stg_{self.name}"


def _cols(*spec: str | tuple) -> tuple[Column, ...]:
    out = []
    for s in spec:
        if isinstance(s, str):
            out.append(Column(s))
        else:
            out.append(Column(*s))
    return tuple(out)


TIME_ENTRIES = Dataset(
    "time_entries",
    _cols(
        "entry_id",
        "employee_id",
        "employee_name",
        "project_code",
        "task_code",
        ("work_date", "date"),
        ("hours", "hours"),
        ("billable", "bool"),
        ("bill_rate", "rate"),
        "currency",
        "approval_status",
        ("approved_at", "timestamptz"),
        "approved_by",
        "description",
        ("updated_at", "timestamptz"),
        ("deleted", "bool", False, "false"),
        # Where approved_at came from when the PSA has no approval time (a mapping's approval
        # policy: `export_time`, `updated_at`, `column:<name>`, ...); empty: the PSA's own.
        ("approved_at_source", "text", False, None, False, True),
        # The exact duration when the PSA gives one: amounts are computed from it, not from
        # hours rounded to 4 places (02:14:54 x 75 is 168.63, not 168.62).
        ("duration_seconds", "int", False, None, True, True),
        # The PSA's own amount, checked against rate x hours (TE_AMOUNT_MISMATCH).
        ("source_amount", "money", False, None, True, True),
        # A fixed-price entry's amount: it is the amount, whatever the rate and hours.
        ("fixed_amount", "money", False, None, True, True),
    ),
    key=("entry_id",),
    # A renamed employee or a touched-but-unchanged entry is not a correction; nor is where an
    # inferred approval time came from.
    hash_exclude=frozenset({"employee_name", "updated_at", "approved_at_source"}),
    # An approval time a policy inferred (the export's time) moves with every re-export: only
    # the PSA's own approval time is content. The first inferred one stays on the version.
    hash_unless={"approved_at": "approved_at_source"},
)

EMPLOYEES = Dataset(
    "employees",
    _cols(
        "employee_id",
        "employee_name",
        "legal_entity",
        "role",
        ("cost_rate", "rate"),
        "currency",
        ("active", "bool"),
        # Hours a week the employee can work (optional; empty: STAGEPOST_WEEKLY_CAPACITY_HOURS).
        # Utilization in plan vs actual is billable actual hours over this capacity.
        ("weekly_capacity_hours", "hours", False, None, True),
    ),
    key=("employee_id",),
)

PROJECTS = Dataset(
    "projects",
    _cols(
        "project_code",
        "project_name",
        "customer_id",
        "customer_name",
        "legal_entity",
        "currency",
        "billing_method",
        "status",
        ("start_date", "date"),
        ("end_date", "date"),
        ("updated_at", "timestamptz"),
        # Who answers for the project (optional; a finance desk routing rule sends its
        # exceptions there, `project_manager` in STAGEPOST_DESK_ROUTING) and where to mail them.
        ("project_manager", "text", False, None, True),
        ("manager_email", "text", False, None, True),
        # A billing hold (optional): while set, posting windows hold the project's invoices
        # (docs/posting.md, *Billing holds*); reason and since-date are shown with them.
        ("billing_hold", "bool", False, None, True),
        ("billing_hold_reason", "text", False, None, True),
        ("billing_hold_since", "date", False, None, True),
        # Revenue recognition (issue 17, docs/revenue.md): how revenue is recognized (empty:
        # the billing method), the contract's value and its budget (hours, else cost).
        ("recognition_method", "text", False, None, True),
        ("contract_value", "money", False, None, True),
        ("budget_hours", "hours", False, None, True),
        ("budget_cost", "money", False, None, True),
    ),
    key=("project_code",),
    hash_exclude=frozenset({"updated_at"}),
)

PROJECT_TASKS = Dataset(
    "project_tasks",
    _cols("project_code", "task_code", "task_name", ("billable", "bool")),
    key=("project_code", "task_code"),
)

RATE_CARDS = Dataset(
    "rate_cards",
    _cols(
        "project_code",
        ("employee_id", "text"),
        ("role", "text"),
        ("bill_rate", "rate"),
        "currency",
        ("valid_from", "date"),
        ("valid_to", "date"),
    ),
    key=("project_code", "employee_id", "role", "valid_from"),
    key_nullable=frozenset({"employee_id", "role"}),
)

INVOICES = Dataset(
    "invoices",
    _cols(
        "invoice_id",
        "project_code",
        "customer_id",
        "currency",
        ("issue_date", "date"),
        ("due_date", "date"),
        "status",
        ("line_no", "int"),
        "line_kind",
        "description",
        ("quantity", "qty"),
        ("unit_price", "rate"),
        ("amount", "money"),
        "entry_ids",
        ("updated_at", "timestamptz"),
    ),
    key=("invoice_id", "line_no"),
    hash_exclude=frozenset({"updated_at"}),
)

#: Expenses a consultant claims against a project: posted as ERP expense lines (reimbursed to
#: the employee when `reimbursable`, rebilled to the customer at `markup_percent` when
#: `billable`). Versioned like time entries; `deleted` marks a deletion in the PSA.
EXPENSES = Dataset(
    "expenses",
    _cols(
        "expense_id",
        "employee_id",
        "project_code",
        "task_code",  # may be empty: an expense of the project as a whole
        ("expense_date", "date"),
        "category",
        ("amount", "money"),
        "currency",
        ("tax_amount", "money", True, "0"),
        ("billable", "bool"),
        ("reimbursable", "bool"),
        ("markup_percent", "rate", True, "0"),
        "receipt_ref",
        "approval_status",
        ("approved_at", "timestamptz"),
        "approved_by",
        "description",
        ("updated_at", "timestamptz"),
        ("deleted", "bool", False, "false"),
    ),
    key=("expense_id",),
    hash_exclude=frozenset({"updated_at"}),
)

#: A milestone project's milestones: revenue is recognized on acceptance (docs/revenue.md).
MILESTONES = Dataset(
    "milestones",
    _cols(
        "project_code",
        "milestone_id",
        ("description", "text", False),
        ("amount", "money"),
        ("accepted_on", "date", False),
        ("updated_at", "timestamptz", False),
    ),
    key=("project_code", "milestone_id"),
    hash_exclude=frozenset({"updated_at"}),
)

#: Resource plans (issue 21): who is planned on which project (and task) for how many hours,
#: one ISO week (`week_start`, a Monday) or a date range (`start_date` to `end_date`, the
#: hours spread over its working days; see docs/resource_plans.md).
ASSIGNMENTS = Dataset(
    "assignments",
    _cols(
        "assignment_id",
        "employee_id",
        "project_code",
        ("task_code", "text", False),  # blank: the project as a whole
        ("role", "text", False),
        ("week_start", "date", False),
        ("start_date", "date", False),
        ("end_date", "date", False),
        ("planned_hours", "hours"),
        ("bill_rate", "rate", False),  # the planned rate, in the project's currency (optional)
        ("updated_at", "timestamptz", False),
        ("deleted", "bool", False, "false"),
    ),
    key=("assignment_id",),
    hash_exclude=frozenset({"updated_at"}),
)

#: Won CRM deals become projects (`posting.deal_setup`): one row per deal and its current
#: stage. The deal's id is the project's code in the ERP and the PSA import file.
CRM_DEALS = Dataset(
    "crm_deals",
    _cols(
        "deal_id",
        ("deal_name", "text", False),  # the project's name (empty: the deal id)
        "stage",  # only `won` deals are set up; any other stage waits (not postable)
        ("won_at", "timestamptz"),
        "customer_id",
        "customer_name",
        "legal_entity",
        "currency",
        "billing_method",
        ("contract_value", "money"),
        ("budget_hours", "hours"),
        ("start_date", "date"),
        ("end_date", "date"),
        "project_manager",
        "template_code",
        ("updated_at", "timestamptz"),
    ),
    key=("deal_id",),
    hash_exclude=frozenset({"updated_at"}),
)

#: Project templates: the tasks a project set up from a deal starts with (template code ->
#: task codes and names). Master data, landed like the PSA's.
PROJECT_TEMPLATES = Dataset(
    "project_templates",
    _cols("template_code", "task_code", "task_name", ("billable", "bool")),
    key=("template_code", "task_code"),
)

#: Exchange rates (issue 21): one `from` -> `to` rate per day and source, master data used
#: wherever two currencies meet (intercompany pairs, group-currency totals); see
#: docs/intercompany.md for which date's rate applies.
FX_RATES = Dataset(
    "fx_rates",
    _cols(
        ("rate_date", "date"),
        "from_currency",
        "to_currency",
        ("rate", "fx_rate"),
        ("source", "text", False),
        ("updated_at", "timestamptz", False),
    ),
    key=("rate_date", "from_currency", "to_currency"),
    hash_exclude=frozenset({"updated_at"}),
)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        TIME_ENTRIES,
        EMPLOYEES,
        PROJECTS,
        PROJECT_TASKS,
        RATE_CARDS,
        INVOICES,
        EXPENSES,
        MILESTONES,
        ASSIGNMENTS,
        PROJECT_TEMPLATES,
        CRM_DEALS,
        FX_RATES,
    )
}

#: Allowed values, shared by the contracts and the documentation.
APPROVAL_STATUSES = ("draft", "submitted", "approved", "rejected")
BILLING_METHODS = ("time_and_materials", "fixed_fee", "milestone", "non_billable")
#: Revenue recognition methods (a project's `recognition_method`, else its billing method).
RECOGNITION_METHODS = BILLING_METHODS
PROJECT_STATUSES = ("open", "on_hold", "closed")
DEAL_WON = "won"
INVOICE_STATUSES = ("draft", "released", "cancelled")
INVOICE_LINE_KINDS = ("time", "milestone", "expense", "fixed_fee", "adjustment")
