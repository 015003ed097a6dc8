"""Exchange rates (`fx_rates`) and the intercompany contracts (docs/intercompany.md), on DuckDB and
PostgreSQL: which date's rate applies, the maximum age, the inverse pair, TE_FX_RATE_MISSING
released once the rate lands, the transfer price, and the `quarantine` policy unchanged."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from staging_models.db import StagingDB
from tests.support.intercompany_world import IntercompanyWorld, fx, ic_entry


@pytest.fixture
def world(any_db: StagingDB, tmp_path: Path) -> IntercompanyWorld:
    return IntercompanyWorld(any_db, tmp_path).master()


@pytest.fixture
def intercompany(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_POLICY", "intercompany")
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_MARKUP_PERCENT", "10")


def test_quarantine_policy_unchanged(world: IntercompanyWorld) -> None:
    """The default policy quarantines an employee of DE01 on a US01 project, as before."""
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry())
    world.validate()
    assert world.codes("IC1") == {"TE_LEGAL_ENTITY_MISMATCH"}
    assert world.db.scalar("SELECT COUNT(*) FROM validated_time_entries") == 0


def test_missing_rate_quarantined_then_released_when_it_lands(
    world: IntercompanyWorld, intercompany: None
) -> None:
    world.entries(ic_entry())
    world.validate()
    assert world.codes("IC1") == {"TE_FX_RATE_MISSING"}
    message = world.db.scalar("SELECT messages FROM quarantine WHERE row_key = 'IC1'")
    assert "EUR -> USD" in message and "2026-10-15" in message and "work_date" in message
    # A rate of another pair, or one from after the work date, does not help
    world.rates(fx("2026-10-15", "0.8600", "GBP", "USD"), fx("2026-10-16", "1.0900"))
    world.validate()
    assert world.codes("IC1") == {"TE_FX_RATE_MISSING"}
    # The rate lands: the next validation releases the entry (no other file needed)
    world.rates(fx("2026-10-15", "1.0834"))
    world.validate()
    assert world.state("IC1") == "valid"
    events = world.db.query_df(
        "SELECT event FROM quarantine_events WHERE row_key = 'IC1' ORDER BY event_at, event"
    )["event"].tolist()
    assert "released" in events
    v = world.validated("IC1")
    # customer line as usual: 8 h x 150.00 USD in US01
    assert (v["legal_entity"], v["currency"], v["amount"]) == ("US01", "USD", D("1200.00"))
    # transfer rate: cost 60.00 + 10 % = 66.0000 EUR; receivable 8 x 66 = 528.00 EUR (DE01);
    # payable 528 x 1.0834 = 572.0352 -> 572.04 USD (US01), the rate and its date kept
    assert v["ic_legal_entity"] == "DE01"
    assert v["ic_transfer_rate"] == D("66.0000")
    assert (v["ic_rec_currency"], v["ic_rec_amount"]) == ("EUR", D("528.00"))
    assert (v["ic_pay_currency"], v["ic_pay_amount"]) == ("USD", D("572.04"))
    assert v["ic_fx_rate"] == D("1.08340000")
    assert v["ic_fx_rate_date"] == date(2026, 10, 15)
    assert not v["ic_fx_inverse"] and v["ic_fx_source"] == "ECB"


def test_month_end_vs_work_date_rule(
    world: IntercompanyWorld, intercompany: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """work_date takes the work date's rate; month_end the last day's of its month (31 Oct 2026
    is a Saturday: Friday's rate, within the maximum age). The rate date used is recorded."""
    world.rates(fx("2026-10-15", "1.0834"), fx("2026-10-30", "1.0900"))
    world.entries(ic_entry())
    world.validate()
    v = world.validated("IC1")
    assert (v["ic_fx_rate_date"], v["ic_pay_amount"]) == (date(2026, 10, 15), D("572.04"))

    monkeypatch.setenv("STAGEPOST_FX_RATE_DATE", "month_end")
    # A new version of the entry is validated under the month-end rule
    world.entries(ic_entry(hours="8.00", description="Design review, month end"))
    world.validate()
    v = world.validated("IC1")
    # 528.00 x 1.0900 = 575.52, at the rate of Friday 30 October for Saturday 31 October
    assert (v["ic_fx_rate_date"], v["ic_pay_amount"]) == (date(2026, 10, 30), D("575.52"))

    # November's month end (30 Nov) has no rate yet: the entry waits, naming the date
    world.entries(ic_entry("IC2", day="2026-11-16"))
    world.validate()
    assert world.codes("IC2") == {"TE_FX_RATE_MISSING"}
    message = world.db.scalar("SELECT messages FROM quarantine WHERE row_key = 'IC2'")
    assert "2026-11-30 (month_end of work date 2026-11-16)" in message


def test_max_age_and_inverse_pair(
    world: IntercompanyWorld, intercompany: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rate 14 days old is too old by default (7 days)
    world.rates(fx("2026-10-01", "1.0800"))
    world.entries(ic_entry())
    world.validate()
    assert world.codes("IC1") == {"TE_FX_RATE_MISSING"}
    monkeypatch.setenv("STAGEPOST_FX_MAX_AGE_DAYS", "30")
    world.validate()
    v = world.validated("IC1")
    assert (v["ic_fx_rate_date"], v["ic_pay_amount"]) == (date(2026, 10, 1), D("570.24"))
    # Only the inverse pair on the work date: 528.00 / 0.9230 = 572.0477 -> 572.05 (divided,
    # never a rounded reciprocal); the newer inverse rate wins over the older direct one
    world.rates(fx("2026-10-15", "0.9230", "USD", "EUR"))
    world.entries(ic_entry(description="again"))
    world.validate()
    v = world.validated("IC1")
    assert v["ic_fx_inverse"] and v["ic_fx_rate"] == D("0.92300000")
    assert (v["ic_fx_rate_date"], v["ic_pay_amount"]) == (date(2026, 10, 15), D("572.05"))


def test_transfer_rate_missing_and_rate_card(
    world: IntercompanyWorld, intercompany: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.rates(fx("2026-10-15", "1.0834"))
    # XNC has no cost rate: cost plus cannot price the transfer
    world.entries(ic_entry("IC3", employee="XNC"))
    world.validate()
    assert world.codes("IC3") == {"TE_TRANSFER_RATE_MISSING"}
    assert "has no cost_rate" in world.db.scalar(
        "SELECT messages FROM quarantine WHERE row_key = 'IC3'"
    )
    # The transfer rate card prices a consultant at 70.00 EUR: 8 x 70 = 560.00 EUR,
    # 560 x 1.0834 = 606.704 -> 606.70 USD
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_TRANSFER_PRICE", "rate_card")
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_RATE_CARD", '{"consultant": "70.00"}')
    world.validate()
    v = world.validated("IC3")
    assert (v["ic_transfer_rate"], v["ic_rec_amount"], v["ic_pay_amount"]) == (
        D("70.0000"),
        D("560.00"),
        D("606.70"),
    )
    # A role the card does not price (and no `*`): quarantined, naming the role
    world.entries(ic_entry("IC4", employee="XDE", hours="1.00"))
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_RATE_CARD", '{"senior": "90.00"}')
    world.validate()
    assert world.codes("IC4") == {"TE_TRANSFER_RATE_MISSING"}
    assert "no rate for role consultant" in world.db.scalar(
        "SELECT messages FROM quarantine WHERE row_key = 'IC4'"
    )


def test_same_entity_entry_has_no_pair(world: IntercompanyWorld, intercompany: None) -> None:
    """An entry of the project's own entity needs no rate and carries no intercompany figures."""
    world.entries(ic_entry("OWN", project="ICDE", employee="XDE", rate="120.00"))
    world.validate()
    v = world.validated("OWN")
    assert v["ic_legal_entity"] is None and v["ic_pay_amount"] is None
