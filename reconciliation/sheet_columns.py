"""Which columns each sheet of the reconciliation workbook shows, in which order, under which
header: written for the people who work through it, not from the table's own layout.

Every exception sheet starts with why the row is there (the reasons, then the rules or the
fields that differ), then what identifies it, then only the figures that explain its class:
an ERP line unknown to staging has no PSA figures to show, a quarantined row no ERP ones.
"""

from __future__ import annotations

#: Display headers of the stored columns (`rec_lines`, `rec_invoices`, `rec_totals`). A header
#: of an hours column keeps "hours" in it (the writer's number format follows the column's own
#: name, so this is for people only).
HEADERS: dict[str, str] = {
    # why
    "reasons": "Reason",
    "rule_codes": "Rules broken",
    "rules_broken": "Number of rules broken",
    "differing_fields": "Fields that differ",
    # who and what
    "entry_id": "Entry",
    "invoice_id": "Invoice",
    "expense_id": "Expense",
    "category": "Category",
    "expense_date": "Expense date",
    "psa_rebill_amount": "PSA rebilled amount",
    "erp_rebill_amount": "ERP rebilled amount",
    "reimbursable": "Reimbursable",
    "receipt_ref": "Receipt",
    "total": "Total",
    "staging_valid": "Staging, valid",
    "ledger_confirmed": "Ledger, confirmed",
    "erp": "ERP",
    "variance": "Variance (staging - ERP)",
    "rebill_staging_valid": "Rebilled, staging",
    "rebill_erp": "Rebilled, ERP",
    "legal_entity": "Legal entity",
    "employee_id": "Employee",
    "employee_name": "Employee name",
    "project_code": "Project",
    "task_code": "Task",
    "customer_id": "Customer",
    "work_date": "Work date",
    "issue_date": "Issue date",
    "period": "ERP period",
    "currency": "Currency",
    "description": "Description",
    "source_file": "File",
    "row_no": "Row in file",
    # states
    "psa_version": "PSA version",
    "psa_state": "Staging state",
    "approval_status": "Approval status",
    "posted_version": "Posted version",
    "ledger_state": "Posting state",
    "erp_status": "ERP status",
    "approved_at": "Approved at (UTC)",
    "age_days": "Age (days)",
    "aging_bucket": "Age bucket (days)",
    # figures
    "psa_hours": "PSA hours",
    "psa_amount": "PSA amount",
    "staging_hours": "Staging valid hours",
    "staging_amount": "Staging valid amount",
    "ledger_hours": "Posted hours",
    "ledger_amount": "Posted amount",
    "erp_lines": "ERP lines",
    "erp_hours": "ERP hours",
    "erp_amount": "ERP amount",
    "erp_documents": "ERP documents",
    "hours_variance": "Hours variance (PSA - ERP)",
    "amount_variance": "Amount variance (PSA - ERP)",
    "lines": "Lines",
    "valid_lines": "Valid lines",
    "quarantined_lines": "Quarantined lines",
    "released_lines": "Released lines",
    "variance_psa_staging_hours": "Hours: PSA - staging valid",
    "variance_staging_erp_hours": "Hours: staging valid - ERP",
    "variance_ledger_erp_hours": "Hours: posted - ERP",
    "variance_psa_staging_amount": "Amount: PSA - staging valid",
    "variance_staging_erp_amount": "Amount: staging valid - ERP",
    "variance_ledger_erp_amount": "Amount: posted - ERP",
    "dimension": "Totals by",
    "member": "Member",
    "class": "Exception",
    # the summary's own tables (aging, sheet list)
    "bucket": "Days open",
    "hours": "Hours",
    "sheet": "Sheet",
    "source": "Exception class",
    "rows": "Rows",
}

#: How the invoice sheet names each invoice class.
INVOICE_CLASS_TITLES: dict[str, str] = {
    "erp_unknown_to_staging": "ERP unknown to staging",
    "not_yet_staged": "Not yet staged",
    "posted_missing_in_erp": "Posted, missing in ERP",
    "changed_in_psa_since_posting": "Changed in PSA since posting",
    "value_mismatch": "Value mismatch",
    "quarantined": "Quarantined",
    "billing_hold": "Billing hold",
    "ready_not_posted": "Ready, not posted",
    "draft": "Draft",
    "not_postable": "Not postable",
    "in_sync": "In sync",
}

_WHO = ("entry_id", "legal_entity", "employee_id", "employee_name", "project_code", "task_code")
_PSA = ("psa_version", "psa_hours", "psa_amount")
_POSTED = ("posted_version", "ledger_state", "ledger_hours", "ledger_amount")
_ERP = ("erp_lines", "erp_hours", "erp_amount")
_VARIANCE = ("hours_variance", "amount_variance")

