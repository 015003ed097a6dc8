-- The staging tables of stagepost's first release (git 9736e9d), frozen: the Alembic base.
-- Generated once from that commit's SQLAlchemy metadata; never edit (add a revision).

CREATE TABLE invoice_ledger (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    invoice_id TEXT NOT NULL,
    invoice_version INTEGER NOT NULL,
    reverses_external_id TEXT,
    legal_entity TEXT NOT NULL,
    project_code TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    issue_date DATE NOT NULL,
    due_date DATE,
    period TEXT NOT NULL,
    total_amount NUMERIC(18, 2) NOT NULL,
    line_count INTEGER NOT NULL,
    state TEXT NOT NULL,
    erp_message TEXT,
    batch_id TEXT,
    window_id TEXT NOT NULL,
    run_id TEXT,
    launched_by TEXT,
    planned_at TIMESTAMP WITH TIME ZONE NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE,
    settled_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (external_id)
);

CREATE TABLE invoice_ledger_lines (
    invoice_external_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    line_kind TEXT NOT NULL,
    description TEXT,
    quantity NUMERIC(14, 4) NOT NULL,
    unit_price NUMERIC(14, 4) NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    PRIMARY KEY (invoice_external_id, line_no)
);

CREATE TABLE land_employees (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    employee_id TEXT,
    employee_name TEXT,
    legal_entity TEXT,
    role TEXT,
    cost_rate NUMERIC(14, 4),
    currency TEXT,
    active BOOLEAN,
    raw_cost_rate TEXT,
    raw_active TEXT,
    PRIMARY KEY (load_id, row_no)
);

CREATE TABLE land_invoices (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    invoice_id TEXT,
    project_code TEXT,
    customer_id TEXT,
    currency TEXT,
    issue_date DATE,
    due_date DATE,
    status TEXT,
    line_no INTEGER,
    line_kind TEXT,
    description TEXT,
    quantity NUMERIC(14, 4),
    unit_price NUMERIC(14, 4),
    amount NUMERIC(18, 2),
    entry_ids TEXT,
    updated_at TIMESTAMP WITH TIME ZONE,
    raw_issue_date TEXT,
    raw_due_date TEXT,
    raw_line_no TEXT,
    raw_quantity TEXT,
    raw_unit_price TEXT,
    raw_amount TEXT,
    raw_updated_at TEXT,
    PRIMARY KEY (load_id, row_no)
);

CREATE TABLE land_project_tasks (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    task_code TEXT,
    task_name TEXT,
    billable BOOLEAN,
    raw_billable TEXT,
    PRIMARY KEY (load_id, row_no)
);

CREATE TABLE land_projects (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    project_name TEXT,
    customer_id TEXT,
    customer_name TEXT,
    legal_entity TEXT,
    currency TEXT,
    billing_method TEXT,
    status TEXT,
    start_date DATE,
    end_date DATE,
    updated_at TIMESTAMP WITH TIME ZONE,
    raw_start_date TEXT,
    raw_end_date TEXT,
    raw_updated_at TEXT,
    PRIMARY KEY (load_id, row_no)
);

CREATE TABLE land_rate_cards (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    employee_id TEXT,
    role TEXT,
    bill_rate NUMERIC(14, 4),
    currency TEXT,
    valid_from DATE,
    valid_to DATE,
    raw_bill_rate TEXT,
    raw_valid_from TEXT,
    raw_valid_to TEXT,
    PRIMARY KEY (load_id, row_no)
);

CREATE TABLE land_time_entries (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    entry_id TEXT,
    employee_id TEXT,
    employee_name TEXT,
    project_code TEXT,
    task_code TEXT,
    work_date DATE,
    hours NUMERIC(10, 4),
    billable BOOLEAN,
    bill_rate NUMERIC(14, 4),
    currency TEXT,
    approval_status TEXT,
    approved_at TIMESTAMP WITH TIME ZONE,
    approved_by TEXT,
    description TEXT,
    updated_at TIMESTAMP WITH TIME ZONE,
    deleted BOOLEAN,
    raw_work_date TEXT,
    raw_hours TEXT,
    raw_billable TEXT,
    raw_bill_rate TEXT,
    raw_approved_at TEXT,
    raw_updated_at TEXT,
    raw_deleted TEXT,
    PRIMARY KEY (load_id, row_no)
);

CREATE TABLE loads (
    load_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    source_name TEXT NOT NULL,
    file_name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    status TEXT NOT NULL,
    rows_read INTEGER,
    rows_new_version INTEGER,
    rows_unchanged INTEGER,
    rows_stale INTEGER,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    message TEXT,
    PRIMARY KEY (load_id)
);

