"""Every figure of the UI's metadata tables is exact: each amount of a posting window,
validation and reconciliation materialization is rendered and compared with the ledger's
(or staging's) exact Decimal sums, per currency. Amounts are chosen so that six significant
digits would show them wrong (13,376.25 as 13376.2; 4,408,470.00 as 4.40847e+06)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetCheckEvaluation,
    DagsterInstance,
    Definitions,
    RunConfig,
    materialize,
)

from assets.metadata_tables import markdown_text
from assets.posting import POSTING_ASSET, PostingWindowConfig, posting_window
from assets.reconciliation import ReconciliationConfig, WorkbookConfig, reconciliation_assets
from assets.validation import (
    every_row_accounted_for,
    open_quarantine_by_rule,
    validated_master_data,
    validated_time_entries,
)
from connectors.erp.sql_interface import SqlInterfaceTarget
from io_managers.staging_table import StagingTableIOManager
from pipelines.posting_jobs import posting_window_job
from resources.erp import ErpResource, PostingPolicy
from resources.feedback import OutboundDelivery
from resources.psa_source import PsaSource
from resources.reports import ReportUpload
from resources.staging import StagingDatabase
from staging_models.db import StagingDB, dispose_all, staging_db
from staging_models.figures import decimal_text, rate
from staging_models.ledger_tables import ledger_rows
from tests.support.posting_helpers import stage_entries, with_master_data

D = Decimal
#: hours x rate: 107.01 x 125 = 13,376.25 EUR; 8 x 551,058.75 = 4,408,470.00 EUR;
#: 3.5 x 99.99 = 349.97 (349.965 rounded half up) USD.
ENTRIES = [
    {"entry_id": "TE1", "hours": D("107.0100"), "bill_rate": D("125.0000")},
    {"entry_id": "TE2", "hours": D("8.0000"), "bill_rate": D("551058.7500")},
    {
        "entry_id": "TE3",
        "hours": D("3.5000"),
        "bill_rate": D("99.9900"),
        "legal_entity": "US01",
        "project_code": "UP1",
        "currency": "USD",
    },
]


def parse_markdown(text: str) -> pd.DataFrame:
    """A markdown table (as the UI renders it) back into text cells."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.strip().splitlines()
    ]
    header, body = rows[0], [r for r in rows[2:]]
    return pd.DataFrame(body, columns=header)


def exact(text: str) -> Decimal:
    """A figure as the UI shows it, read back: only thousands separators are dropped."""
    return Decimal(text.replace(",", ""))


def sums(db: StagingDB, sql: str) -> dict[str, Decimal]:
    return {cur: amount for cur, amount in db.query_df(sql).itertuples(index=False)}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict]:
    staging = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    erp = f"duckdb:///{tmp_path / 'erp.duckdb'}"
    target = SqlInterfaceTarget(erp)
    with_master_data(target)
    target.close()
    db = staging_db(staging)
    stage_entries(db, ENTRIES)
    yield {"staging": staging, "erp": erp, "db": db, "tmp": tmp_path}
    dispose_all()


def _window(world: dict, dry_run: bool):
    defs = Definitions(
        assets=[posting_window],
        jobs=[posting_window_job],
        resources={
            "staging": StagingDatabase(url=world["staging"]),
            "erp": ErpResource(kind="sql", url=world["erp"]),
            "posting_policy": PostingPolicy(preview_dir=str(world["tmp"] / "previews")),
        },
    )
    result = defs.resolve_job_def(posting_window_job.name).execute_in_process(
        instance=DagsterInstance.ephemeral(),
        run_config=RunConfig(
            ops={
                POSTING_ASSET: PostingWindowConfig(
                    dry_run=dry_run, operator="controller@example.com"
                )
            }
        ),
    )
    assert result.success
    return result.asset_materializations_for_node(POSTING_ASSET)[0].metadata


