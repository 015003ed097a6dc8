"""Tryton 8.2 as an ERP target, over JSON-RPC, with the `stagepost` Tryton module.

Mapping (see `trytond_stagepost` for the fields it adds):

- legal entity -> `company.company` (configured ids, else the company party's name);
- customer -> `party.party` with external ID `customer:<id>` and one address;
- employee -> `company.employee` (external ID = employee_id) on a party `employee:<id>`;
- project -> `project.work` of type project (external ID = project_code), task ->
  child work of type task (external ID `<project_code>::<task_code>`); both are
  invoiced by timesheet, carry a `list_price` and a timesheet work;
- time line -> `timesheet.line` on the task's timesheet work, `accounting_date` set
  when the line is booked into another month than its work date. A reversal is a
  line with the opposite (negative) duration and `reverses` set, which only the
  stagepost module allows: stock Tryton refuses negative durations;
- invoice -> `account.invoice`, see `tryton_invoices`;
- expense line -> a posted `account.move` of the expense journal, see `tryton_expenses`;
- journal (revenue, WIP accrual) -> `account.move` with its lines, posted, see `tryton_journals`.

Idempotency: every create is preceded by a `search_read` of the external IDs already
present; the `Unique` on `external_id` turns a concurrent duplicate into a refused
batch, after which the present IDs count as accepted. One bad line never loses the
good ones: a refused batch is split in halves until the refused lines are isolated,
and lines of a closed period cost one probe per company and date, not a bisection.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from . import tryton_expenses, tryton_invoices, tryton_journals
from .base import TIME_LINE_COLUMNS, ErpError, ErpTarget, PostResult
from .tryton_rpc import TrytonRpc, TrytonUserError
from .tryton_session import (
    CUSTOMER_PREFIX,
    EMPLOYEE_PREFIX,
    HELD_INVOICE_STATES,
    TASK_SEPARATOR,
    TrytonSession,
    accounting_dates,
    chunks,
    dates,
    decimals,
    document_identity,
    hours_from_durations,
    nested,
    optional_decimals,
    records,
    reject,
)

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
_TIME_LINE_FIELDS = [
    "external_id",
    "source_id",
    "source_version",
    "reverses.external_id",
    "employee.external_id",
    "company",
    "work",
    "date",
    "accounting_date",
    "duration",
    "description",
]


class TrytonTarget(ErpTarget):
    """Posts into a Tryton database through its JSON-RPC API."""

    name = "tryton"

    def __init__(
        self,
        url: str,
        database: str,
        user: str,
        password: str,
        *,
        legal_entities: Mapping[str, int] | None = None,
        product: int | str | None = None,
        batch_size: int = 500,
        timeout: float = 60.0,
        expense_clearing_account: int | None = None,
    ) -> None:
        """`legal_entities` maps legal entity codes to company ids (default: the company
        party's name); `product` is the service product (id or name, default: the first)
        put on works and invoice lines; `batch_size` rows go in one create or lookup;
        `expense_clearing_account` is the account company-paid expenses are credited to
        (see `tryton_expenses`)."""
        self.rpc = TrytonRpc(url, database, user, password, timeout=timeout)
        self.session = TrytonSession(
            self.rpc, batch_size=batch_size, legal_entities=legal_entities, product=product
        )
        self._clearing_account = expense_clearing_account
        self._expense_refs: tryton_expenses.ExpenseRefs | None = None

    def __repr__(self) -> str:
        return f"TrytonTarget({self.rpc!r})"

    def close(self) -> None:
        """Close the kept-alive HTTP connection (as `SqlInterfaceTarget.close` releases its)."""
        self.rpc.close()

    @property
    def batch_size(self) -> int:
        return self.session.batch_size

    def existing_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        """Time lines in any state; invoices and expense moves once posted (a draft is
        resumed on post)."""
        lines = self.session.lookup("timesheet.line", external_ids)
        invoices = self.session.lookup(
            "account.invoice", external_ids, domain=[("state", "in", sorted(HELD_INVOICE_STATES))]
        )
        moves = self.session.lookup("account.move", external_ids, domain=[("state", "=", "posted")])
        return set(lines) | set(invoices) | set(moves)

    # ------------------------------------------------------------------ master data

    def ensure_master_data(
        self,
        customers: pd.DataFrame,
        employees: pd.DataFrame,
        projects: pd.DataFrame,
        tasks: pd.DataFrame,
    ) -> None:
        """Create missing parties, employees, projects and tasks; never touch existing ones.

        Optional `list_price` columns on projects and tasks set the works' hourly price
        (what Tryton invoices and what `read_time_lines` values hours at; default: the
        project's, then the service product's list price). Unknown legal entities,
        customers or projects, or a project currency other than its company's, raise
        `ErpError` before anything is created.
        """
        session, refs = self.session, self.session.refs
        customers = customers.drop_duplicates("customer_id")
        employees = employees.drop_duplicates("employee_id")
        projects = projects.drop_duplicates("project_code")
        tasks = tasks.drop_duplicates(["project_code", "task_code"])
        self._check_master_data(customers, employees, projects, tasks)

        customer_key = CUSTOMER_PREFIX + customers["customer_id"].astype(str)
        session.create_missing(
            "party.party",
            pd.DataFrame(
                {
                    "external_id": customer_key,
                    "name": customers["customer_name"],
                    "addresses": [[["create", [{}]]]] * len(customers),
                }
            ),
        )
        employee_key = EMPLOYEE_PREFIX + employees["employee_id"].astype(str)
        employee_parties = session.create_missing(
            "party.party",
            pd.DataFrame({"external_id": employee_key, "name": employees["employee_name"]}),
        )
        session.create_missing(
            "company.employee",
            pd.DataFrame(
                {
                    "external_id": employees["employee_id"].astype(str),
                    "party": employee_key.map(employee_parties),
                    "company": employees["legal_entity"].map(refs.company_of),
                }
            ),
        )
        common = {
            "project_invoice_method": "timesheet",
            "product": refs.product,
            "timesheet_available": True,
        }
        project_customer = CUSTOMER_PREFIX + projects["customer_id"].astype(str)
        session.create_missing(
            "project.work",
            pd.DataFrame(
                {
                    "external_id": projects["project_code"].astype(str),
                    "name": projects["project_name"],
                    "type": "project",
                    "company": projects["legal_entity"].map(refs.company_of),
                    "party": project_customer.map(session.ids("party.party", project_customer)),
                    "list_price": optional_decimals(projects, "list_price").where(
                        lambda s: s.notna(), refs.list_price
                    ),
                    **common,
                }
            ),
        )
        parent_key = tasks["project_code"].astype(str)
        parents = pd.DataFrame.from_dict(  # columns named: no tasks must not mean no columns
            session.lookup("project.work", parent_key, ["company", "list_price"]),
            orient="index",
            columns=["id", "company", "list_price"],
        )
        session.create_missing(
            "project.work",
            pd.DataFrame(
                {
                    "external_id": parent_key + TASK_SEPARATOR + tasks["task_code"].astype(str),
                    "name": tasks["task_name"],
                    "type": "task",
                    "parent": parent_key.map(parents["id"]),
                    "company": parent_key.map(parents["company"]),
                    "list_price": optional_decimals(tasks, "list_price").where(
                        lambda s: s.notna(), parent_key.map(parents["list_price"])
                    ),
                    **common,
                }
            ),
        )
        logger.info("tryton master data ensured (%d projects, %d tasks)", len(projects), len(tasks))

    def set_up_projects(
        self, customers: pd.DataFrame, projects: pd.DataFrame, tasks: pd.DataFrame
    ) -> pd.DataFrame:
        """Party, project work and task works created when missing (`ensure_master_data`:
        looked up by external ID first), then the deal's terms written on the project works
        in one `write` (budget hours as `effort_duration`)."""
        no_employees = pd.DataFrame(columns=["employee_id", "employee_name", "legal_entity"])
        self.ensure_master_data(customers, no_employees, projects, tasks)
        session, refs = self.session, self.session.refs
        codes = projects["project_code"].astype(str)
        works = session.lookup("project.work", codes, ["company"])
        moved = codes[
            codes.map(lambda c: works[c]["company"]).ne(
                projects["legal_entity"].map(refs.company_of)
            )
        ]
        if len(moved):
            raise ErpError(
                "Tryton keeps a project in the company it was set up in; these moved to "
                f"another legal entity: {sorted(moved)}"
            )
        budget = optional_decimals(projects, "budget_hours")
        values = pd.DataFrame(
            {
                "name": projects["project_name"],
                "billing_method": projects["billing_method"],
                "start_date": dates(projects["start_date"]),
                "end_date": dates(projects["end_date"]),
                # Exact: hours keep 4 decimals, a microsecond is far below that.
                "effort_duration": budget.map(
                    lambda h: (
                        None if h is None else dt.timedelta(microseconds=int(h * 3_600_000_000))
                    )
                ),
                "contract_value": optional_decimals(projects, "contract_value"),
                "project_manager": projects["project_manager"],
                "deal_id": projects["deal_id"],
            }
        )
        args: list[Any] = []
        for code, row in zip(codes, records(values), strict=True):
            args += [[works[code]["id"]], row]
        if args:
            self.rpc.model("project.work", "write", *args)
        customer_ids = session.ids(
            "party.party", CUSTOMER_PREFIX + projects["customer_id"].astype(str)
        )
        return pd.DataFrame(
            {
                "project_code": codes,
                "erp_customer_id": (CUSTOMER_PREFIX + projects["customer_id"].astype(str))
                .map(customer_ids)
                .astype(str),
                "erp_project_id": codes.map(lambda c: str(works[c]["id"])),
            }
        )

    def _check_master_data(
        self,
        customers: pd.DataFrame,
        employees: pd.DataFrame,
        projects: pd.DataFrame,
        tasks: pd.DataFrame,
    ) -> None:
        """Refuse, before creating anything, what Tryton could not hold."""
        refs = self.session.refs
        unknown = sorted(
            set(employees["legal_entity"]).union(projects["legal_entity"]) - set(refs.company_of)
        )
        if unknown:
            raise ErpError(f"no Tryton company is mapped to legal entities {unknown}")
        if "currency" in projects:
            expected = (
                projects["legal_entity"].map(refs.company_of).map(refs.currency_code_of_company)
            )
            wrong = projects["currency"].notna() & projects["currency"].ne(expected)
            if wrong.any():
                raise ErpError(
                    "Tryton projects are in their company's currency; these are not: "
                    f"{sorted(projects.loc[wrong, 'project_code'])}"
                )
        for what, needed, given, prefix, model in (
            (
                "customers",
                projects["customer_id"],
                customers["customer_id"],
                CUSTOMER_PREFIX,
                "party.party",
            ),
            ("projects", tasks["project_code"], projects["project_code"], "", "project.work"),
        ):
            outside = sorted(set(needed.astype(str)) - set(given.astype(str)))
            known = self.session.lookup(model, [prefix + k for k in outside])
            missing = [k for k in outside if prefix + k not in known]
            if missing:
                raise ErpError(f"{what} unknown to the frames and to Tryton: {missing}")

    # ------------------------------------------------------------------ periods

    def open_periods(
        self, legal_entities: Sequence[str], date_from: dt.date, date_to: dt.date
    ) -> pd.DataFrame:
        """A month is open when Tryton's standard period holding its first day is open
        (a month without a Tryton period is not open)."""
        refs = self.session.refs
        unknown = sorted(set(legal_entities) - set(refs.company_of))
        if unknown:
            raise ErpError(f"no Tryton company is mapped to legal entities {unknown}")
        grid = pd.MultiIndex.from_product(
            [list(dict.fromkeys(legal_entities)), pd.period_range(date_from, date_to, freq="M")],
            names=["legal_entity", "month"],
        ).to_frame(index=False)
        state = self.session.period_state(
            grid["legal_entity"].map(refs.company_of), grid["month"].dt.start_time
        )
        return pd.DataFrame(
            {
                "legal_entity": grid["legal_entity"],
                "period": grid["month"].dt.strftime("%Y-%m"),
                "is_open": state.eq("open"),
            }
        )

    # ------------------------------------------------------------------ time lines

    def post_time_lines(self, lines: pd.DataFrame) -> PostResult:
        """Create timesheet lines; reversals after the lines they cancel."""
        result = PostResult()
        frame = lines[lines["external_id"].notna()].drop_duplicates("external_id")
        if frame.empty:
            return result
        present = frame["external_id"].isin(
            self.session.lookup("timesheet.line", frame["external_id"])
        )
        result.accepted.extend(frame.loc[present, "external_id"])
        frame = frame[~present]
        is_reversal = frame["kind"].eq("reversal")
        self._post_time_frame(frame[~is_reversal], result)
        self._post_time_frame(frame[is_reversal], result)
        return result

    def _post_time_frame(self, frame: pd.DataFrame, result: PostResult) -> None:
        if frame.empty:
            return
        session, refs = self.session, self.session.refs
        company = frame["legal_entity"].map(refs.company_of)
        employee_key = frame["employee_id"].astype(str)
        employees = pd.DataFrame.from_dict(
            session.lookup("company.employee", employee_key, ["company"]),
            orient="index",
            columns=["id", "company"],
        )
        work_key = (
            frame["project_code"]
            .astype(str)
            .where(
                frame["task_code"].isna(),
                frame["project_code"].astype(str) + TASK_SEPARATOR + frame["task_code"].astype(str),
            )
        )
        works = pd.DataFrame.from_dict(
            session.lookup("project.work", work_key, ["company", "timesheet_works"]),
            orient="index",
            columns=["id", "company", "timesheet_works"],
        )
        employee = employee_key.map(employees["id"])
        timesheet_work = work_key.map(
            works["timesheet_works"].map(lambda ws: ws[0] if ws else None)
        )
        hours = decimals(frame["hours"])
        reversal = frame["kind"].eq("reversal")
        reverses = frame["reverses_external_id"].map(
            session.ids("timesheet.line", frame.loc[reversal, "reverses_external_id"])
        )
        negative = hours.map(lambda h: h < 0, na_action="ignore").astype("boolean").fillna(False)
        problems = pd.Series(
            np.select(
                [
                    company.isna(),
                    employee.isna(),
                    ~work_key.isin(works.index),
                    timesheet_work.isna(),
                    employee_key.map(employees["company"]).ne(company)
                    | work_key.map(works["company"]).ne(company),
                    hours.isna(),
                    negative & ~reversal,
                    reversal & reverses.isna(),
                ],
                [
                    "no Tryton company for legal entity " + frame["legal_entity"].astype(str),
                    "employee " + employee_key + " is not in Tryton",
                    "project/task " + work_key + " is not in Tryton",
                    "project/task " + work_key + " has no timesheet work in Tryton",
                    "employee, work and legal entity belong to different Tryton companies",
                    "no hours",
                    "negative hours are only allowed on a reversal",
                    "the reversed line "
                    + frame["reverses_external_id"].astype(str)
                    + " is not in Tryton",
                ],
                default="",
            ),
            index=frame.index,
        )
        good = reject(result, problems, frame["external_id"])
        if not good.any():
            return
        frame, company, hours = frame[good], company[good].astype("int64"), hours[good]
        work_date = dates(frame["work_date"])
        accounting_date = accounting_dates(frame["period"], frame["work_date"])
        description = frame["description"].astype(object).where(frame["description"].notna(), "")
        description = description.where(
            ~frame["kind"].eq("reversal"),
            "Reversal of "
            + frame["reverses_external_id"].astype(str)
            + " "
            + description.astype(str),
        ).str.strip()
        payload = pd.DataFrame(
            {
                "external_id": frame["external_id"],
                "company": company,
                "employee": employee[good].astype("int64"),
                "work": timesheet_work[good].astype("int64"),
                "date": work_date,
                "duration": pd.to_timedelta((hours * 3600).astype(float), unit="s"),
                "description": description,
                "source_id": frame["entry_id"].map(str, na_action="ignore"),
                "source_version": pd.to_numeric(frame["entry_version"], errors="coerce").astype(
                    "Int64"
                ),
                "accounting_date": accounting_date,
                "reverses": reverses[good].astype("Int64"),
            }
        )
        booked = accounting_date.where(accounting_date.notna(), work_date)
        not_open = session.period_state(company, pd.to_datetime(booked)).ne("open")
        normal = records(payload[~not_open])
        for _, group in payload[not_open].groupby([company[not_open], booked[not_open]]):
            normal.extend(self._probe_closed(records(group), result))
        session.create_isolated("timesheet.line", normal, result)

    def _probe_closed(
        self, group: list[dict[str, Any]], result: PostResult
    ) -> list[dict[str, Any]]:
        """Send one line of a company and date whose period is not open; Tryton's refusal
        holds for the whole group, so a closed month costs a call per day, not a bisection.
        Returns the lines still to create (all but the probe if the period was reopened)."""
        probe, rest = group[0], group[1:]
        try:
            self.rpc.model("timesheet.line", "create", [probe])
        except TrytonUserError as exc:
            if not self.session.lookup("timesheet.line", [probe["external_id"]]):
                result.rejected.update((r["external_id"], exc.message) for r in group)
                return []
        result.accepted.append(probe["external_id"])
        return rest

    def read_time_lines(self, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
        """Lines stagepost posted (with an external ID), work date in range.

        `bill_rate` is the work's `list_price` and `amount` = hours x list_price rounded to
        cents half-even (Tryton's rounding), as Tryton values and invoices time: a
        per-person rate from a rate card is not something a timesheet line carries.
        """
        refs = self.session.refs
        rows: list[dict[str, Any]] = []
        page = 10_000
        while True:
            batch = self.rpc.model(
                "timesheet.line",
                "search_read",
                [("date", ">=", date_from), ("date", "<=", date_to), ("external_id", "!=", None)],
                len(rows),
                page,
                [("id", "ASC")],
                _TIME_LINE_FIELDS,
            )
            rows.extend(batch)
            if len(batch) < page:
                break
        if not rows:
            return pd.DataFrame(columns=list(TIME_LINE_COLUMNS))
        raw = pd.DataFrame(rows)
        works = self._works_by_timesheet_work(raw["work"].unique().tolist())
        hours = hours_from_durations(raw["duration"])
        price = raw["work"].map(works["list_price"])
        amount = pd.Series(None, index=raw.index, dtype=object)
        priced = price.notna()
        amount[priced] = (hours[priced] * price[priced]).map(
            lambda v: v.quantize(CENT, ROUND_HALF_EVEN)
        )
        out = pd.DataFrame(
            {
                **document_identity(
                    raw, refs.legal_entity_of, "date", ("entry_id", "entry_version")
                ),
                "employee_id": nested(raw["employee."], "external_id"),
                "project_code": raw["work"].map(works["project_code"]),
                "task_code": raw["work"].map(works["task_code"]),
                "work_date": raw["date"],
                "hours": hours,
                "bill_rate": price,
                "amount": amount,
                "currency": raw["company"].map(refs.currency_code_of_company),
                "description": raw["description"],
            }
        )
        return out[list(TIME_LINE_COLUMNS)]

    def _works_by_timesheet_work(self, timesheet_works: list[int]) -> pd.DataFrame:
        """Indexed by timesheet.work id: project_code, task_code and list_price.

        One row per project or task (a few hundred), not per time line."""
        found: dict[int, dict[str, Any]] = {}
        for chunk in chunks(sorted(timesheet_works), self.batch_size):
            for work in self.rpc.model(
                "project.work",
                "search_read",
                [("timesheet_works", "in", list(chunk))],
                0,
                None,
                None,
                ["external_id", "type", "parent.external_id", "list_price", "timesheet_works"],
            ):
                ext = work["external_id"] or ""
                parent = (work["parent."] or {}).get("external_id") or ""
                if work["type"] == "task" and parent and ext.startswith(parent + TASK_SEPARATOR):
                    codes = (parent, ext[len(parent) + len(TASK_SEPARATOR) :])
                else:
                    codes = (ext or None, None)
                for timesheet_work in work["timesheet_works"]:
                    found[timesheet_work] = {
                        "project_code": codes[0],
                        "task_code": codes[1],
                        "list_price": work["list_price"],
                    }
        return pd.DataFrame.from_dict(
            found, orient="index", columns=["project_code", "task_code", "list_price"]
        )

    # ------------------------------------------------------------------ invoices

    def post_invoices(self, invoices: pd.DataFrame, lines: pd.DataFrame) -> PostResult:
        """Create and post invoices; a reversal is a posted full credit note (see
        `tryton_invoices`). An invoice Tryton refuses to post is deleted and rejected."""
        return tryton_invoices.post_invoices(self.session, invoices, lines)

    # ------------------------------------------------------------------ journals

    def post_journals(self, journals: pd.DataFrame, lines: pd.DataFrame) -> PostResult:
        """Revenue journals and accruals as posted `account.move`s (see `tryton_journals`)."""
        return tryton_journals.post_journals(self.session, journals, lines)

    def read_journal_lines(self, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
        return tryton_journals.read_journal_lines(self.session, date_from, date_to)

    def read_invoices(self, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
        """Invoices stagepost posted, issue date in range, Tryton's state as status."""
        return tryton_invoices.read_invoices(self.session, date_from, date_to)

    # ------------------------------------------------------------------ expenses

    @property
    def expense_refs(self) -> tryton_expenses.ExpenseRefs:
        if self._expense_refs is None:
            self._expense_refs = tryton_expenses.load_refs(self.session, self._clearing_account)
        return self._expense_refs

    def post_expense_lines(self, lines: pd.DataFrame) -> PostResult:
        """Create and post a journal entry per expense line; a reversal is a posted entry with
        debit and credit swapped (see `tryton_expenses`)."""
        return tryton_expenses.post_expense_lines(self.session, self.expense_refs, lines)

    def read_expense_lines(self, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
        """Expense entries stagepost posted, expense date in range."""
        return tryton_expenses.read_expense_lines(
            self.session, self.expense_refs, date_from, date_to
        )

    def read_invoice_payments(self, external_ids: Sequence[str]) -> pd.DataFrame:
        """Tryton's number, state and amount to pay of these invoices."""
        return tryton_invoices.read_invoice_payments(self.session, external_ids)
