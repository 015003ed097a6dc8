"""Each ERP document is declared once (`connectors.erp.documents`): the interface tables, the
ledger tables, the Arrow schemas and the column lists all follow the declaration."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from connectors.erp import base, sql_interface
from connectors.erp.documents import (
    CUSTOMER,
    DOCUMENTS,
    EXPENSE_LINE,
    INVOICE,
    INVOICE_LINE,
    JOURNAL,
    JOURNAL_LINE,
    PROJECT,
    PROJECT_TASK,
    PROJECT_UPDATABLE,
    TIME_LINE,
    Document,
    Field,
    decimal,
    text,
)
from connectors.sql import to_arrow
from staging_models import ledger_tables

#: Each document and the tables that hold it (ERP interface, posting ledger).
HOLDERS = {
    TIME_LINE: (sql_interface.erp_time_lines, ledger_tables.posting_ledger),
    INVOICE: (sql_interface.erp_invoices, ledger_tables.invoice_ledger),
    INVOICE_LINE: (sql_interface.erp_invoice_lines, ledger_tables.invoice_ledger_lines),
    EXPENSE_LINE: (sql_interface.erp_expense_lines, ledger_tables.expense_ledger),
    JOURNAL: (sql_interface.erp_journals, ledger_tables.journal_ledger),
    JOURNAL_LINE: (sql_interface.erp_journal_lines, ledger_tables.journal_ledger_lines),
    # Set up from won CRM deals (posting.deal_setup, whose ledger is deal_setups by deal).
    CUSTOMER: (sql_interface.erp_customers,),
    PROJECT: (sql_interface.erp_projects,),
    PROJECT_TASK: (sql_interface.erp_tasks,),
}


def _shape(column: sa.Column) -> tuple:
    t = column.type
    return (
        type(t).__name__,
        getattr(t, "precision", None),
        getattr(t, "scale", None),
        column.nullable,
        column.primary_key,
    )


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.name)
def test_every_table_holding_a_document_has_its_fields_as_declared(doc: Document) -> None:
    """Same name, type (decimal digits too), nullability and key in the ERP's table and the
    ledger: a field changed in the declaration changes both."""
    declared = {f.name: _shape(f.column()) for f in doc.fields}
    for table in HOLDERS[doc]:
        held = {c.name: _shape(c) for c in table.columns if c.name in declared}
        assert held == declared, table.name
        assert tuple(c.name for c in table.primary_key.columns) == doc.key, table.name


def test_erp_frame_columns_are_the_declared_fields() -> None:
    assert base.TIME_LINE_COLUMNS == TIME_LINE.names
    assert base.INVOICE_COLUMNS == (*INVOICE.names, "status")  # the ERP's status, read back
    assert base.INVOICE_LINE_COLUMNS == INVOICE_LINE.names
    assert TIME_LINE.key == ("external_id",) and INVOICE_LINE.key == (
        "invoice_external_id",
        "line_no",
    )


def test_arrow_schema_keeps_decimals_exact_and_can_widen_them() -> None:
    schema = TIME_LINE.arrow_schema()
    assert schema.names == list(TIME_LINE.names)
    assert schema.field("hours").type == pa.decimal128(10, 4)
    assert schema.field("amount").type == pa.decimal128(18, 2)
    assert schema.field("entry_version").type == pa.int64()
    assert schema.field("work_date").type == pa.date32()
    wide = TIME_LINE.arrow_schema(decimal_precision=18)
    assert wide.field("hours").type == pa.decimal128(18, 4)
    assert wide.field("bill_rate").type == pa.decimal128(18, 4)
    # A value with more decimals than the field keeps is refused, never rounded.
    frame = pd.DataFrame({"quantity": [Decimal("1.23456")]})
    with pytest.raises(pa.ArrowInvalid):
        to_arrow(frame, pa.schema([INVOICE_LINE.arrow_schema().field("quantity")]))


def test_ledger_keeps_release_1_column_order() -> None:
    """The ledger puts the reversal link after the document's source and version."""
    assert ledger_tables.ledger_order(TIME_LINE)[:5] == (
        "external_id",
        "kind",
        "entry_id",
        "entry_version",
        "reverses_external_id",
    )
    assert [c.name for c in ledger_tables.invoice_ledger.columns][:5] == [
        "external_id",
        "kind",
        "invoice_id",
        "invoice_version",
        "reverses_external_id",
    ]


def test_a_bad_declaration_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="amount: a decimal field needs its precision and scale"):
        Field("amount", "decimal")
    with pytest.raises(ValueError, match="amount: a decimal field needs"):
        Field("amount", "decimal", precision=18)
    with pytest.raises(ValueError, match="note: precision and scale"):
        Field("note", "text", precision=3, scale=0)
    with pytest.raises(ValueError, match="id: a key field cannot be nullable"):
        text("id", key=True, nullable=True)
    with pytest.raises(ValueError, match="x: a field is declared twice"):
        Document("x", (text("a"), decimal("a", 18, 2)))
    with pytest.raises(ValueError, match="not a permutation"):
        TIME_LINE.columns(("external_id",))
    with pytest.raises(KeyError, match="no field 'nope'"):
        INVOICE.field("nope")


def test_what_a_deal_may_change_on_its_project_are_declared_fields() -> None:
    """The updatable fields are the project's, and never its key, customer or currency."""
    assert set(PROJECT_UPDATABLE) <= set(PROJECT.names)
    assert not {"project_code", "customer_id", "currency", "deal_id"} & set(PROJECT_UPDATABLE)
    assert CUSTOMER.key == ("customer_id",) and PROJECT_TASK.key == ("project_code", "task_code")
