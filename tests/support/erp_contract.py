"""The contract every `ErpTarget` keeps, as a reusable test class.

Subclass `ErpContract` in a test module and provide two fixtures:

- `erp_target`: a fresh, empty target (the suite loads its master data itself
  through `ensure_master_data`);
- `setup_period`: a callable `(legal_entity, "YYYY-MM", is_open)` that opens or
  closes an accounting period in that ERP (the one thing the API cannot do).

Only the `ErpTarget` API is used, so the SQL interface target and the Tryton
target run the same tests. Requirements beyond the signatures, which posting
relies on: rejections are per line and name the offending code or period;
posting an external ID the ERP already holds never creates a second document;
hours come back as the exact Decimals sent, and so do amounts unless the ERP
values time itself.

What legitimately differs between ERPs is stated once per target as a
`ContractProfile` on the subclass (`profile = ContractProfile(...)`), never by
loosening an assertion for everyone: the legal entity and currency its
company is set up with, whether it values time itself, and how it words a
closed-period refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, ClassVar

import pandas as pd
import pytest

from connectors.erp.base import (
    INVOICE_COLUMNS,
    INVOICE_LINE_COLUMNS,
    INVOICE_PAYMENT_COLUMNS,
    TIME_LINE_COLUMNS,
    ErpTarget,
)

D = Decimal
LE = "DE01"
OPEN, CLOSED = "2026-11", "2026-10"
FAR = (date(2000, 1, 1), date(2100, 12, 31))
CENT = Decimal("0.01")


@dataclass(frozen=True)
class ContractProfile:
    """How one ERP target legitimately differs; the defaults are the SQL interface's."""

    #: The legal entity and currency the target's test company is set up with.
    legal_entity: str = LE
    currency: str = "EUR"
    #: True when the ERP values time itself: `bill_rate` reads back as the ERP's price
    #: for the work and `amount` as hours x that price to cents (half-even), not as sent.
    erp_values_time: bool = False
    #: Besides naming the period, a closed-period rejection matches this (ignoring case).
    closed_period_wording: str = "closed"
    #: The status an invoice or credit note reads back with once posted, and the status of
    #: an invoice after a credit note cancelled it (the SQL interface marks it; Tryton keeps
    #: the invoice posted beside its credit note).
    invoice_posted_status: str = "posted"
    credited_invoice_status: str = "reversed"


def contract_master_data(
    legal_entity: str = LE, currency: str = "EUR"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    customers = pd.DataFrame({"customer_id": ["C1"], "customer_name": ["Acme GmbH"]})
    employees = pd.DataFrame(
        {
            "employee_id": ["E1", "E2"],
            "employee_name": ["Ann Lee", "Bo Chen"],
            "legal_entity": legal_entity,
        }
    )
    projects = pd.DataFrame(
        {
            "project_code": ["P1", "P2"],
            "project_name": ["Website", "Migration"],
            "customer_id": "C1",
            "legal_entity": legal_entity,
            "currency": currency,
        }
    )
    tasks = pd.DataFrame(
        {
            "project_code": ["P1", "P1", "P2"],
            "task_code": ["T1", "T2", "T1"],
            "task_name": ["Design", "Build", "Plan"],
        }
    )
    return customers, employees, projects, tasks


def line(n: int | str, **kw) -> dict:
    """A time line; `n` makes the external ID and entry ID unique."""
    base = {
        "external_id": f"te:C{n}:v1:post",
        "kind": "post",
        "reverses_external_id": None,
        "entry_id": f"C{n}",
        "entry_version": 1,
        "legal_entity": LE,
        "employee_id": "E1",
        "project_code": "P1",
        "task_code": "T1",
        "work_date": date(2026, 11, 2),
        "period": OPEN,
        "hours": D("7.5"),
        "bill_rate": D("100.0000"),
        "amount": D("750.00"),
        "currency": "EUR",
        "description": f"Contract line {n}",
    }
    return {**base, **kw}


def reversal_of(original: dict, **kw) -> dict:
    return {
        **original,
        "external_id": original["external_id"].replace(":post", ":rev"),
        "kind": "reversal",
        "reverses_external_id": original["external_id"],
        "hours": -original["hours"],
        "amount": -original["amount"],
        "description": f"Reversal of {original['external_id']}",
        **kw,
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(TIME_LINE_COLUMNS))


def invoice(n: int | str, total: Decimal, **kw) -> dict:
    base = {
        "external_id": f"inv:I{n}:v1:post",
        "kind": "post",
        "reverses_external_id": None,
        "invoice_id": f"I{n}",
        "invoice_version": 1,
        "legal_entity": LE,
        "project_code": "P1",
        "customer_id": "C1",
        "currency": "EUR",
        "issue_date": date(2026, 11, 30),
        "due_date": date(2026, 12, 30),
        "period": OPEN,
        "total_amount": total,
        "status": "released",
    }
    return {**base, **kw}


def invoice_lines(ext: str, *amounts: Decimal, sign: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "invoice_external_id": ext,
                "line_no": i,
                "line_kind": "time",
                "description": f"Line {i}",
                "quantity": D(sign),
                "unit_price": a,
                "amount": a * sign,
            }
            for i, a in enumerate(amounts, start=1)
        ],
        columns=list(INVOICE_LINE_COLUMNS),
    )


