"""Tryton 8.2 as an ERP target, over JSON-RPC, with the `stagepost` Tryton module.

Mapping (see `trytond_stagepost` for the fields it adds):

- legal entity -> `company.company` (configured ids, else the company party's name);
- customer -> `party.party` with external ID `customer:<id>` and one address;
- employee -> `company.employee` (external ID = employee_id) on a party `employee:<id>`;
- project -> `project.work` of type project (external ID = project_code), task ->
  child work of type task (external ID `<project_code>::<task_code>`); both are
  invoiced by timesheet, carry a `list_price` and a timesheet work;
- time line -> `timesheet.line` on the task's timesheet work; a reversal is a line
  with the opposite (negative) duration and `reverses` set, which only the stagepost
  module allows: stock Tryton refuses negative durations;
- invoice -> `account.invoice` (type out) posted with its `post` button; a reversal
  is a full credit note made by Tryton's `account.invoice.credit` wizard, then posted.

Idempotency: every create is preceded by a `search_read` of the external IDs already
present; the SQL `Unique` on `external_id` turns a concurrent duplicate into a refused
batch, after which the present IDs count as accepted. One bad line never loses the
good ones: a refused batch is split in halves until the refused lines are isolated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from .base import (
    INVOICE_COLUMNS,
    TIME_LINE_COLUMNS,
    ErpError,
    ErpTarget,
    PostResult,
)
from .tryton_rpc import TrytonRpc, TrytonUserError, TrytonUserWarning

logger = logging.getLogger(__name__)

CUSTOMER_PREFIX = "customer:"
EMPLOYEE_PREFIX = "employee:"
TASK_SEPARATOR = "::"
CENT = Decimal("0.01")
#: Invoice states in which Tryton "holds" an invoice; drafts are resumed, not trusted.
_HELD_INVOICE_STATES = frozenset({"posted", "paid", "cancelled"})
_PAYMENT_TERM_WARNING = ".invoice_payment_term"


@dataclass(frozen=True)
class _Refs:
    """Ids every posting needs, read once per target."""

    company_of: dict[str, int]  # legal entity -> company id
    legal_entity_of: dict[int, str]
    currency_code_of_company: dict[int, str]
    currency_id: dict[str, int]
    product: int
    unit: int
    revenue_account: int
    list_price: Decimal | None
    journal: int
    receivable_of_company: dict[int, int]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with pandas' missing values turned into None (JSON null)."""
    frame = frame.astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def _dates(series: pd.Series) -> pd.Series:
    """A column of `datetime.date` (or None) whatever pandas made of it."""
    converted = pd.to_datetime(series, errors="coerce")
    return pd.Series(
        np.where(converted.notna(), converted.dt.date, None), index=series.index, dtype=object
    )


def _month(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, errors="coerce").dt.strftime("%Y-%m")


def _decimal(series: pd.Series) -> pd.Series:
    return series.map(
        lambda v: v if isinstance(v, Decimal) else Decimal(str(v)), na_action="ignore"
    )


def _hours_from_durations(series: pd.Series) -> pd.Series:
    """Tryton durations (timedelta) as Decimal hours, exact to the millisecond."""
    millis = (pd.to_timedelta(series).dt.total_seconds() * 1000).round().astype("int64")
    return millis.map(
        lambda ms: (Decimal(int(ms)) / Decimal(3_600_000)).quantize(Decimal("0.000001"))
    )