def _assert_plan_table(md: dict, db: StagingDB, state_sql: str) -> None:
    """Each row of the plan table: its hours and amount equal the ledger's for that row."""
    plan = parse_markdown(md["plan"].value)
    assert len(plan) == 2  # one per project and currency
    expected = db.query_df(
        f"""SELECT project_code, currency, SUM(hours) AS hours, SUM(amount) AS amount
            FROM {state_sql} GROUP BY project_code, currency"""
    ).set_index("project_code")
    for row in plan.itertuples(index=False):
        assert exact(row.amount) == expected.loc[row.project_code, "amount"], row
        assert exact(row.hours) == expected.loc[row.project_code, "hours"], row
        assert row.currency == expected.loc[row.project_code, "currency"]
    assert "13,376.2 " not in md["plan"].value and "e+06" not in md["plan"].value


def test_posting_window_amounts_are_the_ledgers(world: dict) -> None:
    db = world["db"]
    md = _window(world, dry_run=False)
    ledger = f"{ledger_rows('posting_ledger')} l WHERE state = 'confirmed'"
    expected = sums(db, f"SELECT currency, SUM(amount) FROM {ledger} GROUP BY currency")
    assert expected == {"EUR": D("4421846.25"), "USD": D("349.97")}
    got = md["amount_confirmed_time_lines"].value
    assert {c: exact(a) for c, a in got.items()} == expected
    assert got == {"EUR": "4,421,846.25", "USD": "349.97"}
    hours = db.query_df(f"SELECT SUM(hours) AS h FROM {ledger}")["h"].iloc[0]
    assert exact(md["hours_confirmed"].value) == hours
    _assert_plan_table(md, db, ledger)


def test_dry_run_shows_its_plan_and_no_confirmed_figures(world: dict) -> None:
    db = world["db"]
    md = _window(world, dry_run=True)
    for key in ("hours_confirmed", "amount_confirmed_time_lines", "confirmed", "rejected"):
        assert key not in md, key
    assert md["lines_planned"].value == 3
    valid = "validated_time_entries"
    expected = sums(db, f"SELECT currency, SUM(amount) FROM {valid} GROUP BY currency")
    got = md["amount_planned_time_lines"].value
    assert {c: exact(a) for c, a in got.items()} == expected
    assert got["EUR"] == "4,421,846.25"
    assert exact(md["hours_planned"].value) == sum((e["hours"] for e in ENTRIES), D(0))
    _assert_plan_table(md, db, valid)


def test_markdown_tables_never_parse_numbers() -> None:
    frame = pd.DataFrame(
        {"amount": [D("13376.25"), D("4408470.00"), None], "currency": ["EUR", "EUR", None]}
    )
    table = parse_markdown(markdown_text(frame))
    assert table["amount"].tolist() == ["13,376.25", "4,408,470.00", ""]
    with pytest.raises(TypeError, match="float"):
        markdown_text(pd.DataFrame({"amount": [13376.25]}))


def test_validation_metadata_is_exact_and_says_what_it_counts(world: dict) -> None:
    """The conservation table's hours are staging's to the last digit; the quarantine check
    counts rows and rule violations apart (a row breaking two rules is one row)."""
    db = world["db"]
    staging = StagingDatabase(url=world["staging"])
    # One open quarantined row breaking two rules.
    with db.begin() as c:
        c.exec_driver_sql(
            """INSERT INTO quarantine (dataset, row_key, version, load_id, source_file, row_no,
                   rule_codes, messages, raw_values, first_seen, last_seen, status)
               VALUES ('time_entries', 'TEQ', 1, 'Ltest', 'f.csv', 9, 'A,B', 'a; b', '{}',
                       now(), now(), 'open')"""
        )
        c.exec_driver_sql(
            """INSERT INTO quarantine_violations (dataset, row_key, version, rule_code, message)
               VALUES ('time_entries', 'TEQ', 1, 'A', 'a'), ('time_entries', 'TEQ', 1, 'B', 'b')"""
        )
    # Entries staged directly were never landed, so the blocking conservation check fails
    # (as it should): its metadata is what this test reads, hence raise_on_error=False.
    result = materialize(
        [
            validated_master_data,
            validated_time_entries,
            every_row_accounted_for,
            open_quarantine_by_rule,
        ],
        resources={"staging": staging},
        instance=DagsterInstance.ephemeral(),
        selection=[validated_time_entries.key],
        raise_on_error=False,
    )
    checks = {
        e.asset_check_key.name: e
        for e in (
            ev.event_specific_data
            for ev in result.all_events
            if ev.event_type_value == "ASSET_CHECK_EVALUATION"
        )
        if isinstance(e, AssetCheckEvaluation)
    }
    conservation = checks["every_row_accounted_for"].metadata
    table = parse_markdown(conservation["by_dataset"].value)
    te = table[table["dataset"] == "time_entries"].iloc[0]
    hours = db.query_df("SELECT SUM(hours) AS h FROM stg_time_entries")["h"].iloc[0]
    assert exact(te["hours_all_versions"]) == hours == D("118.5100")
    assert exact(conservation["time_entry_hours_all_versions"].value) == hours
    quarantine = checks["open_quarantine_by_rule"].metadata
    assert quarantine["open_rows"].value == 1
    assert quarantine["open_rule_violations"].value == 2
    assert quarantine["open_rows_by_rule"].value == {"time_entries.A": 1, "time_entries.B": 1}
    assert "open_total" not in quarantine
    # The validation asset names its figures by what they count, with a legend.
    (mat,) = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key == validated_time_entries.key
    ]
    assert {"time_entries.rows_checked", "time_entries.rows_quarantined"} <= set(mat.metadata)
    assert "time_entries.quarantined" not in mat.metadata
    assert "rows_by_rule" in mat.metadata["what_the_figures_count"].value


