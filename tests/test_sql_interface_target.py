"""SqlInterfaceTarget: the shared ERP contract on DuckDB and PostgreSQL, plus its own checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from connectors.erp.base import INVOICE_COLUMNS, ErpUnavailable
from connectors.erp.sql_interface import SqlInterfaceTarget
from tests.support.erp_contract import (
    FAR,
    ErpContract,
    contract_master_data,
    frame,
    invoice,
    invoice_lines,
    line,
)
from tests.support.erp_faults import FaultInjection, FaultySqlInterfaceTarget
from tests.support.posting_helpers import pg_schema

D = Decimal


class TestSqlInterfaceOnDuckDB(ErpContract):
    @pytest.fixture
    def erp_target(self, tmp_path: Path) -> Iterator[SqlInterfaceTarget]:
        target = SqlInterfaceTarget(f"duckdb:///{tmp_path / 'erp.duckdb'}")
        yield target
        target.close()

    @pytest.fixture
    def setup_period(self, erp_target: SqlInterfaceTarget):
        return erp_target.set_period


class TestSqlInterfaceOnPostgres(ErpContract):
    @pytest.fixture
    def erp_target(self, pg_available: bool) -> Iterator[SqlInterfaceTarget]:
        with pg_schema(pg_available) as url:
            target = SqlInterfaceTarget(url)
            yield target
            target.close()

    @pytest.fixture
    def setup_period(self, erp_target: SqlInterfaceTarget):
        return erp_target.set_period


@pytest.fixture
def sql_erp(tmp_path: Path) -> Iterator[SqlInterfaceTarget]:
    target = SqlInterfaceTarget(f"duckdb:///{tmp_path / 'erp.duckdb'}")
    target.ensure_master_data(*contract_master_data())
    yield target
    target.close()


def test_master_data_is_never_changed(sql_erp: SqlInterfaceTarget) -> None:
    customers, employees, projects, tasks = contract_master_data()
    sql_erp.ensure_master_data(
        customers.assign(customer_name="Renamed"), employees, projects, tasks
    )
    with sql_erp.engine.connect() as c:
        names = c.exec_driver_sql("SELECT customer_name FROM erp_customers").scalars().all()
    assert names == ["Acme GmbH"]


def test_erp_like_checks_beyond_the_contract(sql_erp: SqlInterfaceTarget) -> None:
    other_entity = line(1, legal_entity="US01")
    other_currency = line(2, currency="USD")
    not_mirrored = line(3)
    sql_erp.post_time_lines(frame(not_mirrored))
    rev = {
        **not_mirrored,
        "external_id": "te:C3:v1:rev",
        "kind": "reversal",
        "reverses_external_id": not_mirrored["external_id"],
        "hours": D("-1"),
        "amount": D("-100.00"),
    }
    result = sql_erp.post_time_lines(frame(other_entity, other_currency, rev))
    assert result.rejected == {
        "te:C1:v1:post": "Project P1 belongs to legal entity DE01, not US01",
        "te:C2:v1:post": "Currency USD differs from project P1 currency EUR",
        "te:C3:v1:rev": "Reversal must mirror line te:C3:v1:post with opposite hours and amount",
    }


def test_invoice_total_must_match_its_lines(sql_erp: SqlInterfaceTarget) -> None:
    inv = invoice(1, D("99.00"))
    result = sql_erp.post_invoices(
        pd.DataFrame([inv], columns=list(INVOICE_COLUMNS)),
        invoice_lines(inv["external_id"], D("100.00")),
    )
    assert result.rejected == {
        inv["external_id"]: "Invoice I1 total 99.00 differs from the sum of its lines 100.00"
    }


def test_credit_note_marks_the_invoice_reversed(sql_erp: SqlInterfaceTarget) -> None:
    inv = invoice(1, D("100.00"))
    sql_erp.post_invoices(
        pd.DataFrame([inv], columns=list(INVOICE_COLUMNS)),
        invoice_lines(inv["external_id"], D("100.00")),
    )
    credit = {
        **inv,
        "external_id": "inv:I1:v1:rev",
        "kind": "reversal",
        "reverses_external_id": inv["external_id"],
        "total_amount": D("-100.00"),
    }
    twice = {**credit, "external_id": "inv:I1:v1:rev2"}
    sql_erp.post_invoices(
        pd.DataFrame([credit], columns=list(INVOICE_COLUMNS)),
        invoice_lines(credit["external_id"], D("100.00"), sign=-1),
    )
    second = sql_erp.post_invoices(
        pd.DataFrame([twice], columns=list(INVOICE_COLUMNS)),
        invoice_lines(twice["external_id"], D("100.00"), sign=-1),
    )
    assert "already credited" in second.rejected[twice["external_id"]]
    status = sql_erp.read_invoices(*FAR).set_index("external_id")["status"].to_dict()
    assert status == {"inv:I1:v1:post": "reversed", "inv:I1:v1:rev": "posted"}
    credit_lines = sql_erp.read_invoice_lines(["inv:I1:v1:rev"])
    assert credit_lines["amount"].tolist() == [D("-100.00")]


def test_floats_are_refused(sql_erp: SqlInterfaceTarget) -> None:
    bad = frame(line(1)).astype({"hours": float})
    with pytest.raises(TypeError, match="hours"):
        sql_erp.post_time_lines(bad)
    assert sql_erp.read_time_lines(*FAR).empty


def test_more_decimals_than_the_erp_holds_are_refused(sql_erp: SqlInterfaceTarget) -> None:
    with pytest.raises(Exception, match="data loss"):
        sql_erp.post_time_lines(frame(line(1, hours=D("1.23456"))))


def test_fault_injection_unavailable_and_lost_response(tmp_path: Path) -> None:
    faults = FaultInjection(lose_response_on_posts={1})
    target = FaultySqlInterfaceTarget(f"duckdb:///{tmp_path / 'erp.duckdb'}", faults=faults)
    target.ensure_master_data(*contract_master_data())
    with pytest.raises(ErpUnavailable, match="lost"):
        target.post_time_lines(frame(line(1)))
    # The response was lost, the line was not: it is there once.
    assert target.existing_external_ids(["te:C1:v1:post"]) == {"te:C1:v1:post"}
    faults.unavailable = True
    with pytest.raises(ErpUnavailable):
        target.existing_external_ids(["te:C1:v1:post"])
    target.close()


def test_unreachable_database_is_unavailable_without_the_password() -> None:
    target_url = "postgresql://stagepost:s3cret-pw@127.0.0.1:9/erp"
    with pytest.raises(ErpUnavailable) as e:
        SqlInterfaceTarget(target_url)
    assert "s3cret-pw" not in str(e.value)
    assert "***" in str(e.value)


def test_open_periods_covers_every_month_and_entity(sql_erp: SqlInterfaceTarget) -> None:
    sql_erp.set_period("US01", "2026-12", False)
    p = sql_erp.open_periods(["DE01", "US01"], date(2026, 11, 15), date(2027, 1, 2))
    assert len(p) == 6
    closed = p[~p["is_open"]]
    assert closed[["legal_entity", "period"]].values.tolist() == [["US01", "2026-12"]]


def test_an_id_repeated_in_one_request_is_created_once(sql_erp: SqlInterfaceTarget) -> None:
    result = sql_erp.post_time_lines(frame(line(1), line(1, hours=D("1"), amount=D("100.00"))))
    assert result.accepted == ["te:C1:v1:post"] and not result.rejected
    back = sql_erp.read_time_lines(*FAR)
    assert back["hours"].tolist() == [D("7.5000")]  # the first one wins


def test_documented_ddl_is_the_real_ddl() -> None:
    from connectors.erp.sql_interface import ddl_text

    doc = (Path(__file__).parent.parent / "docs" / "erp_interface_tables.md").read_text()
    assert ddl_text() in doc
