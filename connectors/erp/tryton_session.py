"""What every Tryton posting step shares: reference ids, external-ID lookups, isolated
batch creates, period states, and the pandas helpers that turn frames into RPC records."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from .base import ErpError, PostResult
from .tryton_rpc import TrytonRpc, TrytonUserError

logger = logging.getLogger(__name__)

CUSTOMER_PREFIX = "customer:"
EMPLOYEE_PREFIX = "employee:"
TASK_SEPARATOR = "::"
#: Invoice states in which Tryton "holds" an invoice; drafts are resumed, not trusted.
HELD_INVOICE_STATES = frozenset({"posted", "paid", "cancelled"})


# ---------------------------------------------------------------------- frame helpers


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with pandas' missing values turned into None (JSON null)."""
    frame = frame.astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def dates(series: pd.Series) -> pd.Series:
    """A column of `datetime.date` (or None) whatever pandas made of it."""
    converted = pd.to_datetime(series, errors="coerce")
    return pd.Series(
        np.where(converted.notna(), converted.dt.date, None), index=series.index, dtype=object
    )


def months(series: pd.Series) -> pd.Series:
    """The month ("YYYY-MM") of each date."""
    return pd.to_datetime(series, errors="coerce").dt.strftime("%Y-%m")


def first_days(periods: pd.Series) -> pd.Series:
    """The first day (`datetime.date`) of each "YYYY-MM" period, None where missing."""
    return dates(periods.astype(object).map(lambda p: f"{p}-01", na_action="ignore"))


def accounting_dates(periods: pd.Series, document_dates: pd.Series) -> pd.Series:
    """The first day of `period` where it differs from the document date's month, else
    None: Tryton then books by the document date, as it does by default."""
    elsewhere = periods.notna() & (periods != months(document_dates))
    return first_days(periods).where(elsewhere, None)


def decimals(series: pd.Series) -> pd.Series:
    """Decimals for hours and money; a float goes through str, so 0.1 stays 0.1."""
    return series.map(
        lambda v: v if isinstance(v, Decimal) else Decimal(str(v)), na_action="ignore"
    )


def optional_decimals(frame: pd.DataFrame, column: str) -> pd.Series:
    """`frame[column]` as Decimals, or an all-missing column when the frame lacks it."""
    if column in frame:
        return decimals(frame[column])
    return pd.Series(None, index=frame.index, dtype=object)


def hours_from_durations(series: pd.Series) -> pd.Series:
    """Tryton durations (timedelta) as Decimal hours, exact to the millisecond."""
    millis = (pd.to_timedelta(series).dt.total_seconds() * 1000).round().astype("int64")
    return millis.map(
        lambda ms: (Decimal(int(ms)) / Decimal(3_600_000)).quantize(Decimal("0.000001"))
    )


def nested(series: pd.Series, name: str) -> pd.Series:
    """Field `name` of a dotted read (`"party."` -> {"external_id": ...}), None if empty."""
    return series.map(lambda value: value[name] if value else None)


def document_identity(
    raw: pd.DataFrame,
    legal_entity_of: Callable[[Any], str | None],
    document_date: str,
    ident: tuple[str, str],
) -> dict[str, Any]:
    """The columns every document read back from Tryton carries: external ID, kind (a
    document that reverses another is a reversal), the source's id and version (named
    `ident`), legal entity and booked period (accounting date, else `document_date`)."""
    reverses = nested(raw["reverses."], "external_id")
    booked = raw["accounting_date"].where(raw["accounting_date"].notna(), raw[document_date])
    return {
        "external_id": raw["external_id"],
        "kind": np.where(reverses.notna(), "reversal", "post"),
        "reverses_external_id": reverses,
        ident[0]: raw["source_id"],
        ident[1]: raw["source_version"].astype("Int64"),
        "legal_entity": raw["company"].map(legal_entity_of),
        "period": months(booked),
    }


def reject(result: PostResult, problems: pd.Series, external_ids: pd.Series) -> pd.Series:
    """Record rows with a non-empty problem as rejected; return the mask of good rows."""
    bad = problems.ne("")
    result.rejected.update(zip(external_ids[bad], problems[bad], strict=True))
    return ~bad


# ---------------------------------------------------------------------- session


@dataclass(frozen=True)
class Refs:
    """Ids every posting needs, read once per target."""

    company_of: dict[str, int]  # legal entity -> company id
    legal_entity_of: dict[int, str]
    currency_code_of_company: dict[int, str]
    currency_id: dict[str, int]
    product: int
    unit: int
    revenue_account: int | None
    list_price: Decimal | None
    journal: int
    receivable_of_company: dict[int, int | None]