def test_reconciliation_metadata_amounts_are_exact_and_per_currency(world: dict) -> None:
    """Nothing is posted: every entry is approved but not posted. Each amount in the key
    figures (table and JSON) is staging's exact sum for its currency, never a sum of two."""
    db = world["db"]
    staging = StagingDatabase(url=world["staging"])
    erp = ErpResource(kind="sql", url=world["erp"])
    inbox = world["tmp"] / "inbox"
    inbox.mkdir()
    result = materialize(
        reconciliation_assets,
        resources={
            "staging": staging,
            "psa_source": PsaSource(inbox=str(inbox)),
            "erp": erp,
            "staging_table_io_manager": StagingTableIOManager(staging=staging),
            "report_upload": ReportUpload(),
            "outbound": OutboundDelivery(folder=str(world["tmp"] / "feedback")),
        },
        instance=DagsterInstance.ephemeral(),
        run_config=RunConfig(
            ops={
                "reconciliation": ReconciliationConfig(
                    date_from="2026-11-01", date_to="2026-11-30", check_psa_inbox=False
                ),
                "reconciliation_workbook": WorkbookConfig(per_legal_entity=False),
            }
        ),
    )
    assert result.success
    md = next(
        m.metadata
        for m in (
            e.event_specific_data.materialization for e in result.get_asset_materialization_events()
        )
        if m.asset_key.to_user_string() == "rec_kpis"
    )
    expected = sums(
        db, "SELECT currency, SUM(amount) FROM validated_time_entries GROUP BY currency"
    )
    unposted = md["approved_not_posted_amount"].value
    assert {c: exact(a) for c, a in unposted.items()} == expected
    assert unposted == {"EUR": "4,421,846.25", "USD": "349.97"}
    assert md["straight_through_rate"].value == rate(0, 3) == "0.00%"
    table = parse_markdown(md["key_figures"].value)
    with_amount = table[table["amount"] != ""]
    assert len(with_amount) > 0
    assert (with_amount["currency"] != "").all()  # an amount always names its currency
    assert (table.loc[table["currency"] == "", "amount"] == "").all()
    for row in with_amount[with_amount["name"] == "approved_not_posted"].itertuples():
        assert exact(row.amount) == expected[row.currency]
    for row in with_amount.itertuples():
        assert exact(row.amount) in set(expected.values()), row  # all three are unposted
    hours = table[(table["kind"] == "kpi") & (table["name"] == "approved_not_posted")]
    total = hours[hours["currency"] == ""].iloc[0]
    assert exact(total["hours"]) == D("118.5100") and total["count"] == "3"


def test_one_rate_format() -> None:
    assert rate(7, 17) == "41.18%"
    assert rate(9927, 10000) == "99.27%"
    assert rate(1, 8) == "12.50%"  # 12.5 exactly: two decimals always
    assert rate(0, 0) is None
    assert decimal_text(D("4408470.00")) == "4,408,470.00"
