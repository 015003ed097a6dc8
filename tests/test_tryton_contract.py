"""The shared ERP contract against a real Tryton 8.2, plus posting windows into Tryton.

One trytond serves the whole module (`tryton_host`); every test gets its own fresh
copy of the template database, so the contract's "fresh, empty target" holds.
The contract's master data lands on the template's only company: legal entity
`SPC-US`, currency USD (see `tests/support/tryton_fixtures.py`, `tests/support/tryton_build.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from connectors.erp.base import INVOICE_COLUMNS
from connectors.erp.tryton import TrytonTarget
from posting.window import RetryPolicy, WindowConfig, WindowResult, run_window
from resources.erp import ErpResource
from staging_models.db import StagingDB
from tests.support.erp_contract import (
    ContractProfile,
    ErpContract,
    contract_master_data,
    invoice,
    invoice_lines,
)
from tests.support.posting_helpers import correct, ledger, stage_entries
from tests.support.tryton_build import COMPANY_NAME, CURRENCY_CODE, PRODUCT_LIST_PRICE
from tests.support.tryton_fixtures import FISCAL_YEAR, LEGAL_ENTITY, work_duration

if TYPE_CHECKING:
    from tests.support.tryton_fixtures import TrytonHost

pytestmark = pytest.mark.slow

D = Decimal
FAR = (dt.date(2000, 1, 1), dt.date(2100, 12, 31))


def set_period(target: TrytonTarget, legal_entity: str, period: str, is_open: bool) -> None:
    """Close or reopen the company's standard period of that month with Tryton's buttons."""
    company = target.session.refs.company_of[legal_entity]
    start = dt.date.fromisoformat(f"{period}-01")
    (found,) = target.rpc.model(
        "account.period",
        "search_read",
        [("company", "=", company), ("type", "=", "standard"), ("start_date", "=", start)],
        0,
        None,
        None,
        ["state"],
    )
    if is_open and found["state"] == "closed":
        target.rpc.model("account.period", "reopen", [found["id"]])
    elif not is_open and found["state"] == "open":
        target.rpc.model("account.period", "close", [found["id"]])


class TestTrytonContract(ErpContract):
    """Tryton differs by design in three places: it values time at the work's own price
    (a timesheet line carries no rate), it words a closed period as "reopen ...", and a
    credited invoice stays posted beside its credit note."""

    profile = ContractProfile(
        legal_entity=LEGAL_ENTITY,
        currency=CURRENCY_CODE,
        erp_values_time=True,
        closed_period_wording="reopen",
        credited_invoice_status="posted",
    )

    @pytest.fixture
    def erp_target(self, tryton_host: TrytonHost) -> TrytonTarget:
        return tryton_host.fresh_target()

    @pytest.fixture
    def setup_period(self, erp_target: TrytonTarget) -> Callable[[str, str, bool], None]:
        return lambda legal_entity, period, is_open: set_period(
            erp_target, legal_entity, period, is_open
        )


def test_invoices_dated_after_today_are_posted(tryton_host: TrytonHost) -> None:
    """Tryton warns a person about an invoice date in the future; the PSA's date stands.

    Regression: such invoices were rejected (and their drafts deleted), so whether a
    window posted an invoice dated at month end depended on the day it ran."""
    issue = dt.date.today() + dt.timedelta(days=3)
    if issue.year != FISCAL_YEAR:
        pytest.skip(f"the template only has fiscal year {FISCAL_YEAR}; no future day left in it")
    erp = tryton_host.fresh_target()
    erp.ensure_master_data(*contract_master_data(LEGAL_ENTITY, CURRENCY_CODE))
    both = [
        invoice(
            n,
            D("80.00"),
            legal_entity=LEGAL_ENTITY,
            currency=CURRENCY_CODE,
            issue_date=issue,
            due_date=issue + dt.timedelta(days=30),
            period=f"{issue:%Y-%m}",
        )
        for n in (1, 2)
    ]
    result = erp.post_invoices(
        pd.DataFrame(both, columns=list(INVOICE_COLUMNS)),
        pd.concat(invoice_lines(i["external_id"], D("80.00")) for i in both),
    )
    assert sorted(result.accepted) == ["inv:I1:v1:post", "inv:I2:v1:post"]
    assert not result.rejected
    back = erp.read_invoices(issue, issue)
    assert back["status"].tolist() == ["posted", "posted"]


# -- the ERP resource and a posting window into Tryton ---------------------------------------


def resource_for(host: TrytonHost, database: str, **kw) -> ErpResource:
    return ErpResource(
        kind="tryton",
        url=host.server.url,
        database=database,
        user="admin",
        password=host.server.password,
        **kw,
    )


def test_erp_resource_builds_a_working_tryton_target(tryton_host: TrytonHost) -> None:
    database = tryton_host.fresh_database()
    mapped = resource_for(tryton_host, database, legal_entities={"DE01": 1}).get_target()
    assert isinstance(mapped, TrytonTarget)
    assert mapped.rpc.database == database
    assert tryton_host.server.password not in repr(mapped)
    periods = mapped.open_periods(["DE01"], dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert periods[["legal_entity", "period", "is_open"]].values.tolist() == [
        ["DE01", "2026-11", True]
    ]
    # Without a mapping a legal entity is the company party's name.
    by_name = resource_for(tryton_host, database).get_target()
    assert by_name.session.refs.company_of == {COMPANY_NAME: 1}
    described = resource_for(tryton_host, database).describe()
    assert database in described and tryton_host.server.password not in described


def _window(db: StagingDB, erp: TrytonTarget) -> WindowResult:
    return run_window(
        db,
        erp,
        WindowConfig(dry_run=False, retry=RetryPolicy(attempts=2, base_delay=0)),
        sleep=lambda s: None,
    )


def _net(lines: pd.DataFrame, column: str) -> dict[str, Decimal]:
    net = lines.groupby("entry_id")[column].apply(lambda s: sum(s, D(0)))
    return {k: v for k, v in net.items() if v != 0}


def test_posting_window_into_tryton_posts_once_and_reverses_corrections(
    tryton_host: TrytonHost, tmp_path: Path
) -> None:
    """Staging -> run_window -> Tryton, through the resource the code location uses."""
    erp = resource_for(
        tryton_host, tryton_host.fresh_database(), legal_entities={LEGAL_ENTITY: 1}
    ).get_target()
    # Master data staging would validate; the window pushes only what staging holds.
    erp.ensure_master_data(*contract_master_data(LEGAL_ENTITY, CURRENCY_CODE))
    db = StagingDB(f"duckdb:///{tmp_path / 'staging.duckdb'}")
    db.init_schema()
    rate = PRODUCT_LIST_PRICE  # Tryton values time at the work's price: keep them equal
    common = {"legal_entity": LEGAL_ENTITY, "currency": CURRENCY_CODE, "bill_rate": rate}
    stage_entries(
        db,
        [
            {"entry_id": "TE1", **common},
            {"entry_id": "TE2", **common, "employee_id": "E2", "task_code": "T2"},
            {"entry_id": "TE3", **common, "project_code": "P2", "hours": D("0.25")},
        ],
    )

    first = _window(db, erp)
    assert first.status == "completed", first.message
    assert first.counts["confirmed"] == 3 and first.counts["rejected"] == 0
    lines = erp.read_time_lines(*FAR).set_index("external_id")
    assert sorted(lines.index) == ["te:TE1:v1:post", "te:TE2:v1:post", "te:TE3:v1:post"]
    assert lines.loc[
        "te:TE3:v1:post", ["project_code", "task_code", "hours", "amount"]
    ].tolist() == [
        "P2",
        "T1",
        D("0.25"),
        D("25.00"),
    ]

    again = _window(db, erp)
    assert again.counts["lines_sendable"] == 0
    assert erp.rpc.model("timesheet.line", "search_count", []) == 3  # exactly once

    v = correct(db, "TE1", hours=D("5.25"), **common)
    third = _window(db, erp)
    assert third.status == "completed", third.message
    assert third.counts["time_line_reversal_planned"] == 1
    assert third.counts["time_line_post_planned"] == 1
    lines = erp.read_time_lines(*FAR)
    by_id = lines.set_index("external_id")
    rev = by_id.loc["te:TE1:v1:rev"]
    assert (rev["kind"], rev["reverses_external_id"]) == ("reversal", "te:TE1:v1:post")
    assert (rev["hours"], rev["amount"]) == (D("-7.5"), D("-750.00"))
    assert by_id.loc[f"te:TE1:v{v}:post", "hours"] == D("5.25")
    assert _net(lines, "hours") == {"TE1": D("5.25"), "TE2": D("7.5"), "TE3": D("0.25")}
    assert sum(lines["amount"], D(0)) == D("525.00") + D("750.00") + D("25.00")
    assert work_duration(erp.rpc, "P1::T1") == dt.timedelta(hours=5.25)  # Tryton's own total nets

    # The ledger and Tryton agree line by line.
    posted = ledger(db)
    assert lines["external_id"].is_unique
    assert set(posted.loc[posted["state"] == "confirmed", "external_id"]) == set(
        lines["external_id"]
    )
    assert not set(posted["state"]) & {"planned", "sent"}
    assert _window(db, erp).counts["lines_sendable"] == 0
    assert erp.rpc.model("timesheet.line", "search_count", []) == 5