#: The columns of each entry exception class's sheet, reason first.
CLASS_COLUMNS: dict[str, tuple[str, ...]] = {
    "erp_unknown_to_staging": (
        "reasons",
        *_WHO,
        "work_date",
        "period",
        "currency",
        *_ERP,
        *_POSTED[:2],
    ),
    "not_yet_staged": (
        "reasons",
        *_WHO,
        "work_date",
        "currency",
        "psa_state",
        *_PSA,
        *_POSTED[:2],
        "description",
    ),
    "posted_missing_in_erp": (
        "reasons",
        *_WHO,
        "work_date",
        "period",
        "currency",
        *_POSTED,
        *_ERP,
        *_VARIANCE,
    ),
    "changed_in_psa_since_posting": (
        "reasons",
        *_WHO,
        "work_date",
        "period",
        "currency",
        "psa_state",
        "approval_status",
        *_PSA,
        *_POSTED,
        *_ERP,
        *_VARIANCE,
    ),
    "value_mismatch": (
        "reasons",
        "differing_fields",
        *_WHO,
        "work_date",
        "period",
        "currency",
        "psa_hours",
        "erp_hours",
        "hours_variance",
        "psa_amount",
        "erp_amount",
        "amount_variance",
        "posted_version",
    ),
    "deleted_in_psa": (
        "reasons",
        *_WHO,
        "work_date",
        "currency",
        "psa_state",
        *_PSA,
        "description",
    ),
    "quarantined": (
        "reasons",
        "rule_codes",
        "rules_broken",
        *_WHO,
        "work_date",
        "currency",
        "approval_status",
        *_PSA,
        "description",
    ),
    "approved_not_posted": (
        "reasons",
        *_WHO,
        "work_date",
        "currency",
        "approved_at",
        "age_days",
        "aging_bucket",
        *_PSA,
        "ledger_state",
        "description",
    ),
    "quarantined_without_key": (
        "reasons",
        "rule_codes",
        "rules_broken",
        "source_file",
        "row_no",
        *_WHO,
        "work_date",
        "currency",
        "approval_status",
        "psa_hours",
        "psa_amount",
        "description",
    ),
}

#: The reason shown when a row's own reasons say nothing more than its class.
CLASS_REASONS: dict[str, str] = {
    "erp_unknown_to_staging": "in the ERP, unknown to the posting ledger",
    "not_yet_staged": "newer content not validated yet",
    "posted_missing_in_erp": "posted, missing in the ERP",
    "changed_in_psa_since_posting": "changed in the PSA since it was posted",
    "value_mismatch": "the ERP differs from the posted version",
    "deleted_in_psa": "deleted in the PSA, never posted",
    "quarantined": "quarantined",
    "approved_not_posted": "approved, waiting for a posting window",
    "quarantined_without_key": "quarantined: no entry id or no readable work date",
}

#: The invoice exceptions sheet, reason first.
INVOICE_COLUMNS: tuple[str, ...] = (
    "reasons",
    "class",
    "differing_fields",
    "rule_codes",
    "invoice_id",
    "legal_entity",
    "project_code",
    "customer_id",
    "issue_date",
    "currency",
    "lines",
    "valid_lines",
    "quarantined_lines",
    "released_lines",
    "psa_version",
    "psa_amount",
    "posted_version",
    "ledger_state",
    "ledger_amount",
    "erp_documents",
    "erp_status",
    "erp_amount",
    "amount_variance",
    "age_days",
)
#: The expense exceptions sheet, reason first.
EXPENSE_COLUMNS: tuple[str, ...] = (
    "reasons",
    "class",
    "differing_fields",
    "rule_codes",
    "expense_id",
    "legal_entity",
    "employee_id",
    "project_code",
    "category",
    "expense_date",
    "currency",
    "approval_status",
    "psa_state",
    "psa_version",
    "psa_amount",
    "psa_rebill_amount",
    "reimbursable",
    "receipt_ref",
    "posted_version",
    "ledger_state",
    "ledger_amount",
    "erp_lines",
    "erp_amount",
    "erp_rebill_amount",
    "amount_variance",
    "age_days",
)
#: Expense classes that are no exception (counted in the key figures).
NOT_EXPENSE_EXCEPTIONS = frozenset({"in_sync", "not_postable"})
#: The expense totals sheet: per legal entity and currency, one column per state.
EXPENSE_TOTAL_COLUMNS: tuple[str, ...] = (
    "legal_entity",
    "currency",
    "staging_valid",
    "ledger_confirmed",
    "erp",
    "variance",
    "rebill_staging_valid",
    "rebill_erp",
)

#: Invoice classes that are no exception: in sync, or drafts the PSA has not issued yet
#: (their "variance" would be their whole amount). Counted in the key figures.
NOT_INVOICE_EXCEPTIONS = frozenset({"in_sync", "draft"})
