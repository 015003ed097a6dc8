"""The `crm_deals` and `project_templates` datasets: landing, versions and their contracts, on
DuckDB and PostgreSQL staging (project set-up itself: test_deal_setup.py)."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pandera.pandas as pa
import pytest

from connectors.sample_data import write_deals, write_sample
from connectors.sources.formats import FileFormat
from connectors.sources.mapping import parse_mapping
from staging_models.contracts import RULES, pandera_schema
from staging_models.db import StagingDB
from staging_models.landing import land_file
from staging_models.validation import conservation, validate_all
from tests.support.deal_world import TEMPLATES, DealWorld, deal


@pytest.fixture
def world(any_db: StagingDB, tmp_path: Path) -> DealWorld:
    return DealWorld(any_db, tmp_path).with_templates()


#: (deal id, overrides, the rules it must break); each row breaks exactly these.
CASES = [
    ("END", dict(end_date="2026-11-30"), {"DEAL_END_BEFORE_START"}),
    ("NEG", dict(contract_value="-1.00"), {"DEAL_NEGATIVE_AMOUNT"}),
    ("NEGH", dict(budget_hours="-8"), {"DEAL_NEGATIVE_AMOUNT"}),
    ("LE", dict(legal_entity="FR01", currency="EUR"), {"DEAL_UNKNOWN_LEGAL_ENTITY"}),
    ("CUR", dict(currency="EUR"), {"DEAL_CURRENCY_NOT_OF_ENTITY"}),
    ("TPL", dict(template_code="NOPE"), {"DEAL_UNKNOWN_TEMPLATE"}),
    ("BM", dict(billing_method="barter"), {"DEAL_BILLING_METHOD_UNKNOWN"}),
    ("P1", {}, {"DEAL_PROJECT_CODE_TAKEN"}),  # a PSA project of that code exists already
]


def test_each_deal_rule_quarantines_its_row_with_a_reason(world: DealWorld) -> None:
    world.deals(
        deal(deal_id="GOOD"),
        deal(deal_id="DE", legal_entity="DE01", currency="EUR"),
        *(deal(deal_id=key, **over) for key, over, _ in CASES),
    )
    for key, _, codes in CASES:
        assert world.codes(key, "crm_deals") == codes, key
        assert world.state(key, "crm_deals") == "quarantined"
    assert world.state("GOOD", "crm_deals") == "valid"
    assert world.state("DE", "crm_deals") == "valid"
    messages = dict(
        world.db.query_df(
            "SELECT row_key, messages FROM quarantine WHERE dataset = 'crm_deals'"
        ).itertuples(index=False)
    )
    assert messages["CUR"] == (
        "currency EUR is not a currency of legal entity US01 (its employees and projects use USD)"
    )
    assert messages["TPL"] == "project template 'NOPE' is not in the project templates"
    assert conservation(world.db)["ok"].all()


def test_a_deal_not_won_waits_and_is_set_up_once_won(world: DealWorld) -> None:
    world.deals(deal(stage="proposal"), deal(deal_id="D2", stage=""))
    assert world.state("D100", "crm_deals") == "not_postable"
    assert world.state("D2", "crm_deals") == "not_postable"
    world.deals(deal(stage="won", updated_at="2026-11-19T00:00:00Z"))
    assert world.state("D100", "crm_deals") == "valid"
    df = conservation(world.db)
    assert df["ok"].all(), df.to_dict("records")
    row = df.set_index("dataset").loc["crm_deals"]
    assert (row["versions"], row["not_postable"], row["superseded"], row["valid"]) == (3, 1, 1, 1)


def test_a_deal_waiting_for_its_template_is_released_when_the_template_lands(
    world: DealWorld,
) -> None:
    world.deals(deal(template_code="ADVISORY"))
    assert world.codes("D100", "crm_deals") == {"DEAL_UNKNOWN_TEMPLATE"}
    world.land(
        "project_templates",
        [dict(template_code="ADVISORY", task_code="ADV", task_name="Advice", billable="true")],
    )
    world.validate()
    assert world.state("D100", "crm_deals") == "valid"
    status = world.db.scalar("SELECT status FROM quarantine WHERE dataset = 'crm_deals'")
    assert status == "released"


def test_templates_version_like_master_data(world: DealWorld) -> None:
    world.land("project_templates", [{**TEMPLATES[0], "task_name": "Discovery workshop"}])
    world.validate()
    names = world.db.query_df(
        """SELECT version, task_name, state FROM stg_project_templates
           WHERE row_key = 'CONSULT|DISC' ORDER BY version"""
    )
    assert names.to_dict("records") == [
        {"version": 1, "task_name": "Discovery", "state": "superseded"},
        {"version": 2, "task_name": "Discovery workshop", "state": "valid"},
    ]


def test_pandera_contract_of_deals_flags_exactly_what_the_sql_quarantines(
    world: DealWorld,
) -> None:
    world.deals(
        deal(deal_id="GOOD"),
        deal(deal_id="END", end_date="2026-01-01"),
        deal(deal_id="NEG", contract_value="-5.00"),
        deal(deal_id="CUR", currency="ZZZ"),
        deal(deal_id="BM", billing_method="barter"),
        deal(deal_id="FMT", budget_hours="many", customer_id=""),
    )
    frame = world.db.query_df(
        """SELECT s.*, l.raw_won_at, l.raw_contract_value, l.raw_budget_hours,
                  l.raw_start_date, l.raw_end_date, l.raw_updated_at
           FROM stg_crm_deals s JOIN land_crm_deals l
             ON l.load_id = s.load_id AND l.row_no = s.row_no WHERE s.is_current"""
    )
    with pytest.raises(pa.errors.SchemaErrors) as err:
        pandera_schema("crm_deals").validate(frame, lazy=True)
    fc = err.value.failure_cases.dropna(subset=["index"])
    by_pandera = {
        (frame.loc[int(i), "row_key"], check)
        for check, i in zip(fc["check"], fc["index"], strict=True)
    }
    row_level = {r.code for r in RULES["crm_deals"] if r.check is not None}
    sql = world.db.query_df(
        "SELECT row_key, rule_code FROM quarantine_violations WHERE dataset = 'crm_deals'"
    )
    by_sql = {(k, c) for k, c in sql.itertuples(index=False) if c in row_level}
    assert {c for _, c in by_sql} >= {
        "DEAL_END_BEFORE_START",
        "DEAL_NEGATIVE_AMOUNT",
        "DEAL_CURRENCY_INVALID",
        "DEAL_BILLING_METHOD_UNKNOWN",
        "DEAL_BUDGET_HOURS_FORMAT",
        "DEAL_CUSTOMER_ID_MISSING",
    }
    assert by_pandera == by_sql


#: A CRM's own deals export, mapped onto `crm_deals` (the example of docs/sources.md).
CRM_MAPPING = """
name = "CRM deals export"

