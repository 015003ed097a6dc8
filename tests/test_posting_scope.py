"""Scoped posting windows post a correction pair whole or not at all (DuckDB and PostgreSQL).

The scope (legal entities, dates) selects entries and invoices: one is in scope when its posted
version or its new version is, and then its reversal and its new post go together (or are held
together, with a reason).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tests.support.posting_helpers import (
    PostingEnv,
    correct,
    erp_lines,
    erp_net_hours,
    ledger,
    stage_entries,
    stage_invoice,
)

# Fixtures posting_env (DuckDB and PostgreSQL) and duck_env.
pytest_plugins = ["tests.support.posting_fixtures"]

D = Decimal
US = {"legal_entity": "US01", "project_code": "UP1", "currency": "USD"}
DE = {"legal_entity": "DE01", "project_code": "P1", "currency": "EUR"}
FAR = (date(2000, 1, 1), date(2100, 1, 1))


def _net_amounts(env: PostingEnv) -> dict[tuple[str, str], Decimal]:
    lines = erp_lines(env.erp)
    net = lines.groupby(["entry_id", "currency"])["amount"].apply(lambda s: sum(s, D(0)))
    return {k: v for k, v in net.items() if v != 0}


def test_entry_moved_to_another_entity_posts_both_halves(posting_env: PostingEnv) -> None:
    stage_entries(
        posting_env.db, [{"entry_id": "TE1", "hours": D("3"), "bill_rate": D("150"), **US}]
    )
    posting_env.window(legal_entities=["US01"])
    correct(posting_env.db, "TE1", hours=D("3"), bill_rate=D("120"), **DE)
    result = posting_env.window(legal_entities=["DE01"])
    assert result.counts["time_line_reversal_planned"] == 1
    assert result.counts["time_line_post_planned"] == 1
    assert erp_net_hours(posting_env.erp) == {"TE1": D("3")}  # was 6 h
    assert _net_amounts(posting_env) == {("TE1", "EUR"): D("360.00")}  # was 450 USD + 360 EUR
    rev = erp_lines(posting_env.erp).set_index("external_id").loc["te:TE1:v1:rev"]
    assert (rev["legal_entity"], rev["currency"]) == ("US01", "USD")  # the line it cancels


def test_entry_moved_into_the_scoped_month_posts_both_halves(posting_env: PostingEnv) -> None:
    stage_entries(
        posting_env.db, [{"entry_id": "TE1", "hours": D("4"), "work_date": date(2026, 10, 20)}]
    )
    posting_env.window()
    correct(posting_env.db, "TE1", hours=D("4"), work_date=date(2026, 11, 3))
    posting_env.window(date_from=date(2026, 11, 1))
    assert erp_net_hours(posting_env.erp) == {"TE1": D("4")}  # was 8 h
    assert set(erp_lines(posting_env.erp)["external_id"]) == {
        "te:TE1:v1:post",
        "te:TE1:v1:rev",
        "te:TE1:v2:post",
    }


def test_entry_moved_past_date_to_is_not_dropped(posting_env: PostingEnv) -> None:
    """The weekday schedule posts up to yesterday: an entry moved to today keeps its line."""
    stage_entries(posting_env.db, [{"entry_id": "TE1", "hours": D("4")}])
    posting_env.window()
    correct(posting_env.db, "TE1", hours=D("4"), work_date=date(2026, 12, 1))
    posting_env.window(date_to=date(2026, 11, 30))
    assert erp_net_hours(posting_env.erp) == {"TE1": D("4")}  # was gone
    live = erp_lines(posting_env.erp).set_index("external_id").loc["te:TE1:v2:post"]
    assert live["work_date"] == date(2026, 12, 1)
    row = ledger(posting_env.db).set_index("external_id").loc["te:TE1:v2:post"]
    assert (row["state"], row["erp_message"]) == (
        "confirmed",
        "Outside the window's scope; planned with the other half of its correction, "
        "which is in scope",
    )


def test_entries_wholly_outside_the_scope_are_left_alone(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": "IN"}, {"entry_id": "OUT", **US}])
    posting_env.window(legal_entities=["DE01"])
    assert set(erp_net_hours(posting_env.erp)) == {"IN"}
    correct(posting_env.db, "OUT", hours=D("1"), **US)
    correct(posting_env.db, "IN", hours=D("2"))
    result = posting_env.window(legal_entities=["DE01"])
    assert result.counts["lines_sendable"] == 2
    assert erp_net_hours(posting_env.erp) == {"IN": D("2")}


def test_a_pair_pulled_into_scope_is_held_whole_with_the_reason(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": "TE1", "work_date": date(2026, 10, 30), **US}])
    posting_env.window()
    posting_env.erp.set_period("US01", "2026-10", False)
    correct(posting_env.db, "TE1", work_date=date(2026, 11, 3), **DE)
    result = posting_env.window(legal_entities=["DE01"], closed_period_policy="hold")
    assert result.counts["time_lines_held"] == 2 and result.counts["confirmed"] == 0
    msgs = ledger(posting_env.db).set_index("external_id")["erp_message"].to_dict()
    assert msgs["te:TE1:v1:rev"] == (
        "Posting period 2026-10 is closed for US01; held (policy hold) until it reopens"
    )
    assert msgs["te:TE1:v2:post"] == (
        "Held with the other half of its correction (te:TE1:v1:rev): "
        "Posting period 2026-10 is closed for US01; held (policy hold) until it reopens"
    )
    assert _net_amounts(posting_env) == {("TE1", "USD"): D("750.00")}  # unchanged, not doubled
    posting_env.erp.set_period("US01", "2026-10", True)
    posting_env.window(legal_entities=["DE01"], closed_period_policy="hold")
    assert _net_amounts(posting_env) == {("TE1", "EUR"): D("750.00")}


def test_invoice_moved_into_the_scoped_month_is_credited_and_reposted(
    posting_env: PostingEnv,
) -> None:
    stage_invoice(posting_env.db, "INV1", [{"line_no": 1}], issue_date=date(2026, 10, 30))
    posting_env.window()
    stage_invoice(
        posting_env.db,
        "INV1",
        [{"line_no": 1, "amount": D("120.00")}],
        issue_date=date(2026, 11, 2),
    )
    posting_env.window(date_from=date(2026, 11, 1))
    docs = posting_env.erp.read_invoices(*FAR).set_index("external_id")
    assert docs["total_amount"].to_dict() == {
        "inv:INV1:v1:post": D("100.00"),
        "inv:INV1:v1:rev": D("-100.00"),
        "inv:INV1:v2:post": D("120.00"),
    }


def test_invoice_moved_to_another_entity_outside_the_scope_stays_whole(
    posting_env: PostingEnv,
) -> None:
    stage_invoice(posting_env.db, "INV1", [{"line_no": 1}])
    posting_env.window()
    stage_invoice(
        posting_env.db,
        "INV1",
        [{"line_no": 1}],
        legal_entity="US01",
        project_code="UP1",
        currency="USD",
    )
    # Its posted version is DE01: in scope of a DE01 window, so both halves go.
    posting_env.window(legal_entities=["DE01"])
    docs = posting_env.erp.read_invoices(*FAR)
    net = docs.groupby("currency")["total_amount"].apply(lambda s: sum(s, D(0))).to_dict()
    assert net == {"EUR": D("0.00"), "USD": D("100.00")}


def test_a_pair_split_before_the_rule_is_mended_by_a_window_covering_either_line(
    posting_env: PostingEnv,
) -> None:
    """An earlier (line-scoped) window posted v2 without reversing v1: both are live. A window
    whose scope covers only v2 still sends v1's reversal."""
    stage_entries(posting_env.db, [{"entry_id": "TE1", "hours": D("3"), **US}])
    posting_env.window()
    correct(posting_env.db, "TE1", hours=D("3"), **DE)
    posting_env.window()
    # Undo the reversal in the ERP and the ledger: the split state the old plan left behind.
    with posting_env.erp._tx() as conn:
        conn.exec_driver_sql("DELETE FROM erp_time_lines WHERE external_id = 'te:TE1:v1:rev'")
    with posting_env.db.begin() as conn:
        conn.exec_driver_sql("DELETE FROM posting_ledger WHERE external_id = 'te:TE1:v1:rev'")
    assert erp_net_hours(posting_env.erp) == {"TE1": D("6")}
    result = posting_env.window(legal_entities=["DE01"])
    assert result.counts["time_line_reversal_planned"] == 1
    assert erp_net_hours(posting_env.erp) == {"TE1": D("3")}
    assert _net_amounts(posting_env) == {("TE1", "EUR"): D("300.00")}


def test_a_pair_never_straddles_two_batches(posting_env: PostingEnv) -> None:
    """An ERP outage after the first batch stops the window: no pair is left half-posted."""
    from tests.support.erp_faults import FaultInjection

    stage_entries(posting_env.db, [{"entry_id": e} for e in "BCD"])
    posting_env.window()
    for e in "BCD":
        correct(posting_env.db, e, hours=D("2"))
    # Six lines, batches of 3: B's pair and C's pair go in the first batch, D's in the second.
    down = posting_env.faulty_erp(FaultInjection(fail_after_n_calls=1))
    stopped = posting_env.window(erp=down, batch_size=3)
    down.close()
    assert stopped.status == "stopped"
    assert erp_net_hours(posting_env.erp) == {"B": D("2"), "C": D("2"), "D": D("7.5")}
    rows = ledger(posting_env.db)
    sizes = rows[rows["window_id"] == stopped.window_id].groupby("batch_id").size().tolist()
    assert sizes == [4, 2]
    posting_env.window(batch_size=3)
    assert erp_net_hours(posting_env.erp) == {"B": D("2"), "C": D("2"), "D": D("2")}
