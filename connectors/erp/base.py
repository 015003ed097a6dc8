"""The interface every ERP target implements (SQL interface tables, Tryton).

Posting talks to an ERP only through this class, so the posting window, the
ledger and reconciliation stay the same whatever the ERP. Frames in and out use
the column names documented on each method; money and hours are `Decimal`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import pyarrow as pa

from connectors.erp.documents import EXPENSE_LINE, INVOICE, INVOICE_LINE, TIME_LINE

#: Columns of a time line sent to the ERP (`post_time_lines`) and read back (`read_time_lines`):
#: the fields of `documents.TIME_LINE` (types and meaning there; money and hours `Decimal`).
TIME_LINE_COLUMNS: tuple[str, ...] = TIME_LINE.names

#: Columns of an invoice header (`post_invoices`; `read_invoices` adds the ERP's `status`).
INVOICE_COLUMNS: tuple[str, ...] = (*INVOICE.names, "status")

#: Columns of an invoice line (`post_invoices`).
INVOICE_LINE_COLUMNS: tuple[str, ...] = INVOICE_LINE.names

#: Columns of a journal's line read back (`read_journal_lines`): the journal's identity, then
#: the line's account, project, role (wip, revenue, unbilled, deferred), debit and credit.
JOURNAL_READ_COLUMNS: tuple[str, ...] = (
    "external_id",
    "kind",
    "journal_id",
    "journal_type",
    "legal_entity",
    "currency",
    "journal_date",
    "period",
    "line_no",
    "account_code",
    "project_code",
    "line_role",
    "debit",
    "credit",
)

#: Columns of an invoice's payment state (`read_invoice_payments`): the ERP's own invoice
#: number, its status (`posted`, `partially_paid`, `paid`, `cancelled`, or the ERP's own state
#: name such as Tryton's `validated`), and the amount still to pay (Decimal).
INVOICE_PAYMENT_COLUMNS: tuple[str, ...] = ("external_id", "erp_number", "status", "amount_open")

#: Statuses of `read_invoice_payments` under which an invoice no longer bills its entries.
CANCELLED_INVOICE_STATUSES: tuple[str, ...] = ("cancelled",)


#: Columns of an expense line (`post_expense_lines`, `read_expense_lines`): the fields of
#: `documents.EXPENSE_LINE`.
EXPENSE_LINE_COLUMNS: tuple[str, ...] = EXPENSE_LINE.names


class ErpError(Exception):
    """The ERP refused a whole request for a reason that will not pass by retrying."""


class ErpUnavailable(ErpError):
    """The ERP is down, slow or overloaded: retry with backoff, then stop the window cleanly."""


@dataclass
class PostResult:
    """What the ERP did with a batch: accepted external IDs and per-line rejections."""

    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # external_id -> ERP's message


class ErpTarget(ABC):
    """An ERP that stagepost posts into."""

    name: str

    @abstractmethod
    def ensure_master_data(
        self,
        customers: pd.DataFrame,  # customer_id, customer_name
        employees: pd.DataFrame,  # employee_id, employee_name, legal_entity
        projects: pd.DataFrame,  # project_code, project_name, customer_id, legal_entity, currency
        tasks: pd.DataFrame,  # project_code, task_code, task_name
    ) -> None:
        """Create what the ERP lacks; never change what it has (idempotent)."""

    def set_up_projects(
        self,
        customers: pd.DataFrame,  # the fields of documents.CUSTOMER
        projects: pd.DataFrame,  # the fields of documents.PROJECT
        tasks: pd.DataFrame,  # the fields of documents.PROJECT_TASK
    ) -> pd.DataFrame:
        """Project set-up from won deals (`posting.deal_setup`): create the customers, projects
        and tasks the ERP lacks, each looked up by its external ID first, and write the
        `documents.PROJECT_UPDATABLE` fields of the projects it holds already. Idempotent: a
        second call (after a kill, a retry) creates nothing twice.

        Returns project_code, erp_customer_id, erp_project_id (the ERP's own ids, as text) for
        every project given.
        """
        raise NotImplementedError(f"the {self.name} ERP target cannot set up projects")

    @abstractmethod
    def existing_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        """Which of these external IDs (time lines, invoices, expense lines) the ERP holds."""

    @abstractmethod
    def post_time_lines(self, lines: pd.DataFrame) -> PostResult:
        """Create the lines (columns `TIME_LINE_COLUMNS`); per-line rejections, not all-or-nothing."""

    @abstractmethod
    def post_invoices(self, invoices: pd.DataFrame, lines: pd.DataFrame) -> PostResult:
        """Create invoices (`INVOICE_COLUMNS`) with their lines (`INVOICE_LINE_COLUMNS`)."""

    @abstractmethod
    def post_expense_lines(self, lines: pd.DataFrame) -> PostResult:
        """Create expense lines (`EXPENSE_LINE_COLUMNS`); a reversal cancels the line it names."""

    @abstractmethod
    def read_expense_lines(self, date_from: date, date_to: date) -> pd.DataFrame:
        """Posted expense lines dated in the range (`EXPENSE_LINE_COLUMNS`), reversals included."""

    @abstractmethod
    def read_time_lines(self, date_from: date, date_to: date) -> pd.DataFrame:
        """Posted time lines with work_date in the range (`TIME_LINE_COLUMNS`), reversals included."""

    def read_time_lines_arrow(self, date_from: date, date_to: date) -> pd.DataFrame | pa.Table:
        """`read_time_lines` for the reconciliation, which reads a million lines: an Arrow
        table (no Python object per value, in no particular order) where the target can read
        one, else the frame."""
        return self.read_time_lines(date_from, date_to)

    @abstractmethod
    def read_invoices(self, date_from: date, date_to: date) -> pd.DataFrame:
        """Invoices issued in the range (`INVOICE_COLUMNS`) with the ERP's status."""

    def post_journals(self, journals: pd.DataFrame, lines: pd.DataFrame) -> PostResult:
        """Create balanced journals (`documents.JOURNAL`) with their lines (`JOURNAL_LINE`).
        Targets that take no journals (test fakes of older documents) refuse by default."""
        raise ErpError(f"ERP target {self.name} takes no journals")

    def read_journal_lines(self, date_from: date, date_to: date) -> pd.DataFrame:
        """Posted journal lines with journal_date in the range (`JOURNAL_READ_COLUMNS`)."""
        raise ErpError(f"ERP target {self.name} takes no journals")

    @abstractmethod
    def read_invoice_payments(self, external_ids: Sequence[str]) -> pd.DataFrame:
        """Payment state of these invoices (`INVOICE_PAYMENT_COLUMNS`), one row per invoice the
        ERP holds; an invoice cancelled in the ERP (credited in full, or cancelled there by
        hand) has status `cancelled`."""

    @abstractmethod
    def open_periods(
        self, legal_entities: Sequence[str], date_from: date, date_to: date
    ) -> pd.DataFrame:
        """One row per legal entity and month in range: legal_entity, period ("YYYY-MM"), is_open."""