[crm_deals]
files          = ["Deals_Export_*.csv"]
deal_id        = "Deal ID"
deal_name      = "Deal Name"
stage          = { source = "Pipeline Stage", values = { "Closed Won" = "won", "Closed Lost" = "lost" }, unmapped = "keep" }
won_at         = { source = "Close Date", transform = "timestamp", timezone = "Europe/Berlin", format = "%d.%m.%Y %H:%M" }
customer_id    = "Company ID"
customer_name  = "Company"
legal_entity   = "Booking Entity"
currency       = "Currency"
billing_method = { source = "Contract Type", values = { "T&M" = "time_and_materials", "Fixed" = "fixed_fee" } }
contract_value = { source = "Amount", transform = "number" }
budget_hours   = "Budget Hours"
start_date     = { source = "Kick-off", transform = "date", format = "%d.%m.%Y" }
end_date       = { source = "End", transform = "date", format = "%d.%m.%Y" }
project_manager = "Deal Owner"
template_code  = "Project Template"
updated_at     = { source = "Last Modified", transform = "timestamp", timezone = "Europe/Berlin", format = "%d.%m.%Y %H:%M" }
"""


def test_a_crm_export_is_mapped_onto_crm_deals(world: DealWorld) -> None:
    mapping = parse_mapping(tomllib.loads(CRM_MAPPING), "crm.toml")
    f = world.folder / "Deals_Export_2026-11-20.csv"
    f.write_text(
        "Deal ID,Deal Name,Pipeline Stage,Close Date,Company ID,Company,Booking Entity,"
        "Currency,Contract Type,Amount,Budget Hours,Kick-off,End,Deal Owner,Project Template,"
        "Last Modified\n"
        'D200,Acme rollout,Closed Won,18.11.2026 10:00,C7,Acme Corp,US01,USD,T&M,"120,000.00",'
        "800,01.12.2026,31.05.2027,Ann Lee,CONSULT,18.11.2026 10:05\n"
        "D201,Beta audit,Proposal,,C8,Beta GmbH,DE01,EUR,Fixed,9500,60,01.01.2027,,,AUDIT,"
        "18.11.2026 11:00\n",
        encoding="utf-8",
    )
    land_file(world.db, f, "crm_deals", fmt=FileFormat(mapping=mapping))
    world.validate()
    assert world.state("D200", "crm_deals") == "valid"
    assert world.state("D201", "crm_deals") == "not_postable"  # not won (yet)
    row = world.db.query_df(
        "SELECT stage, billing_method, contract_value, start_date, won_at FROM stg_crm_deals "
        "WHERE row_key = 'D200'"
    ).iloc[0]
    assert (row["stage"], row["billing_method"]) == ("won", "time_and_materials")
    assert str(row["contract_value"]) == "120000.00"
    assert str(row["start_date"])[:10] == "2026-12-01"


def test_generated_deals_fit_the_generated_master_data(duck_db: StagingDB, tmp_path: Path) -> None:
    """`python -m connectors.sample_data --deals N`: every won deal passes its contracts on the
    sample's own master data; the others wait."""
    as_of = date(2026, 11, 20)
    files = write_sample(tmp_path / "in", 200, seed=3, as_of=as_of)
    files |= write_deals(tmp_path / "in", 40, seed=3, as_of=as_of)
    for dataset in ("employees", "projects", "project_tasks", "project_templates", "crm_deals"):
        land_file(duck_db, files[dataset], dataset)
    validate_all(duck_db)
    states = duck_db.query_df(
        "SELECT stage = 'won' AS won, state, COUNT(*) AS n FROM stg_crm_deals GROUP BY 1, 2"
    )
    assert set(zip(states["won"], states["state"], strict=True)) == {
        (True, "valid"),
        (False, "not_postable"),
    }
    assert states["n"].sum() == 40
