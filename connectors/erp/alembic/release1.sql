-- The erp tables of stagepost's first release (git 9736e9d), frozen: the Alembic base.
-- Generated once from that commit's SQLAlchemy metadata; never edit (add a revision).

CREATE TABLE erp_customers (
    customer_id TEXT NOT NULL,
    customer_name TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (customer_id)
);

CREATE TABLE erp_employees (
    employee_id TEXT NOT NULL,
    employee_name TEXT,
    legal_entity TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (employee_id)
);

CREATE TABLE erp_invoice_lines (
    invoice_external_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    line_kind TEXT NOT NULL,
    description TEXT,
    quantity NUMERIC(14, 4) NOT NULL,
    unit_price NUMERIC(14, 4) NOT NULL,
    amount NUMERIC(18, 2) NOT NULL,
    PRIMARY KEY (invoice_external_id, line_no)
);

CREATE TABLE erp_invoices (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reverses_external_id TEXT,
    invoice_id TEXT NOT NULL,
    invoice_version INTEGER NOT NULL,
    legal_entity TEXT NOT NULL,
    project_code TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    issue_date DATE NOT NULL,
    due_date DATE,
    period TEXT NOT NULL,
    total_amount NUMERIC(18, 2) NOT NULL,
    status TEXT NOT NULL,
    posted_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    PRIMARY KEY (external_id)
);

CREATE TABLE erp_periods (
    legal_entity TEXT NOT NULL,
    period TEXT NOT NULL,
    is_open BOOLEAN NOT NULL,
    PRIMARY KEY (legal_entity, period)
);

CREATE TABLE erp_projects (
    project_code TEXT NOT NULL,
    project_name TEXT,
    customer_id TEXT,
    legal_entity TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (project_code)
);

CREATE TABLE erp_tasks (
    project_code TEXT NOT NULL,
    task_code TEXT NOT NULL,
    task_name TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (project_code, task_code)
);

CREATE TABLE erp_time_lines (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reverses_external_id TEXT,
    entry_id TEXT NOT NULL,
    entry_version INTEGER NOT NULL,
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
    posted_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
    PRIMARY KEY (external_id)
);
