"""Mapping files the mapping tests feed to the compiler (tests/test_mapping.py); the SQL
snapshot test (tests/test_sql_snapshots.py) compiles the same texts, so each is written once."""

from __future__ import annotations

from connectors.sources.mapping import MAPPINGS_DIR

#: Name -> mapping TOML text.
MAPPING_EXAMPLES: dict[str, str] = {
    "transforms": """
        [time_entries]
        entry_id = "ID"
        employee_id = { source = "Person", transform = "upper" }
        employee_name = { concat = ["Last", "First"], separator = ", " }
        work_date = { source = "Day", transform = "date", format = ["%d.%m.%Y", "%d %b %Y"] }
        hours = { source = "Duration", transform = "hours" }
        approved_at = { source = "Approved", transform = "timestamp", timezone = "Europe/Berlin", format = "%d.%m.%Y %H:%M" }
        updated_at = { source = "Changed", transform = "timestamp", timezone = "America/New_York" }
        approval_status = { source = "State", values = { "Freigegeben" = "approved", "Offen" = "submitted", "Abgelehnt" = "rejected" }, unmapped = "null" }
        billable = { source = "Billable", values = { ja = true, nein = false } }
        currency = { source = "Cur", transform = "extract", pattern = '\\(([A-Z]{3})\\)', default = "EUR" }
        task_code = { coalesce = ["Task", "Activity"] }
        project_code = { constant = "P-1" }
        deleted = { constant = false }
    """,
    "date_only_timestamp": '[time_entries]\nentry_id = "ID"\n'
    'approved_at = { source = "A", transform = "timestamp", timezone = "America/New_York" }\n',
    "tokyo": """
        [time_entries]
        entry_id = "ID"
        employee_id = { constant = "E1" }
        project_code = { constant = "P1" }
        task_code = { constant = "T1" }
        work_date = { source = "Day", transform = "date", format = "%d/%m/%Y" }
        hours = "Hours"
        billable = { constant = true }
        bill_rate = { constant = "150.00" }
        currency = { constant = "USD" }
        approval_status = { constant = "approved" }
        approved_at = { source = "Approved", transform = "timestamp", timezone = "Asia/Tokyo", format = "%d/%m/%Y %H:%M" }
    """,
    "day_first": '[time_entries]\nentry_id = "ID"\n'
    'work_date = { source = "Date", transform = "date", format = "%d/%m/%Y" }\n',
    "month_first_timestamp": '[time_entries]\nentry_id = "ID"\napproved_at = { source = "At", '
    'transform = "timestamp", timezone = "UTC", format = "%m/%d/%Y %H:%M" }\n',
    "decimal_comma": '[time_entries]\nentry_id = "ID"\nhours = { source = "h", transform = '
    '"hours" }\nbill_rate = "Rate"\n',
    "ambiguous_header": '[time_entries]\nentry_id = "ID"\ndescription = "Notes"\n',
    "harvest_strict": (MAPPINGS_DIR / "harvest.toml")
    .read_text()
    .replace(
        "values = { Yes = true, No = false }",
        'values = { Yes = true, No = false }, unmapped = "error"',
    ),
}
