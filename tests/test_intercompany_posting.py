"""Intercompany pairs posted by posting windows into the SQL interface ERP, on DuckDB and
PostgreSQL (docs/intercompany.md): an entry of a DE01 employee on a US01 project posts its
customer line plus a balanced pair, is reversed with it when it moves to a DE01 project,
waits for its exchange rate, and is never posted twice."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal as D

import pandas as pd
import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from tests.support.intercompany_world import IntercompanyWorld, fx, ic_entry
from tests.support.posting_helpers import PostingEnv, erp_lines, erp_net_hours

pytest_plugins = ["tests.support.posting_fixtures"]


@pytest.fixture
def world(posting_env: PostingEnv, monkeypatch: pytest.MonkeyPatch) -> IntercompanyWorld:
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_POLICY", "intercompany")
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_MARKUP_PERCENT", "10")
    return IntercompanyWorld(posting_env.db, posting_env.tmp_path).master()


def journals(erp: SqlInterfaceTarget) -> pd.DataFrame:
    lines = erp.read_journal_lines(date(1900, 1, 1), date(2999, 12, 31))
    return lines[lines["journal_type"].isin(["ic_payable", "ic_receivable"])]


def balances(lines: pd.DataFrame) -> dict[tuple[str, str, str], D]:
    """Net debit - credit per (legal entity, currency, account), zeros left out."""
    out: dict = defaultdict(lambda: D(0))
    for r in lines.itertuples():
        out[(r.legal_entity, r.currency, r.account_code)] += r.debit - r.credit
    return {k: v for k, v in out.items() if v != 0}


def assert_balanced(lines: pd.DataFrame) -> None:
    for ext, g in lines.groupby("external_id"):
        assert sum(g["debit"], D(0)) == sum(g["credit"], D(0)), ext


PAIR = {
    ("US01", "USD", "5400"): D("572.04"),  # intercompany cost, the project's entity
    ("US01", "USD", "2400"): D("-572.04"),  # intercompany payable
    ("DE01", "EUR", "1400"): D("528.00"),  # intercompany receivable, the employee's entity
    ("DE01", "EUR", "4400"): D("-528.00"),  # intercompany revenue
}


def test_intercompany_entry_posted_as_customer_line_plus_balanced_pair(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry())
    world.validate()
    result = posting_env.window()
    assert result.status == "completed", result.message
    # The customer line as any other: US01, 8 h, 1,200.00 USD
    te = erp_lines(posting_env.erp)
    assert te[["external_id", "legal_entity", "hours", "amount", "currency"]].values.tolist() == [
        ["te:IC1:v1:post", "US01", D("8.0000"), D("1200.00"), "USD"]
    ]
    # The pair: a payable in US01 (USD), a receivable in DE01 (EUR), each balanced, dated
    # with the customer line, the rate and its date on the lines
    ic = journals(posting_env.erp)
    assert sorted(ic["external_id"].unique()) == ["ic:IC1:v1:pay", "ic:IC1:v1:rec"]
    assert_balanced(ic)
    assert balances(ic) == PAIR
    assert set(ic["journal_date"]) == {date(2026, 10, 15)} and set(ic["period"]) == {"2026-10"}
    assert set(ic["project_code"]) == {"ICUS"}
    described = posting_env.db.query_df(
        "SELECT description FROM journal_ledger_lines WHERE journal_external_id LIKE 'ic:%'"
    )["description"]
    assert len(described) == 4
    assert all(
        d == "Intercompany IC1: 8.0000 h x 66.0000 EUR at EUR->USD 1.08340000 of 2026-10-15 (ECB)"
        for d in described
    ), described.tolist()
    assert result.counts["ic_journals_planned"] == 2
    # Re-running the window posts nothing twice
    again = posting_env.window()
    assert again.counts.get("ic_journals_planned", 0) == 0
    assert len(journals(posting_env.erp)) == len(ic)
    assert len(erp_lines(posting_env.erp)) == 1


def test_moved_to_same_entity_project_reverses_the_pair_with_the_customer_line(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry())
    world.validate()
    posting_env.window()
    # The entry moves to ICDE (DE01, EUR): the employee's own entity, no pair any more
    world.entries(
        ic_entry(project="ICDE", rate="140.00", updated_at="2026-10-20T09:00:00Z"),
    )
    world.validate()
    result = posting_env.window()
    assert result.status == "completed", result.message
    te = erp_lines(posting_env.erp)
    assert sorted(te["external_id"]) == ["te:IC1:v1:post", "te:IC1:v1:rev", "te:IC1:v2:post"]
    assert erp_net_hours(posting_env.erp) == {"IC1": D("8.0000")}
    live = te[te["external_id"] == "te:IC1:v2:post"].iloc[0]
    assert (live["legal_entity"], live["amount"], live["currency"]) == ("DE01", D("1120.00"), "EUR")
    # The pair reversed together (mirrored lines), no new pair: the ERP nets to the current
    # version, which has none
    ic = journals(posting_env.erp)
    assert sorted(ic["external_id"].unique()) == [
        "ic:IC1:v1:pay",
        "ic:IC1:v1:pay:rev",
        "ic:IC1:v1:rec",
        "ic:IC1:v1:rec:rev",
    ]
    assert_balanced(ic)
    assert balances(ic) == {}
    reverses = posting_env.db.query_df(
        "SELECT reverses_external_id FROM journal_ledger WHERE kind = 'reversal'"
    )["reverses_external_id"]
    assert set(reverses) == {"ic:IC1:v1:pay", "ic:IC1:v1:rec"}
    assert posting_env.window().counts.get("ic_journals_planned", 0) == 0


def test_corrected_intercompany_entry_gets_a_new_pair(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry())
    world.validate()
    posting_env.window()
    # 8 h -> 4 h: the old pair reversed and the new one posted, in one window
    world.entries(ic_entry(hours="4.00", updated_at="2026-10-20T09:00:00Z"))
    world.validate()
    posting_env.window()
    ic = journals(posting_env.erp)
    assert sorted(ic["external_id"].unique()) == [
        "ic:IC1:v1:pay",
        "ic:IC1:v1:pay:rev",
        "ic:IC1:v1:rec",
        "ic:IC1:v1:rec:rev",
        "ic:IC1:v2:pay",
        "ic:IC1:v2:rec",
    ]
    assert_balanced(ic)
    # 4 x 66.00 = 264.00 EUR; 264 x 1.0834 = 286.0176 -> 286.02 USD
    assert balances(ic) == {
        ("US01", "USD", "5400"): D("286.02"),
        ("US01", "USD", "2400"): D("-286.02"),
        ("DE01", "EUR", "1400"): D("264.00"),
        ("DE01", "EUR", "4400"): D("-264.00"),
    }


def test_missing_rate_quarantined_then_released_and_posted_after_it_lands(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    world.entries(ic_entry())
    world.validate()
    assert world.codes("IC1") == {"TE_FX_RATE_MISSING"}
    first = posting_env.window()
    assert first.status == "completed"
    assert erp_lines(posting_env.erp).empty and journals(posting_env.erp).empty
    # The rate lands with the nightly master data; validation releases the entry
    world.rates(fx("2026-10-15", "1.0834"))
    world.validate()
    assert world.state("IC1") == "valid" and world.codes("IC1") == set()
    posting_env.window()
    assert list(erp_lines(posting_env.erp)["external_id"]) == ["te:IC1:v1:post"]
    assert balances(journals(posting_env.erp)) == PAIR


def test_quarantine_policy_posts_no_pair(
    posting_env: PostingEnv, world: IntercompanyWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_POLICY", "quarantine")
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry(), ic_entry("OWN", project="ICDE", rate="140.00"))
    world.validate()
    assert world.codes("IC1") == {"TE_LEGAL_ENTITY_MISMATCH"}
    result = posting_env.window()
    assert list(erp_lines(posting_env.erp)["external_id"]) == ["te:OWN:v1:post"]
    assert journals(posting_env.erp).empty
    assert "ic_journals_planned" not in result.counts


def test_window_killed_after_the_pair_was_marked_sent_posts_it_once(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    """A window that dies once the pair's batch is `sent` (before, or after, the ERP took it):
    the next window settles it by lookup and posts nothing twice."""
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry(), ic_entry("IC2", hours="2.00"))
    world.validate()

    class Killed(BaseException):
        pass

    def kill_after(step: str):
        def hook(name: str, batch_id: str) -> None:
            if name == step and "-ic-" in batch_id:
                raise Killed(batch_id)

        return hook

    with pytest.raises(Killed):
        posting_env.window(hooks=kill_after("batch_marked_sent"))
    assert journals(posting_env.erp).empty  # the ERP never saw the pair
    posting_env.window()
    assert len(journals(posting_env.erp)["external_id"].unique()) == 4
    # Now killed after the ERP took a new pair, before the answer was recorded
    world.entries(ic_entry("IC2", hours="3.00", updated_at="2026-10-20T09:00:00Z"))
    world.validate()
    with pytest.raises(Killed):
        posting_env.window(hooks=kill_after("batch_posted"))
    posting_env.window()
    posting_env.window()
    ic = journals(posting_env.erp)
    counts = ic.groupby("external_id").size()
    assert set(counts) == {2}  # every journal once, with its two lines
    assert sorted(counts.index) == [
        "ic:IC1:v1:pay",
        "ic:IC1:v1:rec",
        "ic:IC2:v1:pay",
        "ic:IC2:v1:pay:rev",
        "ic:IC2:v1:rec",
        "ic:IC2:v1:rec:rev",
        "ic:IC2:v2:pay",
        "ic:IC2:v2:rec",
    ]
    assert_balanced(ic)
    ledger = posting_env.db.query_df(
        "SELECT external_id, state FROM journal_ledger WHERE state IN ('sent', 'confirmed')"
    )
    assert sorted(ledger["external_id"]) == sorted(counts.index)


def _sheet(wb, name: str) -> list[dict]:
    ws = wb[name]
    header = [c.value for c in next(ws.iter_rows(max_row=1))]
    return [dict(zip(header, (c.value for c in r), strict=True)) for r in ws.iter_rows(min_row=2)]


def test_reconciliation_shows_pairs_and_group_currency_totals(
    posting_env: PostingEnv,
    world: IntercompanyWorld,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    """Intercompany pairs posted vs expected and balanced per entity; totals per transaction
    currency and in the group currency (EUR) with the rate dates, a line without a rate shown
    as such, never converted at 1."""
    import openpyxl

    from reconciliation.compare import Period, reconcile
    from reconciliation.intercompany import currency_totals, intercompany_reconciliation
    from reconciliation.report import write_reconciliation_workbook

    monkeypatch.setenv("STAGEPOST_GROUP_CURRENCY", "EUR")
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(
        ic_entry(),  # US01, 1,200.00 USD on 15 Oct: EUR at the inverse pair, 1,107.62
        ic_entry("OWN", project="ICDE", rate="140.00"),  # DE01, 1,120.00 EUR
        ic_entry("OLD", project="ICUS", employee="XUS", day="2026-10-02", hours="1.00"),
    )
    world.validate()
    posting_env.window()
    detail, balance, notes = intercompany_reconciliation(posting_env.db, posting_env.erp)
    assert detail[
        ["status", "entry_id", "side", "legal_entity", "ic_currency"]
    ].values.tolist() == [
        ["ties", "IC1", "payable", "US01", "USD"],
        ["ties", "IC1", "receivable", "DE01", "EUR"],
    ]
    assert list(detail["erp_amount"]) == [D("572.04"), D("528.00")]
    assert set(balance["balance_status"]) == {"balanced"} and len(balance) == 2
    assert notes == []

    totals, missing, fx_notes = currency_totals(
        posting_env.db, date(2026, 10, 1), date(2026, 10, 31)
    )
    rows = {r.legal_entity: r for r in totals.itertuples()}
    assert (rows["DE01"].transaction_amount, rows["DE01"].group_amount) == (
        D("1120.00"),
        D("1120.00"),
    )
    us = rows["US01"]
    # 1,200.00 USD / 1.0834 (EUR -> USD, divided: the inverse pair) = 1,107.6241 -> 1,107.62
    assert (us.entries, us.converted_entries, us.entries_without_rate) == (2, 1, 1)
    assert us.group_amount == D("1107.62")
    assert us.first_rate_date == date(2026, 10, 15) and us.last_rate_date == date(2026, 10, 15)
    assert us.amount_without_rate == D("150.00")  # OLD: 2 Oct, no rate within 7 days before
    assert missing[["fx_status", "entry_id", "transaction_amount"]].values.tolist() == [
        ["no rate", "OLD", D("150.00")]
    ]
    assert "1 entries have no exchange rate" in fx_notes[0]

    # Moved to a same-entity project: the reversed pair is settled, nothing left to compare
    world.entries(ic_entry(project="ICDE", rate="140.00", updated_at="2026-10-20T09:00:00Z"))
    world.validate()
    posting_env.window()
    detail, balance, notes = intercompany_reconciliation(posting_env.db, posting_env.erp)
    assert detail.empty and set(balance["balance_status"]) == {"balanced"}

    rec = reconcile(posting_env.db, posting_env.erp, Period(date(2026, 10, 1), date(2026, 10, 31)))
    info = write_reconciliation_workbook(
        tmp_path / "rec.xlsx",
        period_label=rec.period.label(),
        kpis=rec.kpi_frame(),
        totals=rec.totals,
        invoices=rec.invoices,
        lines=rec.lines,
        intercompany=(detail, balance),
        currencies=currency_totals(posting_env.db, date(2026, 10, 1), date(2026, 10, 31))[:2],
    )
    assert "Currency totals" in info.sheet_names and "FX missing" in info.sheet_names
    wb = openpyxl.load_workbook(info.path)
    by_le = {r["Legal entity"]: r for r in _sheet(wb, "Currency totals")}
    assert by_le["DE01"]["Amount (group currency)"] == 2240  # OWN and IC1, both EUR now
    assert by_le["US01"]["Entries without a rate"] == 1
    assert by_le["US01"]["Amount (group currency)"] is None  # never converted at 1
    (gap,) = _sheet(wb, "FX missing")
    assert (gap["Status"], gap["Entry"]) == ("no rate", "OLD")
    assert gap["Rate wanted for"].date() == date(2026, 10, 2)


def test_closed_period_of_the_employees_entity_moves_or_holds_the_pair(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    """October is closed in DE01 only: the customer line and the payable book into US01's
    October; the receivable moves to DE01's November (`next_open`), or, under `hold`, the
    whole pair waits, each half saying why, until October reopens."""
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry(), ic_entry("IC2", day="2026-10-16", hours="1.00"))
    world.validate()
    posting_env.erp.set_period("DE01", "2026-10", False)
    held = posting_env.window(closed_period_policy="hold")
    assert held.counts["ic_journals_held"] == 4 and held.counts["ic_journals_planned"] == 0
    assert journals(posting_env.erp).empty
    assert len(erp_lines(posting_env.erp)) == 2  # the customer lines are US01's: posted
    led = posting_env.db.query_df(
        "SELECT external_id, state, erp_message FROM journal_ledger ORDER BY external_id"
    )
    assert set(led["state"]) == {"held"}
    msg = dict(zip(led["external_id"], led["erp_message"], strict=True))
    assert msg["ic:IC1:v1:rec"] == (
        "Posting period 2026-10 is closed for DE01; held (policy hold) until it reopens"
    )
    assert msg["ic:IC1:v1:pay"].startswith("Held with the other half of its intercompany pair")
    # next_open: the receivable books into November, dated its first day; the payable stays
    moved = posting_env.window()
    assert moved.counts["ic_journals_planned"] == 4 and moved.counts["ic_journals_held"] == 0
    ic = journals(posting_env.erp).drop_duplicates("external_id").set_index("external_id")
    assert (ic.loc["ic:IC1:v1:rec", "period"], ic.loc["ic:IC1:v1:rec", "journal_date"]) == (
        "2026-11",
        date(2026, 11, 1),
    )
    assert (ic.loc["ic:IC1:v1:pay", "period"], ic.loc["ic:IC1:v1:pay", "journal_date"]) == (
        "2026-10",
        date(2026, 10, 15),
    )
    note = posting_env.db.scalar(
        "SELECT erp_message FROM journal_ledger WHERE external_id = 'ic:IC1:v1:rec'"
    )
    assert note == "Booked in 2026-11: period 2026-10 is closed for DE01"
    assert posting_env.window().counts.get("ic_journals_planned", 0) == 0


def test_long_entry_id_uses_its_md5_in_the_pair_and_its_reversal(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    import hashlib

    long_id = "PSA-" + "x" * 52  # 56 characters: `ic:{id}:v1:pay:rev` would pass 64
    md5 = hashlib.md5(long_id.encode()).hexdigest()
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry(long_id))
    world.validate()
    posting_env.window()
    world.entries(ic_entry(long_id, project="ICDE", updated_at="2026-10-20T09:00:00Z"))
    world.validate()
    posting_env.window()
    ids = sorted(journals(posting_env.erp)["external_id"].unique())
    assert ids == [
        f"ic~{md5}:v1:pay",
        f"ic~{md5}:v1:pay:rev",
        f"ic~{md5}:v1:rec",
        f"ic~{md5}:v1:rec:rev",
    ]
    assert max(map(len, ids)) <= 64


def test_windows_run_one_per_legal_entity_post_each_pair_once(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    """Windows scoped to one entity each (docs/deployment.md): the project's entity's window
    posts the customer line and the whole pair (the receivable in the employee's entity too),
    the employee's entity's window leaves it alone; a move to the employee's own entity is
    reversed by the project entity's window, never twice."""
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry())
    world.validate()
    de = posting_env.window(legal_entities=["DE01"])
    assert de.status == "completed", de.message
    assert de.counts.get("ic_journals_planned", 0) == 0 and journals(posting_env.erp).empty
    us = posting_env.window(legal_entities=["US01"])
    assert us.counts["ic_journals_planned"] == 2
    ic = journals(posting_env.erp)
    assert_balanced(ic)
    assert balances(ic) == PAIR
    assert posting_env.window(legal_entities=["DE01"]).counts.get("ic_journals_planned", 0) == 0

    world.entries(ic_entry(project="ICDE", rate="140.00", updated_at="2026-10-20T09:00:00Z"))
    world.validate()
    for entity in ("DE01", "US01", "DE01", "US01"):
        assert posting_env.window(legal_entities=[entity]).status == "completed"
    ic = journals(posting_env.erp)
    assert sorted(ic["external_id"].unique()) == [
        "ic:IC1:v1:pay",
        "ic:IC1:v1:pay:rev",
        "ic:IC1:v1:rec",
        "ic:IC1:v1:rec:rev",
    ]
    assert balances(ic) == {}
    assert erp_net_hours(posting_env.erp) == {"IC1": D("8.0000")}


def test_another_entitys_window_leaves_a_held_pair_alone(
    posting_env: PostingEnv, world: IntercompanyWorld
) -> None:
    """A pair held for DE01's closed October (planned by US01's window) stays held with its
    reason through a DE01 window (it is not that window's pair to void) and posts once the
    period reopens."""
    world.rates(fx("2026-10-15", "1.0834"))
    world.entries(ic_entry())
    world.validate()
    posting_env.erp.set_period("DE01", "2026-10", False)
    us = posting_env.window(closed_period_policy="hold", legal_entities=["US01"])
    assert us.counts["ic_journals_held"] == 2
    held = "SELECT external_id, state FROM journal_ledger ORDER BY external_id"
    before = posting_env.db.query_df(held).values.tolist()
    assert before == [["ic:IC1:v1:pay", "held"], ["ic:IC1:v1:rec", "held"]]
    posting_env.window(closed_period_policy="hold", legal_entities=["DE01"])
    assert posting_env.db.query_df(held).values.tolist() == before
    posting_env.erp.set_period("DE01", "2026-10", True)
    again = posting_env.window(closed_period_policy="hold", legal_entities=["US01"])
    assert again.counts["ic_journals_planned"] == 2
    assert balances(journals(posting_env.erp)) == PAIR