class TrytonSession:
    """An RPC session plus the lookups and batch mechanics the posting steps share."""

    def __init__(
        self,
        rpc: TrytonRpc,
        *,
        batch_size: int,
        legal_entities: Mapping[str, int] | None,
        product: int | str | None,
    ) -> None:
        self.rpc = rpc
        self.batch_size = batch_size
        self._legal_entities = dict(legal_entities) if legal_entities else None
        self._product = product
        self._refs: Refs | None = None

    @property
    def refs(self) -> Refs:
        if self._refs is None:
            self._refs = self._load_refs()
        return self._refs

    def _load_refs(self) -> Refs:
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
        for cid in by_id:  # a company-dependent default: one read per company
            config = rpc.model(
                "account.configuration",
                "read",
                [1],
                ["default_account_receivable"],
                context={"company": cid},
            )
            receivable[cid] = config[0]["default_account_receivable"] if config else None
        return Refs(
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

    def lookup(
        self,
        model: str,
        external_ids: Iterable[Any],
        fields: Sequence[str] = (),
        domain: Sequence[Any] = (),
    ) -> dict[str, dict[str, Any]]:
        """external_id -> record for those present, in batches of `batch_size` keys."""
        keys = sorted({k for k in external_ids if isinstance(k, str) and k})
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(keys, self.batch_size):
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

    def ids(self, model: str, external_ids: Iterable[Any]) -> dict[str, int]:
        return {k: v["id"] for k, v in self.lookup(model, external_ids).items()}

    def create_isolated(self, model: str, rows: list[dict[str, Any]], result: PostResult) -> None:
        """Create in batches; on a refusal accept what is present, else bisect to the bad rows.

        A duplicate from a concurrent run shows up as present on the re-lookup and counts
        as accepted; a row Tryton refuses on its own is rejected with Tryton's message.
        """
        queue: deque[list[dict[str, Any]]] = deque(
            list(chunk) for chunk in chunks(rows, self.batch_size)
        )
        while queue:
            chunk = queue.popleft()
            try:
                self.rpc.model(model, "create", chunk)
            except TrytonUserError as exc:
                logger.info("tryton refused %d %s: %s", len(chunk), model, exc.message)
                present = self.lookup(model, [r["external_id"] for r in chunk])
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

    def create_missing(self, model: str, frame: pd.DataFrame) -> dict[str, int]:
        """Create the rows whose external_id is absent; return external_id -> id for all.

        For master data a refusal is not per row: it raises `ErpError` with Tryton's message.
        """
        if frame.empty:
            return {}
        existing = self.ids(model, frame["external_id"])
        todo = records(frame[~frame["external_id"].isin(existing)])
        for chunk in chunks(todo, self.batch_size):
            try:
                self.rpc.model(model, "create", list(chunk))
            except TrytonUserError as exc:
                # A concurrent run may have created them: fine, unless some are still missing.
                if len(self.lookup(model, [r["external_id"] for r in chunk])) < len(chunk):
                    raise ErpError(f"Tryton refused to create {model}: {exc.message}") from None
        if todo:
            logger.info("tryton created %d %s", len(todo), model)
            existing.update(self.ids(model, [r["external_id"] for r in todo]))
        return existing

    def period_state(self, company: pd.Series, when: pd.Series) -> pd.Series:
        """Tryton's state of the standard period holding each date ('missing' if none)."""
        return self.period_field(company, when, "state", "missing")

    def period_field(
        self, company: pd.Series, when: pd.Series, field: str, missing: Any = None
    ) -> pd.Series:
        """A field (`state`, `id`) of the standard period holding each date (`missing` if
        none)."""
        state = pd.Series(missing, index=company.index, dtype=object)
        valid = company.notna() & when.notna()
        if not valid.any():
            return state
        days = pd.to_datetime(when[valid])
        periods = pd.DataFrame(
            self.rpc.model(
                "account.period",
                "search_read",
                [
                    ("company", "in", sorted(set(company[valid].astype(int)))),
                    ("type", "=", "standard"),
                    ("start_date", "<=", days.max().date()),
                    ("end_date", ">=", days.min().date()),
                ],
                0,
                None,
                None,
                ["company", "start_date", "end_date", "state"],
            ),
            columns=["id", "company", "start_date", "end_date", "state"],
        )
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
        state.loc[merged.loc[inside, "row"].to_numpy()] = merged.loc[inside, field].to_numpy()
        return state