def _reject(result: PostResult, external_ids: Iterable[str], messages: Iterable[str]) -> None:
    result.rejected.update(zip(external_ids, messages, strict=True))


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
    ) -> None:
        """`legal_entities` maps legal entity codes to company ids (default: by party name);
        `product` is the service product (id or name) on works and invoice lines."""
        self.rpc = TrytonRpc(url, database, user, password, timeout=timeout)
        self.batch_size = batch_size
        self._legal_entities = dict(legal_entities) if legal_entities else None
        self._product = product
        self._refs_cache: _Refs | None = None

    def __repr__(self) -> str:
        return f"TrytonTarget({self.rpc!r})"

    # ------------------------------------------------------------------ reference data

    @property
    def refs(self) -> _Refs:
        if self._refs_cache is None:
            self._refs_cache = self._load_refs()
        return self._refs_cache

    def _load_refs(self) -> _Refs:
        rpc = self.rpc
        companies = rpc.model(
            "company.company", "search_read", [], 0, None, None, ["party.name", "currency.code"]
        )
        by_id = {c["id"]: c for c in companies}
        if self._legal_entities is not None:
            unknown = sorted(le for le, cid in self._legal_entities.items() if cid not in by_id)
            if unknown:
                raise ErpError(f"Tryton has no company for legal entities {unknown}")
            company_of = dict(self._legal_entities)
        else:
            company_of = {c["party."]["name"]: c["id"] for c in companies}
        currencies = rpc.model("currency.currency", "search_read", [], 0, None, None, ["code"])
        product = self._find_product()
        journals = rpc.model("account.journal", "search", [("type", "=", "revenue")], 0, 1, None)
        if not journals:
            raise ErpError("Tryton has no revenue journal")
        receivable = {}
        for cid in by_id:
            config = rpc.model(
                "account.configuration",
                "read",
                [1],
                ["default_account_receivable"],
                context={"company": cid},
            )
            receivable[cid] = config[0]["default_account_receivable"] if config else None
        return _Refs(
            company_of=company_of,
            legal_entity_of={cid: le for le, cid in company_of.items()},
            currency_code_of_company={c["id"]: c["currency."]["code"] for c in companies},
            currency_id={c["code"]: c["id"] for c in currencies},
            product=product["id"],
            unit=product["default_uom"],
            revenue_account=(product.get("account_category.") or {}).get("account_revenue"),
            list_price=(product.get("template.") or {}).get("list_price"),
            journal=journals[0],
            receivable_of_company=receivable,
        )

    def _find_product(self) -> dict[str, Any]:
        if isinstance(self._product, int):
            domain: list[Any] = [("id", "=", self._product)]
        elif isinstance(self._product, str):
            domain = [("name", "=", self._product)]
        else:
            domain = [("type", "=", "service")]
        found = self.rpc.model(
            "product.product",
            "search_read",
            domain,
            0,
            1,
            [("id", "ASC")],
            ["default_uom", "template.list_price", "account_category.account_revenue"],
        )
        if not found:
            raise ErpError(f"Tryton has no service product {self._product or ''}".strip())
        return found[0]

    # ------------------------------------------------------------------ lookups

    def _lookup(
        self,
        model: str,
        external_ids: Iterable[Any],
        fields: Sequence[str] = (),
        domain: Sequence[Any] = (),
    ) -> dict[str, dict[str, Any]]:
        """external_id -> record for those present, in batches of `batch_size` keys."""
        keys = sorted({k for k in external_ids if isinstance(k, str) and k})
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(keys, self.batch_size):
            rows = self.rpc.model(
                model,
                "search_read",
                [("external_id", "in", list(chunk)), *domain],
                0,
                None,
                None,
                ["external_id", *fields],
            )
            found.update((row["external_id"], row) for row in rows)
        return found

    def existing_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        """Time lines in any state; invoices only once posted (a draft is resumed on post)."""
        lines = self._lookup("timesheet.line", external_ids)
        invoices = self._lookup(
            "account.invoice", external_ids, domain=[("state", "in", sorted(_HELD_INVOICE_STATES))]
        )
        return set(lines) | set(invoices)

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
        (what Tryton invoices and what `read_time_lines` values hours at); the default is
        the service product's list price. Unknown legal entities or customers, or a
        project currency other than its company's, raise `ErpError` before anything is created.
        """
        refs = self.refs
        customers = customers.drop_duplicates("customer_id")
        employees = employees.drop_duplicates("employee_id")
        projects = projects.drop_duplicates("project_code")
        tasks = tasks.drop_duplicates(["project_code", "task_code"])
        unknown = sorted(
            set(employees["legal_entity"]).union(projects["legal_entity"]) - set(refs.company_of)
        )
        if unknown:
            raise ErpError(f"no Tryton company is mapped to legal entities {unknown}")
        company = projects["legal_entity"].map(refs.company_of)
        if "currency" in projects:
            expected = company.map(refs.currency_code_of_company)
            wrong = projects["currency"].notna() & (projects["currency"] != expected)
            if wrong.any():
                raise ErpError(
                    "Tryton projects are in their company's currency; these are not: "
                    f"{sorted(projects.loc[wrong, 'project_code'])}"
                )

        customer_parties = self._create_missing(
            "party.party",
            pd.DataFrame(
                {
                    "external_id": CUSTOMER_PREFIX + customers["customer_id"].astype(str),
                    "name": customers["customer_name"],
                    "addresses": [[["create", [{}]]]] * len(customers),
                }
            ),
        )
        known_customers = self._lookup(
            "party.party", CUSTOMER_PREFIX + projects["customer_id"].astype(str)
        )
        customer_parties.update({k: v["id"] for k, v in known_customers.items()})
        missing = sorted(
            set(projects["customer_id"].astype(str))
            - {k[len(CUSTOMER_PREFIX) :] for k in customer_parties}
        )
        if missing:
            raise ErpError(f"projects refer to customers Tryton does not have: {missing}")

        employee_parties = self._create_missing(
            "party.party",
            pd.DataFrame(
                {
                    "external_id": EMPLOYEE_PREFIX + employees["employee_id"].astype(str),
                    "name": employees["employee_name"],
                }
            ),
        )
        self._create_missing(
            "company.employee",
            pd.DataFrame(
                {
                    "external_id": employees["employee_id"].astype(str),
                    "party": (EMPLOYEE_PREFIX + employees["employee_id"].astype(str)).map(
                        employee_parties
                    ),
                    "company": employees["legal_entity"].map(refs.company_of),
                }
            ),
        )

        project_price = (
            _decimal(projects["list_price"])
            if "list_price" in projects
            else pd.Series(None, index=projects.index, dtype=object)
        ).where(lambda s: s.notna(), refs.list_price)
        common = {
            "project_invoice_method": "timesheet",
            "product": refs.product,
            "timesheet_available": True,
        }
        project_ids = self._create_missing(
            "project.work",
            pd.DataFrame(
                {
                    "external_id": projects["project_code"].astype(str),
                    "name": projects["project_name"],
                    "type": "project",
                    "company": company,
                    "party": (CUSTOMER_PREFIX + projects["customer_id"].astype(str)).map(
                        customer_parties
                    ),
                    "list_price": project_price,
                    **common,
                }
            ),
        )
        parents = self._lookup(
            "project.work", tasks["project_code"].astype(str), ["company", "list_price"]
        )
        unknown_projects = sorted(set(tasks["project_code"].astype(str)) - set(parents))
        if unknown_projects:
            raise ErpError(f"tasks refer to projects Tryton does not have: {unknown_projects}")
        parent_key = tasks["project_code"].astype(str)
        task_price = (
            _decimal(tasks["list_price"])
            if "list_price" in tasks
            else pd.Series(None, index=tasks.index, dtype=object)
        ).where(lambda s: s.notna(), parent_key.map(lambda k: parents[k]["list_price"]))
        self._create_missing(
            "project.work",
            pd.DataFrame(
                {
                    "external_id": parent_key + TASK_SEPARATOR + tasks["task_code"].astype(str),
                    "name": tasks["task_name"],
                    "type": "task",
                    "parent": parent_key.map(lambda k: parents[k]["id"]),
                    "company": parent_key.map(lambda k: parents[k]["company"]),
                    "list_price": task_price,
                    **common,
                }
            ),
        )
        logger.info("tryton master data ensured (%d projects)", len(project_ids))

    def _create_missing(self, model: str, frame: pd.DataFrame) -> dict[str, int]:
        """Create the rows whose external_id is absent; return external_id -> id for all."""
        if frame.empty:
            return {}
        existing = {k: v["id"] for k, v in self._lookup(model, frame["external_id"]).items()}
        todo = _records(frame[~frame["external_id"].isin(existing)])
        for chunk in _chunks(todo, self.batch_size):
            try:
                self.rpc.model(model, "create", list(chunk))
            except TrytonUserError as exc:
                # A concurrent run may have created some: accept those, fail on the rest.
                again = self._lookup(model, [r["external_id"] for r in chunk])
                if len(again) < len(chunk):
                    raise ErpError(f"Tryton refused to create {model}: {exc.message}") from None
        if todo:
            logger.info("tryton created %d %s", len(todo), model)
            existing.update(
                {
                    k: v["id"]
                    for k, v in self._lookup(model, [r["external_id"] for r in todo]).items()
                }
            )
        return existing

    # ------------------------------------------------------------------ periods

    def _periods(
        self, companies: Iterable[int], date_from: dt.date, date_to: dt.date
    ) -> pd.DataFrame:
        rows = self.rpc.model(
            "account.period",
            "search_read",
            [
                ("company", "in", sorted(set(companies))),
                ("type", "=", "standard"),
                ("start_date", "<=", date_to),
                ("end_date", ">=", date_from),
            ],
            0,
            None,
            None,
            ["company", "start_date", "end_date", "state"],
        )
        return pd.DataFrame(rows, columns=["id", "company", "start_date", "end_date", "state"])

    def _period_state(self, company: pd.Series, when: pd.Series) -> pd.Series:
        """Tryton's state of the period holding each date ('missing' when none does)."""
        state = pd.Series("missing", index=company.index, dtype=object)
        valid = company.notna() & when.notna()
        if not valid.any():
            return state
        days = pd.to_datetime(when[valid])
        periods = self._periods(company[valid].astype(int), days.min().date(), days.max().date())
        if periods.empty:
            return state
        left = pd.DataFrame(
            {"company": company[valid].astype("int64"), "day": days, "row": days.index}
        ).sort_values("day")
        right = periods.assign(
            company=periods["company"].astype("int64"),
            start=pd.to_datetime(periods["start_date"]),
            end=pd.to_datetime(periods["end_date"]),
        ).sort_values("start")
        merged = pd.merge_asof(
            left, right, left_on="day", right_on="start", by="company", direction="backward"
        )
        inside = merged["end"].notna() & (merged["day"] <= merged["end"])
        state.loc[merged.loc[inside, "row"].to_numpy()] = merged.loc[inside, "state"].to_numpy()
        return state

    def open_periods(
        self, legal_entities: Sequence[str], date_from: dt.date, date_to: dt.date
    ) -> pd.DataFrame:
        """A month is open when Tryton's standard period holding its first day is open."""
        refs = self.refs
        unknown = sorted(set(legal_entities) - set(refs.company_of))
        if unknown:
            raise ErpError(f"no Tryton company is mapped to legal entities {unknown}")
        months = pd.period_range(date_from, date_to, freq="M")
        grid = pd.MultiIndex.from_product(
            [list(dict.fromkeys(legal_entities)), months], names=["legal_entity", "month"]
        ).to_frame(index=False)
        firsts = grid["month"].dt.start_time
        state = self._period_state(grid["legal_entity"].map(refs.company_of), firsts)
        return pd.DataFrame(
            {
                "legal_entity": grid["legal_entity"],
                "period": grid["month"].dt.strftime("%Y-%m"),
                "is_open": state == "open",
            }
        )

    # ------------------------------------------------------------------ time lines

    def post_time_lines(self, lines: pd.DataFrame) -> PostResult:
        """Create timesheet lines; reversals after the lines they cancel."""
        result = PostResult()
        frame = lines[lines["external_id"].notna()].drop_duplicates("external_id")
        if frame.empty:
            return result
        present = self._lookup("timesheet.line", frame["external_id"])
        result.accepted.extend(frame.loc[frame["external_id"].isin(present), "external_id"])
        frame = frame[~frame["external_id"].isin(present)]
        is_reversal = frame["kind"].eq("reversal")
        self._post_time_frame(frame[~is_reversal], result)
        self._post_time_frame(frame[is_reversal], result)
        return result

    def _post_time_frame(self, frame: pd.DataFrame, result: PostResult) -> None:
        if frame.empty:
            return
        refs = self.refs
        ext = frame["external_id"]
        company = frame["legal_entity"].map(refs.company_of)
        employees = self._lookup("company.employee", frame["employee_id"].astype(str), ["company"])
        work_key = (
            frame["project_code"]
            .astype(str)
            .where(
                frame["task_code"].isna(),
                frame["project_code"].astype(str) + TASK_SEPARATOR + frame["task_code"].astype(str),
            )
        )
        works = self._lookup("project.work", work_key, ["company", "timesheet_works"])
        employee = frame["employee_id"].astype(str).map({k: v["id"] for k, v in employees.items()})
        employee_company = (
            frame["employee_id"].astype(str).map({k: v["company"] for k, v in employees.items()})
        )
        timesheet_work = work_key.map(
            {k: v["timesheet_works"][0] for k, v in works.items() if v["timesheet_works"]}
        )
        work_company = work_key.map({k: v["company"] for k, v in works.items()})
        hours = _decimal(frame["hours"])
        reversal = frame["kind"].eq("reversal")
        reverses = pd.Series(None, index=frame.index, dtype=object)
        if reversal.any():
            originals = self._lookup("timesheet.line", frame["reverses_external_id"], ["reverses"])
            reverses = frame["reverses_external_id"].map({k: v["id"] for k, v in originals.items()})
        negative = hours.map(lambda h: h < 0, na_action="ignore").fillna(False).astype(bool)
        problems = np.select(
            [
                company.isna(),
                employee.isna(),
                work_key.map(lambda k: k not in works).astype(bool),
                timesheet_work.isna(),
                employee_company.ne(company) | work_company.ne(company),
                hours.isna(),
                negative & ~reversal,
                reversal & reverses.isna(),
            ],
            [
                "no Tryton company for legal entity " + frame["legal_entity"].astype(str),
                "employee " + frame["employee_id"].astype(str) + " is not in Tryton",
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
        )
        bad = pd.Series(problems != "", index=frame.index)
        _reject(result, ext[bad], pd.Series(problems, index=frame.index)[bad])
        frame, company, employee, timesheet_work, hours, reverses = (
            s[~bad] for s in (frame, company, employee, timesheet_work, hours, reverses)
        )
        if frame.empty:
            return

        work_date = _dates(frame["work_date"])
        booked_elsewhere = frame["period"].notna() & (frame["period"] != _month(frame["work_date"]))
        accounting_date = _dates(frame["period"].astype(str) + "-01").where(booked_elsewhere, None)
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
                "company": company.astype("int64"),
                "employee": employee.astype("int64"),
                "work": timesheet_work.astype("int64"),
                "date": work_date,
                "duration": pd.to_timedelta((hours * 3600).astype(float), unit="s"),
                "description": description,
                "source_id": frame["entry_id"].map(str, na_action="ignore"),
                "source_version": pd.to_numeric(frame["entry_version"], errors="coerce").astype(
                    "Int64"
                ),
                "accounting_date": accounting_date,
                "reverses": reverses.astype("Int64"),
            }
        )
        booked = accounting_date.where(accounting_date.notna(), work_date)
        not_open = self._period_state(company, pd.to_datetime(booked)) != "open"
        normal = _records(payload[~not_open])
        for _, group in payload[not_open].groupby([company[not_open], booked[not_open]]):
            normal.extend(self._probe_closed(_records(group), result))
        self._create_isolated("timesheet.line", normal, result)

    def _probe_closed(
        self, group: list[dict[str, Any]], result: PostResult
    ) -> list[dict[str, Any]]:
        """Send one line of a (company, date) whose period is not open; Tryton's refusal
        applies to the whole group, so a closed month costs one call, not a bisection."""
        probe, rest = group[0], group[1:]
        try:
            self.rpc.model("timesheet.line", "create", [probe])
        except TrytonUserError as exc:
            if probe["external_id"] in self._lookup("timesheet.line", [probe["external_id"]]):
                result.accepted.append(probe["external_id"])
                return rest
            _reject(result, [r["external_id"] for r in group], [exc.message] * len(group))
            return []
        result.accepted.append(probe["external_id"])
        return rest  # the period was reopened meanwhile

    def _create_isolated(
        self, model: str, records: list[dict[str, Any]], result: PostResult
    ) -> None:
        """Create in batches; on a refusal accept what is present, else bisect to the bad rows."""
        queue: deque[list[dict[str, Any]]] = deque(
            list(chunk) for chunk in _chunks(records, self.batch_size)
        )
        while queue:
            chunk = queue.popleft()
            try:
                self.rpc.model(model, "create", chunk)
            except TrytonUserError as exc:
                logger.info("tryton refused %d %s: %s", len(chunk), model, exc.message)
                present = self._lookup(model, [r["external_id"] for r in chunk])
                if present:
                    result.accepted.extend(present)
                    rest = [r for r in chunk if r["external_id"] not in present]
                    if rest:
                        queue.appendleft(rest)
                elif len(chunk) == 1:
                    result.rejected[chunk[0]["external_id"]] = exc.message
                else:
                    middle = len(chunk) // 2
                    queue.appendleft(chunk[middle:])
                    queue.appendleft(chunk[:middle])
            else:
                result.accepted.extend(r["external_id"] for r in chunk)

    def read_time_lines(self, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
        """Lines stagepost posted (with an external ID), work date in range.

        `bill_rate` is the work's `list_price` and `amount` = hours x list_price rounded to
        cents half-even, as Tryton values and invoices time: a per-person rate from a rate
        card is not something a Tryton timesheet line carries.
        """
        refs = self.refs
        rows: list[dict[str, Any]] = []
        page = 10_000
        while True:
            batch = self.rpc.model(
                "timesheet.line",
                "search_read",
                [
                    ("date", ">=", date_from),
                    ("date", "<=", date_to),
                    ("external_id", "!=", None),
                ],
                len(rows),
                page,
                [("id", "ASC")],
                [
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
                ],
            )
            rows.extend(batch)
            if len(batch) < page:
                break
        if not rows:
            return pd.DataFrame(columns=list(TIME_LINE_COLUMNS))
        raw = pd.DataFrame(rows)
        works = self._works_by_timesheet_work(raw["work"].unique().tolist())
        hours = _hours_from_durations(raw["duration"])
        price = raw["work"].map(lambda w: works.get(w, {}).get("list_price"))
        amount = pd.Series(None, index=raw.index, dtype=object)
        priced = price.notna()
        amount[priced] = (hours[priced] * price[priced]).map(
            lambda v: v.quantize(CENT, ROUND_HALF_EVEN)
        )
        reverses = raw["reverses."].map(lambda r: r["external_id"] if r else None)
        booked = raw["accounting_date"].where(raw["accounting_date"].notna(), raw["date"])
        out = pd.DataFrame(
            {
                "external_id": raw["external_id"],
                "kind": np.where(reverses.notna(), "reversal", "post"),
                "reverses_external_id": reverses,
                "entry_id": raw["source_id"],
                "entry_version": raw["source_version"].astype("Int64"),
                "legal_entity": raw["company"].map(refs.legal_entity_of),
                "employee_id": raw["employee."].map(lambda e: e["external_id"] if e else None),
                "project_code": raw["work"].map(lambda w: works.get(w, {}).get("project_code")),
                "task_code": raw["work"].map(lambda w: works.get(w, {}).get("task_code")),
                "work_date": raw["date"],
                "period": _month(booked),
                "hours": hours,
                "bill_rate": price,
                "amount": amount,
                "currency": raw["company"].map(refs.currency_code_of_company),
                "description": raw["description"],
            }
        )
        return out[list(TIME_LINE_COLUMNS)]

    def _works_by_timesheet_work(self, timesheet_works: list[int]) -> dict[int, dict[str, Any]]:
        """timesheet.work id -> project_code, task_code and list_price of its project work."""
        found: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(sorted(timesheet_works), self.batch_size):
            works = self.rpc.model(
                "project.work",
                "search_read",
                [("timesheet_works", "in", list(chunk))],
                0,
                None,
                None,
                ["external_id", "type", "parent.external_id", "list_price", "timesheet_works"],
            )
            for work in works:
                ext = work["external_id"] or ""
                parent = (work.get("parent.") or {}).get("external_id")
                if work["type"] == "task" and parent and ext.startswith(parent + TASK_SEPARATOR):
                    codes = {
                        "project_code": parent,
                        "task_code": ext[len(parent) + len(TASK_SEPARATOR) :],
                    }
                else:
                    codes = {"project_code": ext or None, "task_code": None}
                for ts_work in work["timesheet_works"]:
                    found[ts_work] = {**codes, "list_price": work["list_price"]}
        return found

    # ------------------------------------------------------------------ invoices

    def post_invoices(self, invoices: pd.DataFrame, lines: pd.DataFrame) -> PostResult:
        """Create and post customer invoices; a reversal becomes a posted full credit note.

        An invoice Tryton refuses to post (closed period...) is deleted again and
        rejected with Tryton's message, so a later run can post it. A draft left by an
        interrupted run (same external ID) is posted instead of created again.
        """
        result = PostResult()
        frame = invoices[invoices["external_id"].notna()].drop_duplicates("external_id")
        if frame.empty:
            return result
        known = self._lookup("account.invoice", frame["external_id"], ["state"])
        held = {k for k, v in known.items() if v["state"] in _HELD_INVOICE_STATES}
        result.accepted.extend(sorted(held))
        drafts = {k: v["id"] for k, v in known.items() if k not in held}
        frame = frame[~frame["external_id"].isin(held)]
        is_reversal = frame["kind"].eq("reversal")
        self._post_drafts(drafts, frame.set_index("external_id")["due_date"], result)
        to_create = frame[~is_reversal & ~frame["external_id"].isin(drafts)]
        self._create_invoices(to_create, lines, result)
        for row in _records(frame[is_reversal & ~frame["external_id"].isin(drafts)]):
            self._credit(row, result)
        return result

    def _create_invoices(
        self, frame: pd.DataFrame, lines: pd.DataFrame, result: PostResult
    ) -> None:
        if frame.empty:
            return
        refs = self.refs
        company = frame["legal_entity"].map(refs.company_of)
        parties = self._lookup(
            "party.party",
            CUSTOMER_PREFIX + frame["customer_id"].astype(str),
            ["addresses", "account_receivable"],
        )
        party_key = CUSTOMER_PREFIX + frame["customer_id"].astype(str)
        party = party_key.map({k: v["id"] for k, v in parties.items()})
        address = party_key.map(
            {k: v["addresses"][0] for k, v in parties.items() if v["addresses"]}
        )
        receivable = party_key.map(
            {k: v["account_receivable"] for k, v in parties.items() if v["account_receivable"]}
        ).where(lambda s: s.notna(), company.map(refs.receivable_of_company))
        currency = frame["currency"].map(refs.currency_id)
        projects = self._lookup("project.work", frame["project_code"].dropna().astype(str))
        project = frame["project_code"].astype(str).map({k: v["id"] for k, v in projects.items()})
        own_lines = lines[lines["invoice_external_id"].isin(frame["external_id"])]
        has_lines = frame["external_id"].isin(own_lines["invoice_external_id"])
        problems = np.select(
            [
                company.isna(),
                party.isna(),
                address.isna(),
                currency.isna(),
                frame["project_code"].notna() & project.isna(),
                receivable.isna(),
                ~has_lines,
            ],
            [
                "no Tryton company for legal entity " + frame["legal_entity"].astype(str),
                "customer " + frame["customer_id"].astype(str) + " is not in Tryton",
                "customer " + frame["customer_id"].astype(str) + " has no address in Tryton",
                "currency " + frame["currency"].astype(str) + " is not in Tryton",
                "project " + frame["project_code"].astype(str) + " is not in Tryton",
                "no receivable account for the customer in Tryton",
                "an invoice without lines",
            ],
            default="",
        )
        bad = pd.Series(problems != "", index=frame.index)
        _reject(result, frame.loc[bad, "external_id"], pd.Series(problems, index=frame.index)[bad])
        keep = ~bad
        if not keep.any():
            return
        frame = frame[keep]
        issue = _dates(frame["issue_date"])
        booked_elsewhere = frame["period"].notna() & (
            frame["period"] != _month(frame["issue_date"])
        )
        line_payload = pd.DataFrame(
            {
                "invoice": own_lines["invoice_external_id"],
                "sequence": pd.to_numeric(own_lines["line_no"], errors="coerce").astype("Int64"),
                "type": "line",
                "product": refs.product,
                "unit": refs.unit,
                "account": refs.revenue_account,
                "quantity": pd.to_numeric(own_lines["quantity"].astype(str), errors="coerce"),
                "unit_price": _decimal(own_lines["unit_price"]),
                "description": own_lines["description"]
                .astype(object)
                .where(own_lines["description"].notna(), own_lines["line_kind"]),
            }
        )
        line_company = line_payload["invoice"].map(
            dict(zip(frame["external_id"], company[keep].astype("int64"), strict=True))
        )
        line_payload["company"] = line_company
        line_payload["currency"] = line_payload["invoice"].map(
            dict(zip(frame["external_id"], currency[keep].astype("int64"), strict=True))
        )
        grouped = {
            ext: [{k: v for k, v in rec.items() if k != "invoice"} for rec in recs]
            for ext, recs in _group_records(line_payload, "invoice").items()
        }
        payload = pd.DataFrame(
            {
                "external_id": frame["external_id"],
                "type": "out",
                "company": company[keep].astype("int64"),
                "party": party[keep].astype("int64"),
                "invoice_address": address[keep].astype("int64"),
                "account": receivable[keep].astype("int64"),
                "currency": currency[keep].astype("int64"),
                "journal": refs.journal,
                "invoice_date": issue,
                "accounting_date": _dates(frame["period"].astype(str) + "-01").where(
                    booked_elsewhere, None
                ),
                "payment_term": None,
                "payment_term_date": _dates(frame["due_date"]),
                "reference": frame["invoice_id"].astype(object).map(str, na_action="ignore"),
                "source_id": frame["invoice_id"].astype(object).map(str, na_action="ignore"),
                "source_version": pd.to_numeric(frame["invoice_version"], errors="coerce").astype(
                    "Int64"
                ),
                "project": project[keep].astype("Int64"),
            }
        )
        records = _records(payload)
        for record in records:
            record["lines"] = [["create", grouped[record["external_id"]]]]
        created = PostResult()
        self._create_isolated("account.invoice", records, created)
        result.rejected.update(created.rejected)
        ids = {
            k: v["id"]
            for k, v in self._lookup("account.invoice", created.accepted, ["state"]).items()
            if v["state"] not in _HELD_INVOICE_STATES
        }
        result.accepted.extend(sorted(set(created.accepted) - set(ids)))
        self._post_drafts(ids, frame.set_index("external_id")["due_date"], result)

    def _post_drafts(self, drafts: Mapping[str, int], due: pd.Series, result: PostResult) -> None:
        """Post draft invoices; one Tryton refuses is deleted and rejected with its message."""
        if not drafts:
            return
        self._acknowledge_past_due(drafts, due)
        queue: deque[list[tuple[str, int]]] = deque(
            list(chunk) for chunk in _chunks(sorted(drafts.items()), self.batch_size)
        )
        while queue:
            chunk = queue.popleft()
            try:
                self.rpc.model("account.invoice", "post", [i for _, i in chunk])
            except TrytonUserWarning as warning:
                if warning.name.endswith(_PAYMENT_TERM_WARNING):
                    self._skip_warnings([warning.name])
                    queue.appendleft(chunk)
                elif len(chunk) == 1:
                    self._reject_draft(chunk[0], warning.message, result)
                else:
                    queue.extendleft([chunk[len(chunk) // 2 :], chunk[: len(chunk) // 2]])
            except TrytonUserError as exc:
                if len(chunk) == 1:
                    self._reject_draft(chunk[0], exc.message, result)
                else:
                    queue.extendleft([chunk[len(chunk) // 2 :], chunk[: len(chunk) // 2]])
            else:
                result.accepted.extend(ext for ext, _ in chunk)

    def _acknowledge_past_due(self, drafts: Mapping[str, int], due: pd.Series) -> None:
        """Confirm Tryton's "payment date in the past" warning for invoices due before today.

        Posting an invoice the PSA issued weeks ago is the normal case for a sync, so the
        warning is answered the way Tryton's client does: a `res.user.warning` record
        named after the invoice (Tryton's `Warning.format` key). Other warnings reject.
        """
        soon = pd.Timestamp(dt.date.today() + dt.timedelta(days=2))
        due_dates = pd.to_datetime(due.reindex(list(drafts)), errors="coerce")
        names = [
            hashlib.md5(f"account.invoice,{drafts[ext]}".encode()).hexdigest()  # noqa: S324
            + _PAYMENT_TERM_WARNING
            for ext, when in due_dates.items()
            if pd.isna(when) or when < soon
        ]
        if names:
            self._skip_warnings(names)

    def _skip_warnings(self, names: list[str]) -> None:
        user = self.rpc.user_id
        self.rpc.model(
            "res.user.warning",
            "create",
            [{"user": user, "name": name, "always": False} for name in names],
        )

    def _reject_draft(self, item: tuple[str, int], message: str, result: PostResult) -> None:
        ext, invoice_id = item
        self.rpc.model("account.invoice", "delete", [invoice_id])
        result.rejected[ext] = message

    def _credit(self, row: dict[str, Any], result: PostResult) -> None:
        """Credit the reversed invoice in full with Tryton's credit wizard, then post."""
        ext = row["external_id"]
        original = self._lookup(
            "account.invoice", [row["reverses_external_id"]], ["state", "total_amount"]
        ).get(row["reverses_external_id"])
        if original is None:
            result.rejected[ext] = (
                f"the credited invoice {row['reverses_external_id']} is not in Tryton"
            )
            return
        if original["state"] not in {"posted", "paid"}:
            result.rejected[ext] = (
                f"the credited invoice {row['reverses_external_id']} is {original['state']} in Tryton"
            )
            return
        total = row.get("total_amount")
        if total is not None and Decimal(str(total)) != -original["total_amount"]:
            result.rejected[ext] = (
                f"Tryton credits {row['reverses_external_id']} in full "
                f"({-original['total_amount']}), not {total}"
            )
            return
        issue = _dates(pd.Series([row["issue_date"]])).iloc[0]
        period = row.get("period")
        accounting = (
            dt.date.fromisoformat(f"{period}-01")
            if period and issue is not None and period != issue.strftime("%Y-%m")
            else None
        )
        credit_id = self._run_credit_wizard(original["id"], issue)
        try:
            self.rpc.model(
                "account.invoice",
                "write",
                [credit_id],
                {
                    "external_id": ext,
                    "reverses": original["id"],
                    "source_id": None if row.get("invoice_id") is None else str(row["invoice_id"]),
                    "source_version": None
                    if row.get("invoice_version") is None
                    else int(row["invoice_version"]),
                    "reference": None if row.get("invoice_id") is None else str(row["invoice_id"]),
                    "accounting_date": accounting,
                    "payment_term_date": _dates(pd.Series([row.get("due_date")])).iloc[0],
                },
            )
        except TrytonUserError as exc:
            self.rpc.model("account.invoice", "delete", [credit_id])
            if self._lookup("account.invoice", [ext]):
                result.accepted.append(ext)  # a concurrent run credited it
            else:
                result.rejected[ext] = exc.message
            return
        self._post_drafts({ext: credit_id}, pd.Series({ext: row.get("due_date")}), result)

    def _run_credit_wizard(self, invoice_id: int, invoice_date: dt.date | None) -> int:
        session, _, _ = self.rpc.call("wizard.account.invoice.credit.create")
        context = {
            "active_model": "account.invoice",
            "active_id": invoice_id,
            "active_ids": [invoice_id],
        }
        try:
            answer = self.rpc.call(
                "wizard.account.invoice.credit.execute",
                session,
                {
                    "start": {
                        "invoice_date": invoice_date,
                        "with_refund": False,
                        "with_refund_allowed": False,
                    }
                },
                "credit",
                context=context,
            )
        finally:
            self.rpc.call("wizard.account.invoice.credit.delete", session)
        try:
            (credit_id,) = answer["actions"][0][1]["res_id"]
        except (KeyError, IndexError, TypeError, ValueError):
            raise ErpError("Tryton's credit wizard did not return one credit note") from None
        return int(credit_id)

    def read_invoices(self, date_from: dt.date, date_to: dt.date) -> pd.DataFrame:
        """Invoices stagepost posted (with an external ID), invoice date in range, with
        Tryton's state as status (draft, validated, posted, paid, cancelled)."""
        refs = self.refs
        rows = self.rpc.model(
            "account.invoice",
            "search_read",
            [
                ("type", "=", "out"),
                ("invoice_date", ">=", date_from),
                ("invoice_date", "<=", date_to),
                ("external_id", "!=", None),
            ],
            0,
            None,
            [("id", "ASC")],
            [
                "external_id",
                "source_id",
                "source_version",
                "reverses.external_id",
                "company",
                "project.external_id",
                "party.external_id",
                "currency.code",
                "invoice_date",
                "payment_term_date",
                "accounting_date",
                "total_amount",
                "state",
            ],
        )
        if not rows:
            return pd.DataFrame(columns=list(INVOICE_COLUMNS))
        raw = pd.DataFrame(rows)

        def nested(column: str, name: str) -> pd.Series:
            return raw[column].map(lambda r: r[name] if r else None)

        reverses = nested("reverses.", "external_id")
        party = nested("party.", "external_id")
        booked = raw["accounting_date"].where(raw["accounting_date"].notna(), raw["invoice_date"])
        out = pd.DataFrame(
            {
                "external_id": raw["external_id"],
                "kind": np.where(reverses.notna(), "reversal", "post"),
                "reverses_external_id": reverses,
                "invoice_id": raw["source_id"],
                "invoice_version": raw["source_version"].astype("Int64"),
                "legal_entity": raw["company"].map(refs.legal_entity_of),
                "project_code": nested("project.", "external_id"),
                "customer_id": party.str.removeprefix(CUSTOMER_PREFIX),
                "currency": nested("currency.", "code"),
                "issue_date": raw["invoice_date"],
                "due_date": raw["payment_term_date"],
                "period": _month(booked),
                "total_amount": raw["total_amount"],
                "status": raw["state"],
            }
        )
        return out[list(INVOICE_COLUMNS)]


def _group_records(frame: pd.DataFrame, key: str) -> dict[Any, list[dict[str, Any]]]:
    """Rows of `frame` as records grouped by `key`, preserving order."""
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for record in _records(frame):
        grouped.setdefault(record[key], []).append(record)
    return grouped