def _by_id(df: pd.DataFrame) -> dict[str, dict]:
    return {r["external_id"]: r for r in df.to_dict("records")}


class ErpContract:
    """Tests every ErpTarget must pass. See the module docstring for the fixtures."""

    profile: ClassVar[ContractProfile] = ContractProfile()

    def master_data(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return contract_master_data(self.profile.legal_entity, self.profile.currency)

    def line(self, n: int | str, **kw: Any) -> dict:
        """`line` in this target's legal entity and currency."""
        return line(
            n,
            **{"legal_entity": self.profile.legal_entity, "currency": self.profile.currency, **kw},
        )

    def invoice(self, n: int | str, total: Decimal, **kw: Any) -> dict:
        """`invoice` in this target's legal entity and currency."""
        return invoice(
            n,
            total,
            **{"legal_entity": self.profile.legal_entity, "currency": self.profile.currency, **kw},
        )

    @pytest.fixture
    def erp(self, erp_target: ErpTarget) -> ErpTarget:
        erp_target.ensure_master_data(*self.master_data())
        return erp_target

    def test_posted_lines_read_back_exactly(self, erp: ErpTarget) -> None:
        rows = [
            self.line(1, hours=D("0.0167"), amount=D("1.67")),
            self.line(2, hours=D("7.5"), bill_rate=D("164.3300"), amount=D("1232.48")),
            self.line(
                3, task_code="T2", work_date=date(2026, 11, 30), description='Ümlaut, "quote"'
            ),
        ]
        result = erp.post_time_lines(frame(*rows))
        assert sorted(result.accepted) == sorted(r["external_id"] for r in rows)
        assert result.rejected == {}
        back = erp.read_time_lines(*FAR)
        assert set(TIME_LINE_COLUMNS) <= set(back.columns)
        got = _by_id(back)
        for r in rows:
            g = got[r["external_id"]]
            assert g["hours"] == r["hours"]
            assert isinstance(g["hours"], Decimal) and isinstance(g["amount"], Decimal)
            if self.profile.erp_values_time:
                assert isinstance(g["bill_rate"], Decimal)
                assert g["amount"] == (g["hours"] * g["bill_rate"]).quantize(CENT, ROUND_HALF_EVEN)
            else:
                assert (g["bill_rate"], g["amount"]) == (r["bill_rate"], r["amount"])
            assert g["work_date"] == r["work_date"]
            assert (g["entry_id"], g["project_code"], g["period"]) == (
                r["entry_id"],
                r["project_code"],
                r["period"],
            )

    def test_read_range_filters_on_work_date(self, erp: ErpTarget) -> None:
        erp.post_time_lines(
            frame(
                self.line(1, work_date=date(2026, 11, 1)),
                self.line(2, work_date=date(2026, 11, 20)),
            )
        )
        back = erp.read_time_lines(date(2026, 11, 10), date(2026, 11, 30))
        assert back["external_id"].tolist() == ["te:C2:v1:post"]

    def test_existing_external_ids_is_exact(self, erp: ErpTarget) -> None:
        erp.post_time_lines(frame(self.line(1), self.line(2)))
        assert erp.existing_external_ids([]) == set()
        assert erp.existing_external_ids(["te:C1:v1:post", "te:C9:v1:post"]) == {"te:C1:v1:post"}

    def test_posting_an_existing_external_id_never_duplicates(self, erp: ErpTarget) -> None:
        batch = frame(self.line(1), self.line(2))
        erp.post_time_lines(batch)
        again = erp.post_time_lines(batch)
        back = erp.read_time_lines(*FAR)
        assert back["external_id"].value_counts().max() == 1
        assert len(back) == 2
        # Already there counts as accepted: the ledger must not call a line in the ERP rejected.
        assert set(again.accepted) == {"te:C1:v1:post", "te:C2:v1:post"}
        assert not again.rejected

    def test_bad_lines_are_rejected_one_by_one(self, erp: ErpTarget) -> None:
        good = self.line(1)
        bad_project = self.line(2, project_code="P404")
        bad_task = self.line(3, task_code="T404")
        bad_employee = self.line(4, employee_id="E404")
        result = erp.post_time_lines(frame(good, bad_project, bad_task, bad_employee))
        assert result.accepted == [good["external_id"]]
        assert set(result.rejected) == {
            bad_project["external_id"],
            bad_task["external_id"],
            bad_employee["external_id"],
        }
        assert "P404" in result.rejected[bad_project["external_id"]]
        assert "T404" in result.rejected[bad_task["external_id"]]
        assert "E404" in result.rejected[bad_employee["external_id"]]
        assert erp.read_time_lines(*FAR)["external_id"].tolist() == [good["external_id"]]

    def test_closed_period_rejects_its_lines_only(self, erp: ErpTarget, setup_period) -> None:
        setup_period(self.profile.legal_entity, CLOSED, False)
        setup_period(self.profile.legal_entity, OPEN, True)
        late = self.line(1, work_date=date(2026, 10, 30), period=CLOSED)
        ok = self.line(2)
        result = erp.post_time_lines(frame(late, ok))
        assert result.accepted == [ok["external_id"]]
        message = result.rejected[late["external_id"]]
        assert CLOSED in message
        assert re.search(self.profile.closed_period_wording, message, re.IGNORECASE), message
        periods = erp.open_periods(
            [self.profile.legal_entity], date(2026, 10, 1), date(2026, 11, 30)
        )
        status = dict(zip(periods["period"], periods["is_open"], strict=True))
        assert status == {CLOSED: False, OPEN: True}
        assert set(periods["legal_entity"]) == {self.profile.legal_entity}

    def test_reopened_period_accepts_again(self, erp: ErpTarget, setup_period) -> None:
        setup_period(self.profile.legal_entity, CLOSED, False)
        late = self.line(1, work_date=date(2026, 10, 30), period=CLOSED)
        assert erp.post_time_lines(frame(late)).rejected
        setup_period(self.profile.legal_entity, CLOSED, True)
        assert erp.post_time_lines(frame(late)).accepted == [late["external_id"]]

    def test_reversal_nets_the_line_to_zero(self, erp: ErpTarget) -> None:
        original = self.line(1)
        erp.post_time_lines(frame(original))
        result = erp.post_time_lines(frame(reversal_of(original)))
        assert result.rejected == {}
        back = erp.read_time_lines(*FAR)
        assert sorted(back["kind"]) == ["post", "reversal"]
        assert sum(back["hours"], D(0)) == 0 and sum(back["amount"], D(0)) == 0
        rev = back[back["kind"] == "reversal"].iloc[0]
        assert rev["reverses_external_id"] == original["external_id"]

    def test_reversal_of_an_unknown_line_is_rejected(self, erp: ErpTarget) -> None:
        ghost = reversal_of(self.line(9))
        result = erp.post_time_lines(frame(ghost))
        assert list(result.rejected) == [ghost["external_id"]]
        assert erp.read_time_lines(*FAR).empty

    def test_master_data_is_idempotent(self, erp: ErpTarget) -> None:
        erp.ensure_master_data(*self.master_data())
        assert erp.post_time_lines(frame(self.line(1, project_code="P2"))).rejected == {}

    def test_a_large_batch_posts_whole(self, erp: ErpTarget) -> None:
        rows = pd.DataFrame([self.line(i) for i in range(2_000)], columns=list(TIME_LINE_COLUMNS))
        result = erp.post_time_lines(rows)
        assert len(result.accepted) == 2_000 and not result.rejected
        assert len(erp.existing_external_ids(rows["external_id"].tolist())) == 2_000

    def test_invoice_and_credit_note(self, erp: ErpTarget) -> None:
        inv = self.invoice(1, D("150.00"))
        result = erp.post_invoices(
            pd.DataFrame([inv], columns=list(INVOICE_COLUMNS)),
            invoice_lines(inv["external_id"], D("100.00"), D("50.00")),
        )
        assert result.accepted == [inv["external_id"]] and not result.rejected
        credit = {
            **inv,
            "external_id": "inv:I1:v1:rev",
            "kind": "reversal",
            "reverses_external_id": inv["external_id"],
            "total_amount": D("-150.00"),
        }
        result = erp.post_invoices(
            pd.DataFrame([credit], columns=list(INVOICE_COLUMNS)),
            invoice_lines(credit["external_id"], D("100.00"), D("50.00"), sign=-1),
        )
        assert result.accepted == [credit["external_id"]]
        back = _by_id(erp.read_invoices(*FAR))
        assert back[credit["external_id"]]["kind"] == "reversal"
        assert back[credit["external_id"]]["total_amount"] == D("-150.00")
        assert back[inv["external_id"]]["total_amount"] == D("150.00")
        assert back[credit["external_id"]]["status"] == self.profile.invoice_posted_status
        assert back[inv["external_id"]]["status"] == self.profile.credited_invoice_status
        assert erp.existing_external_ids([inv["external_id"], credit["external_id"]]) == {
            inv["external_id"],
            credit["external_id"],
        }

    def test_invoice_payment_state(self, erp: ErpTarget) -> None:
        """`read_invoice_payments`: a posted invoice has its ERP number, status `posted` and its
        total open; credited in full it is `cancelled` with nothing open; credit notes and
        unknown ids are left out (the status feedback reads this)."""
        inv = self.invoice(1, D("150.00"))
        erp.post_invoices(
            pd.DataFrame([inv], columns=list(INVOICE_COLUMNS)),
            invoice_lines(inv["external_id"], D("100.00"), D("50.00")),
        )
        state = erp.read_invoice_payments([inv["external_id"], "inv:I404:v1:post"])
        assert list(state.columns) == list(INVOICE_PAYMENT_COLUMNS)
        (row,) = state.to_dict("records")
        assert row["external_id"] == inv["external_id"] and row["erp_number"]
        assert row["status"] == "posted" and row["amount_open"] == D("150.00")
        credit = {
            **inv,
            "external_id": "inv:I1:v1:rev",
            "kind": "reversal",
            "reverses_external_id": inv["external_id"],
            "total_amount": D("-150.00"),
        }
        erp.post_invoices(
            pd.DataFrame([credit], columns=list(INVOICE_COLUMNS)),
            invoice_lines(credit["external_id"], D("100.00"), D("50.00"), sign=-1),
        )
        (row,) = erp.read_invoice_payments([inv["external_id"], credit["external_id"]]).to_dict(
            "records"
        )
        assert row["external_id"] == inv["external_id"]
        assert row["status"] == "cancelled" and row["amount_open"] == D("0")

    def test_invoice_for_unknown_customer_is_rejected(self, erp: ErpTarget) -> None:
        good, bad = self.invoice(1, D("10.00")), self.invoice(2, D("10.00"), customer_id="C404")
        lines = pd.concat(
            [
                invoice_lines(good["external_id"], D("10.00")),
                invoice_lines(bad["external_id"], D("10.00")),
            ]
        )
        result = erp.post_invoices(pd.DataFrame([good, bad], columns=list(INVOICE_COLUMNS)), lines)
        assert result.accepted == [good["external_id"]]
        assert "C404" in result.rejected[bad["external_id"]]