CREATE TABLE posting_ledger (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    entry_version INTEGER NOT NULL,
    reverses_external_id TEXT,
    legal_entity TEXT NOT NULL,
    employee_id TEXT NOT NULL,
    project_code TEXT NOT NULL,
    task_code TEXT NOT NULL,
    work_date DATE NOT NULL,
    period TEXT NOT NULL,
    hours NUMERIC(10, 4) NOT NULL,
    bill_rate NUMERIC(14, 4) NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    currency TEXT NOT NULL,
    description TEXT,
    state TEXT NOT NULL,
    erp_message TEXT,
    batch_id TEXT,
    window_id TEXT NOT NULL,
    run_id TEXT,
    launched_by TEXT,
    planned_at TIMESTAMP WITH TIME ZONE NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE,
    settled_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (external_id)
);

CREATE TABLE posting_lock (
    lock_name TEXT NOT NULL,
    holder TEXT,
    window_id TEXT,
    acquired_at TIMESTAMP WITH TIME ZONE,
    heartbeat_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (lock_name)
);

CREATE TABLE posting_windows (
    window_id TEXT NOT NULL,
    run_id TEXT,
    launched_by TEXT,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT,
    override_reason TEXT,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    counts TEXT,
    PRIMARY KEY (window_id)
);

CREATE TABLE quarantine (
    dataset TEXT NOT NULL,
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    source_file TEXT,
    row_no INTEGER NOT NULL,
    rule_codes TEXT NOT NULL,
    messages TEXT NOT NULL,
    raw_values TEXT,
    first_seen TIMESTAMP WITH TIME ZONE NOT NULL,
    last_seen TIMESTAMP WITH TIME ZONE NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    status_by TEXT,
    status_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (dataset, row_key, version)
);

CREATE TABLE quarantine_events (
    dataset TEXT NOT NULL,
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    event TEXT NOT NULL,
    event_at TIMESTAMP WITH TIME ZONE NOT NULL,
    actor TEXT,
    reason TEXT
);

CREATE TABLE quarantine_violations (
    dataset TEXT NOT NULL,
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    rule_code TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (dataset, row_key, version, rule_code)
);

CREATE TABLE schema_meta (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key)
);

CREATE TABLE stg_employees (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    employee_id TEXT,
    employee_name TEXT,
    legal_entity TEXT,
    role TEXT,
    cost_rate NUMERIC(14, 4),
    currency TEXT,
    active BOOLEAN,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
);

CREATE TABLE stg_invoices (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    invoice_id TEXT,
    project_code TEXT,
    customer_id TEXT,
    currency TEXT,
    issue_date DATE,
    due_date DATE,
    status TEXT,
    line_no INTEGER,
    line_kind TEXT,
    description TEXT,
    quantity NUMERIC(14, 4),
    unit_price NUMERIC(14, 4),
    amount NUMERIC(18, 2),
    entry_ids TEXT,
    updated_at TIMESTAMP WITH TIME ZONE,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
);

CREATE TABLE stg_project_tasks (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    task_code TEXT,
    task_name TEXT,
    billable BOOLEAN,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
);

CREATE TABLE stg_projects (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    project_name TEXT,
    customer_id TEXT,
    customer_name TEXT,
    legal_entity TEXT,
    currency TEXT,
    billing_method TEXT,
    status TEXT,
    start_date DATE,
    end_date DATE,
    updated_at TIMESTAMP WITH TIME ZONE,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
);

CREATE TABLE stg_rate_cards (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    employee_id TEXT,
    role TEXT,
    bill_rate NUMERIC(14, 4),
    currency TEXT,
    valid_from DATE,
    valid_to DATE,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
);

CREATE TABLE stg_time_entries (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    entry_id TEXT,
    employee_id TEXT,
    employee_name TEXT,
    project_code TEXT,
    task_code TEXT,
    work_date DATE,
    hours NUMERIC(10, 4),
    billable BOOLEAN,
    bill_rate NUMERIC(14, 4),
    currency TEXT,
    approval_status TEXT,
    approved_at TIMESTAMP WITH TIME ZONE,
    approved_by TEXT,
    description TEXT,
    updated_at TIMESTAMP WITH TIME ZONE,
    deleted BOOLEAN,
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (row_key, version)
);

CREATE TABLE validated_invoice_lines (
    invoice_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    legal_entity TEXT NOT NULL,
    project_code TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    issue_date DATE NOT NULL,
    due_date DATE,
    status TEXT NOT NULL,
    line_kind TEXT NOT NULL,
    description TEXT,
    quantity NUMERIC(14, 4) NOT NULL,
    unit_price NUMERIC(14, 4) NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    entry_ids TEXT,
    validated_at TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE TABLE validated_time_entries (
    entry_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    legal_entity TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    employee_id TEXT NOT NULL,
    employee_name TEXT,
    project_code TEXT NOT NULL,
    task_code TEXT NOT NULL,
    work_date DATE NOT NULL,
    hours NUMERIC(10, 4) NOT NULL,
    billable BOOLEAN NOT NULL,
    bill_rate NUMERIC(14, 4) NOT NULL,
    rate_source TEXT NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    currency TEXT NOT NULL,
    description TEXT,
    approved_at TIMESTAMP WITH TIME ZONE,
    validated_at TIMESTAMP WITH TIME ZONE NOT NULL
);
