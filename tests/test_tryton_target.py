"""TrytonTarget against a real trytond 8.2 (JSON-RPC, SQLite copy of a cached template)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from connectors.erp.base import (
    INVOICE_COLUMNS,
    INVOICE_LINE_COLUMNS,
    TIME_LINE_COLUMNS,
    ErpError,
    ErpUnavailable,
    PostResult,
)
from connectors.erp.tryton import TrytonTarget
from connectors.erp.tryton_rpc import TrytonUserError
from tests.support.tryton_fixtures import work_duration

if TYPE_CHECKING:
    from tests.support.tryton_fixtures import TrytonServer

# Registered here for standalone runs; tests/conftest.py may register it for the suite.

#: The legal entity the fixtures map to the template's only company.
LEGAL_ENTITY = "SPC-US"

pytestmark = pytest.mark.slow

CUSTOMERS = pd.DataFrame({"customer_id": ["C1", "C2"], "customer_name": ["Acme Corp", "Globex"]})
EMPLOYEES = pd.DataFrame(
    {
        "employee_id": ["E1", "E2", "E3"],
        "employee_name": ["Ada Lovelace", "Bob Page", "Cy Young"],
        "legal_entity": [LEGAL_ENTITY] * 3,
    }
)
PROJECTS = pd.DataFrame(
    {
        "project_code": ["P1", "P2"],
        "project_name": ["Audit 2026", "Migration"],
        "customer_id": ["C1", "C2"],
        "legal_entity": [LEGAL_ENTITY] * 2,
        "currency": ["USD", "USD"],
        "list_price": [Decimal("150.00"), None],
    }
)
TASKS = pd.DataFrame(
    {
        "project_code": ["P1", "P1", "P2"],
        "task_code": ["T1", "T2", "T1"],
        "task_name": ["Fieldwork", "Report", "Cutover"],
    }
)


def ensure(target: TrytonTarget) -> None:
    target.ensure_master_data(CUSTOMERS, EMPLOYEES, PROJECTS, TASKS)


def time_lines(*rows: dict) -> pd.DataFrame:
    """Time lines with sensible defaults; each row overrides what it needs."""
    defaults = {
        "kind": "post",
        "reverses_external_id": None,
        "entry_version": 1,
        "legal_entity": LEGAL_ENTITY,
        "employee_id": "E1",
        "project_code": "P1",
        "task_code": "T1",
        "work_date": dt.date(2026, 3, 2),
        "period": None,
        "hours": Decimal("1.50"),
        "bill_rate": Decimal("150.00"),
        "currency": "USD",
        "description": "work",
    }
    records = []
    for row in rows:
        record = {**defaults, **row}
        record.setdefault("entry_id", record["external_id"].split("@")[0])
        if record["period"] is None:
            record["period"] = record["work_date"].strftime("%Y-%m")
        record["amount"] = (record["hours"] * record["bill_rate"]).quantize(Decimal("0.01"))
        records.append(record)
    return pd.DataFrame(records, columns=list(TIME_LINE_COLUMNS))


def count(target: TrytonTarget, model: str, domain: list | None = None) -> int:
    return target.rpc.model(model, "search_count", domain or [])


def close_period(target: TrytonTarget, name: str) -> None:
    (period,) = target.rpc.model("account.period", "search", [("name", "=", name)], 0, 1, None)
    target.rpc.model("account.period", "close", [period])


def test_master_data_is_idempotent(
    tryton_target: TrytonTarget, tryton_server: TrytonServer
) -> None:
    assert tryton_server.legal_entities == {LEGAL_ENTITY: 1}
    ensure(tryton_target)
    counts = {
        m: count(tryton_target, m) for m in ("party.party", "company.employee", "project.work")
    }
    ensure(tryton_target)
    assert {m: count(tryton_target, m) for m in counts} == counts
    assert counts["company.employee"] == 3
    works = tryton_target.rpc.model(
        "project.work",
        "search_read",
        [("external_id", "!=", None)],
        0,
        None,
        None,
        ["external_id", "type", "list_price", "timesheet_works", "project_invoice_method"],
    )
    by_ext = {w["external_id"]: w for w in works}
    assert set(by_ext) == {"P1", "P2", "P1::T1", "P1::T2", "P2::T1"}
    assert by_ext["P1::T1"]["list_price"] == Decimal("150.00")  # from its project
    assert by_ext["P2::T1"]["list_price"] == Decimal("100.00")  # the product's list price
    assert all(w["timesheet_works"] and w["project_invoice_method"] == "timesheet" for w in works)


def test_posted_lines_are_found_and_never_posted_twice(tryton_target: TrytonTarget) -> None:
    ensure(tryton_target)
    lines = time_lines(
        {"external_id": "A@1"},
        {"external_id": "B@1", "employee_id": "E2", "task_code": "T2", "hours": Decimal("7.25")},
        {"external_id": "C@1", "project_code": "P2", "hours": Decimal("0.33")},
    )
    first = tryton_target.post_time_lines(lines)
    assert sorted(first.accepted) == ["A@1", "B@1", "C@1"] and not first.rejected
    assert tryton_target.existing_external_ids(["A@1", "B@1", "C@1", "Z@1"]) == {
        "A@1",
        "B@1",
        "C@1",
    }

    again = tryton_target.post_time_lines(lines)
    assert sorted(again.accepted) == ["A@1", "B@1", "C@1"]
    assert count(tryton_target, "timesheet.line") == 3

    read = tryton_target.read_time_lines(dt.date(2026, 3, 1), dt.date(2026, 3, 31)).set_index(
        "external_id"
    )
    assert read.loc["B@1", "hours"] == Decimal("7.25")
    assert read.loc["B@1", "amount"] == Decimal("1087.50")  # 7.25 h x 150.00
    assert read.loc["C@1", ["project_code", "task_code", "bill_rate"]].tolist() == [
        "P2",
        "T1",
        Decimal("100.00"),
    ]
    assert read.loc[
        "A@1", ["legal_entity", "employee_id", "period", "currency", "kind"]
    ].tolist() == [
        LEGAL_ENTITY,
        "E1",
        "2026-03",
        "USD",
        "post",
    ]


def test_unique_external_id_stops_concurrent_duplicates(
    tryton_target: TrytonTarget, tryton_server: TrytonServer
) -> None:
    ensure(tryton_target)
    tryton_target.post_time_lines(time_lines({"external_id": "A@1"}))
    fields = ["company", "employee", "work", "date", "duration"]
    (line,) = tryton_target.rpc.model(
        "timesheet.line", "search_read", [("external_id", "=", "A@1")], 0, None, None, fields
    )
    duplicate = {k: v for k, v in line.items() if k != "id"} | {"external_id": "A@1"}
    with pytest.raises(TrytonUserError, match="The external ID must be unique"):
        tryton_target.rpc.model("timesheet.line", "create", [duplicate])

    # Two runs post the same 300 lines at once: each ID lands once, both runs accept all.
    lines = time_lines(*({"external_id": f"R{i}@1"} for i in range(300)))
    results: list[PostResult] = []
    runs = [tryton_server.target(batch_size=50) for _ in range(2)]
    threads = [
        threading.Thread(target=lambda t=t: results.append(t.post_time_lines(lines))) for t in runs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    for result in results:
        assert sorted(result.accepted) == sorted(lines["external_id"]) and not result.rejected
    assert count(tryton_target, "timesheet.line", [("external_id", "like", "R%")]) == 300


def test_reversal_nets_hours_to_zero(tryton_target: TrytonTarget) -> None:
    ensure(tryton_target)
    # Stock Tryton refuses a negative duration; the stagepost module allows it on reversals only.
    with pytest.raises(TrytonUserError, match="Duration"):
        tryton_target.rpc.model(
            "timesheet.line",
            "create",
            [
                {
                    "company": 1,
                    "employee": 1,
                    "work": 1,
                    "date": dt.date(2026, 3, 2),
                    "duration": dt.timedelta(hours=-1),
                }
            ],
        )
    original = time_lines({"external_id": "A@1", "hours": Decimal("4.00")})
    assert tryton_target.post_time_lines(original).accepted == ["A@1"]
    new_version = time_lines(
        {
            "external_id": "A@1~rev",
            "entry_id": "A",
            "kind": "reversal",
            "reverses_external_id": "A@1",
            "hours": Decimal("-4.00"),
        },
        {"external_id": "A@2", "entry_id": "A", "entry_version": 2, "hours": Decimal("3.00")},
        {"external_id": "B@1", "hours": Decimal("-1.00")},
    )
    result = tryton_target.post_time_lines(new_version)
    assert sorted(result.accepted) == ["A@1~rev", "A@2"]
    assert result.rejected == {"B@1": "negative hours are only allowed on a reversal"}

    read = tryton_target.read_time_lines(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    reversal = read.set_index("external_id").loc["A@1~rev"]
    assert reversal["kind"] == "reversal" and reversal["reverses_external_id"] == "A@1"
    assert reversal["hours"] == Decimal("-4.00") and reversal["amount"] == Decimal("-600.00")
    by_entry = read.groupby("entry_id")["hours"].sum()
    assert by_entry["A"] == Decimal("3.00")
    assert read.loc[read["external_id"] != "A@2", "hours"].sum() == 0

    # Tryton checks the reversal itself: exactly once, with the opposite duration.
    again = tryton_target.post_time_lines(
        time_lines(
            {
                "external_id": "A@1~rev2",
                "kind": "reversal",
                "reverses_external_id": "A@1",
                "hours": Decimal("-4.00"),
            },
            {
                "external_id": "A@2~rev",
                "kind": "reversal",
                "reverses_external_id": "A@2",
                "hours": Decimal("-2.00"),
            },
        )
    )
    assert not again.accepted and set(again.rejected) == {"A@1~rev2", "A@2~rev"}
    assert again.rejected["A@1~rev2"] == "A timesheet line can be reversed only once."
    assert "the opposite duration" in again.rejected["A@2~rev"]
    assert work_duration(tryton_target.rpc, "P1::T1") == dt.timedelta(hours=3)  # nets too


def test_unknown_project_is_rejected_per_line(tryton_target: TrytonTarget) -> None:
    ensure(tryton_target)
    lines = time_lines(
        *({"external_id": f"G{i}@1"} for i in range(4)),
        {"external_id": "X@1", "project_code": "NOPE"},
        {"external_id": "Y@1", "employee_id": "E404"},
    )
    result = tryton_target.post_time_lines(lines)
    assert sorted(result.accepted) == ["G0@1", "G1@1", "G2@1", "G3@1"]
    assert result.rejected == {
        "X@1": "project/task NOPE::T1 is not in Tryton",
        "Y@1": "employee E404 is not in Tryton",
    }
    assert count(tryton_target, "timesheet.line") == 4


def test_closed_period_rejects_with_trytons_message(tryton_target: TrytonTarget) -> None:
    ensure(tryton_target)
    feb = dt.date(2026, 2, 10)
    assert tryton_target.post_time_lines(
        time_lines({"external_id": "F@1", "work_date": feb})
    ).accepted == ["F@1"]
    close_period(tryton_target, "2026-02")

    periods = tryton_target.open_periods([LEGAL_ENTITY], dt.date(2026, 1, 1), dt.date(2027, 1, 31))
    state = dict(zip(periods["period"], periods["is_open"], strict=True))
    assert not state["2026-02"]
    assert state["2026-03"] and state["2026-12"] and not state["2027-01"]  # 2027: no fiscal year
    assert len(periods) == 13

    result = tryton_target.post_time_lines(
        time_lines(
            *(
                {"external_id": f"F{i}@1", "work_date": feb + dt.timedelta(days=i % 2)}
                for i in range(2, 7)
            ),
            {"external_id": "M@1", "work_date": dt.date(2026, 3, 3)},
            # The correction of a February line goes into the open March period.
            {
                "external_id": "F@1~rev",
                "kind": "reversal",
                "reverses_external_id": "F@1",
                "work_date": feb,
                "period": "2026-03",
                "hours": Decimal("-1.50"),
            },
        )
    )
    assert sorted(result.accepted) == ["F@1~rev", "M@1"]
    assert set(result.rejected) == {f"F{i}@1" for i in range(2, 7)}
    assert result.rejected["F2@1"] == (
        'To continue, you must reopen the period "2026-02" of company "Stagepost Consulting"'
        ' for the date "02/10/2026".'
    )
    assert result.rejected["F3@1"].endswith('for the date "02/11/2026".')
    read = tryton_target.read_time_lines(feb, feb).set_index("external_id")
    assert read.loc["F@1~rev", "period"] == "2026-03" and read.loc["F@1", "period"] == "2026-02"

    tryton_target.ensure_master_data(CUSTOMERS, EMPLOYEES, PROJECTS, TASKS)
    invoices, lines = invoice_frames("INV-FEB@1", issue=dt.date(2026, 2, 27))
    posted = tryton_target.post_invoices(invoices, lines)
    assert posted.rejected == {
        "INV-FEB@1": 'To continue, you must reopen the period "2026-02" of company '
        '"Stagepost Consulting" for the date "02/27/2026".'
    }
    assert count(tryton_target, "account.invoice") == 0  # the refused draft was removed


def test_erp_down_is_unavailable_quickly(tryton_server: TrytonServer) -> None:
    target = tryton_server.target(timeout=5)
    ensure(target)
    with pytest.raises(ErpError) as refused:
        TrytonTarget(tryton_server.url, "stagepost", "admin", "wrong-secret").existing_external_ids(
            ["A"]
        )
    assert "wrong-secret" not in str(refused.value)
    tryton_server.stop()
    started = time.perf_counter()
    with pytest.raises(ErpUnavailable) as down:
        target.post_time_lines(time_lines({"external_id": "A@1"}))
    assert time.perf_counter() - started < 1.0
    assert tryton_server.password not in str(down.value) and "refused" in str(down.value).lower()


def invoice_frames(
    external_id: str,
    issue: dt.date = dt.date(2026, 3, 31),
    kind: str = "post",
    reverses: str | None = None,
    sign: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    lines = pd.DataFrame(
        {
            "invoice_external_id": [external_id, external_id],
            "line_no": [1, 2],
            "line_kind": ["time", "time"],
            "description": ["Fieldwork March", "Report March"],
            "quantity": [Decimal("10.00") * sign, Decimal("2.50") * sign],
            "unit_price": [Decimal("150.00"), Decimal("150.00")],
            "amount": [Decimal("1500.00") * sign, Decimal("375.00") * sign],
        },
        columns=list(INVOICE_LINE_COLUMNS),
    )
    invoices = pd.DataFrame(
        [
            {
                "external_id": external_id,
                "kind": kind,
                "reverses_external_id": reverses,
                "invoice_id": external_id.split("@")[0],
                "invoice_version": 1,
                "legal_entity": LEGAL_ENTITY,
                "project_code": "P1",
                "customer_id": "C1",
                "currency": "USD",
                "issue_date": issue,
                "due_date": issue + dt.timedelta(days=30),
                "period": issue.strftime("%Y-%m"),
                "total_amount": Decimal("1875.00") * sign,
                "status": None,
            }
        ],
        columns=list(INVOICE_COLUMNS),
    )
    return invoices, lines


def test_invoice_is_posted_read_back_and_credited(tryton_target: TrytonTarget) -> None:
    ensure(tryton_target)
    invoices, lines = invoice_frames("INV-1@1")
    # Two more in the same call: one for an unknown customer, one Tryton refuses.
    stranger, stranger_lines = invoice_frames("INV-2@1")
    stranger["customer_id"] = "C404"
    odd, odd_lines = invoice_frames("INV-3@1")
    odd_lines["quantity"] = [Decimal("1.333"), Decimal("1")]  # hours are kept to 2 decimals
    result = tryton_target.post_invoices(
        pd.concat([invoices, stranger, odd]), pd.concat([lines, stranger_lines, odd_lines])
    )
    assert result.accepted == ["INV-1@1"]
    assert result.rejected["INV-2@1"] == "customer C404 is not in Tryton"
    assert "Quantity" in result.rejected["INV-3@1"]
    assert tryton_target.post_invoices(invoices, lines).accepted == ["INV-1@1"]
    assert count(tryton_target, "account.invoice") == 1
    assert tryton_target.existing_external_ids(["INV-1@1"]) == {"INV-1@1"}

    credit, credit_lines = invoice_frames(
        "INV-1@1~rev", issue=dt.date(2026, 4, 2), kind="reversal", reverses="INV-1@1", sign=-1
    )
    result = tryton_target.post_invoices(credit, credit_lines)
    assert result.accepted == ["INV-1@1~rev"] and not result.rejected

    read = tryton_target.read_invoices(dt.date(2026, 3, 1), dt.date(2026, 4, 30)).set_index(
        "external_id"
    )
    assert read.loc[
        "INV-1@1", ["status", "total_amount", "customer_id", "project_code"]
    ].tolist() == [
        "posted",
        Decimal("1875.00"),
        "C1",
        "P1",
    ]
    assert read.loc["INV-1@1", "due_date"] == dt.date(2026, 4, 30)
    assert read.loc[
        "INV-1@1~rev", ["kind", "reverses_external_id", "status", "period"]
    ].tolist() == [
        "reversal",
        "INV-1@1",
        "posted",
        "2026-04",
    ]
    assert read["total_amount"].sum() == 0


def test_two_thousand_lines_in_batches(
    tryton_target: TrytonTarget, capsys: pytest.CaptureFixture
) -> None:
    ensure(tryton_target)
    employees, tasks = ["E1", "E2", "E3"], [("P1", "T1"), ("P1", "T2"), ("P2", "T1")]
    lines = time_lines(
        *(
            {
                "external_id": f"N{i}@1",
                "employee_id": employees[i % 3],
                "project_code": tasks[(i // 3) % 3][0],
                "task_code": tasks[(i // 3) % 3][1],
                "work_date": dt.date(2026, 3, 1) + dt.timedelta(days=i % 61),
                "hours": Decimal(1 + i % 8) / 4,
            }
            for i in range(2000)
        )
    )
    started = time.perf_counter()
    result = tryton_target.post_time_lines(lines)
    posted = time.perf_counter() - started
    assert len(result.accepted) == 2000 and not result.rejected

    started = time.perf_counter()
    again = tryton_target.post_time_lines(lines)
    skipped = time.perf_counter() - started
    assert len(again.accepted) == 2000

    started = time.perf_counter()
    read = tryton_target.read_time_lines(dt.date(2026, 3, 1), dt.date(2026, 4, 30))
    reading = time.perf_counter() - started
    assert len(read) == 2000 and read["hours"].sum() == lines["hours"].sum()
    with capsys.disabled():
        print(
            f"\n2,000 lines: post {posted:.2f} s (batches of {tryton_target.batch_size}),"
            f" re-post skipped in {skipped:.2f} s, read back in {reading:.2f} s"
        )
