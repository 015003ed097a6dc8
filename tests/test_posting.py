"""Posting windows: corrections, deletions, rejections, outages, idempotency (DuckDB and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from posting.plan import _BATCH_ID_SQL, external_id, ledger_batch_id
from posting.window import PlanTooLarge
from tests.support.erp_faults import FaultInjection
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


def _assert_ledger_agrees_with_erp(env: PostingEnv) -> None:
    """Every confirmed ledger line is in the ERP exactly once, and nothing else is."""
    lines = erp_lines(env.erp)
    assert lines["external_id"].is_unique
    led = ledger(env.db)
    confirmed = set(led.loc[led["state"] == "confirmed", "external_id"])
    assert confirmed == set(lines["external_id"])
    assert not set(led["state"]) & {"planned", "sent"}


def test_first_window_posts_every_validated_entry(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": f"TE{i}"} for i in range(12)])
    result = posting_env.window(batch_size=5)
    assert result.status == "completed"
    assert result.counts["confirmed"] == 12 and result.counts["batches"] == 3
    sizes = ledger(posting_env.db).groupby("batch_id").size()
    assert sizes.to_dict() == {
        ledger_batch_id(result.window_id, "te", n): s for n, s in ((1, 5), (2, 5), (3, 2))
    }
    assert result.counts["hours_confirmed"] == "90.0000"
    assert result.counts["amount_confirmed"] == {"EUR": "9000.00"}
    _assert_ledger_agrees_with_erp(posting_env)
    assert set(erp_lines(posting_env.erp)["external_id"]) == {
        external_id("te", f"TE{i}", 1, "post") for i in range(12)
    }


def test_a_second_window_posts_nothing_new(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": "TE1"}, {"entry_id": "TE2"}])
    posting_env.window()
    again = posting_env.window()
    assert again.counts["lines_sendable"] == 0 and again.counts["confirmed"] == 0
    assert len(erp_lines(posting_env.erp)) == 2


def test_correction_after_posting_reverses_and_reposts(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": "TE1"}, {"entry_id": "TE2"}])
    posting_env.window()
    v = correct(posting_env.db, "TE1", hours=D("5.25"))
    result = posting_env.window()
    assert result.counts["time_line_reversal_planned"] == 1
    assert result.counts["time_line_post_planned"] == 1
    lines = erp_lines(posting_env.erp).set_index("external_id")
    rev = lines.loc["te:TE1:v1:rev"]
    assert (rev["kind"], rev["reverses_external_id"]) == ("reversal", "te:TE1:v1:post")
    assert (rev["hours"], rev["amount"]) == (D("-7.5000"), D("-750.00"))
    assert lines.loc[f"te:TE1:v{v}:post", "hours"] == D("5.2500")
    assert erp_net_hours(posting_env.erp) == {"TE1": D("5.25"), "TE2": D("7.5")}
    assert sum(lines["amount"], D(0)) == D("525.00") + D("750.00")
    _assert_ledger_agrees_with_erp(posting_env)


def test_deleted_entry_is_reversed_only(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": "TE1"}, {"entry_id": "TE2"}])
    posting_env.window()
    stage_entries(posting_env.db, [{"entry_id": "TE1", "version": 2, "state": "not_postable"}])
    result = posting_env.window()
    assert result.counts["time_line_reversal_planned"] == 1
    assert "time_line_post_planned" not in result.counts
    assert erp_net_hours(posting_env.erp) == {"TE2": D("7.5")}
    _assert_ledger_agrees_with_erp(posting_env)
    # Reversed once: a further window does not reverse again.
    assert posting_env.window().counts["lines_sendable"] == 0


def test_quarantined_new_version_leaves_the_posted_line(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": "TE1"}])
    duck_env.window()
    stage_entries(duck_env.db, [{"entry_id": "TE1", "version": 2, "state": "quarantined"}])
    assert duck_env.window().counts["lines_sendable"] == 0
    assert erp_net_hours(duck_env.erp) == {"TE1": D("7.5")}
    # Released by the contracts later (now valid): then corrected in the ERP.
    correct(duck_env.db, "TE1", hours=D("8"))
    duck_env.window()
    assert erp_net_hours(duck_env.erp) == {"TE1": D("8")}


def test_rejected_line_leaves_the_rest_posted_and_is_retried(posting_env: PostingEnv) -> None:
    stage_entries(
        posting_env.db,
        [{"entry_id": "TE1"}, {"entry_id": "TE2", "project_code": "P9"}, {"entry_id": "TE3"}],
    )
    result = posting_env.window(batch_size=10)
    assert result.counts["confirmed"] == 2 and result.counts["rejected"] == 1
    rejections = result.rejections.set_index("external_id")["erp_message"].to_dict()
    assert rejections == {"te:TE2:v1:post": "Project P9 does not exist"}
    assert set(erp_net_hours(posting_env.erp)) == {"TE1", "TE3"}
    # Finance creates the project in the ERP; the next window posts the line.
    posting_env.erp.ensure_master_data(*_project_frames("P9"))
    again = posting_env.window()
    assert again.counts["confirmed"] == 1
    assert set(erp_net_hours(posting_env.erp)) == {"TE1", "TE2", "TE3"}
    _assert_ledger_agrees_with_erp(posting_env)


def _project_frames(code: str):
    import pandas as pd

    return (
        pd.DataFrame({"customer_id": [], "customer_name": []}),
        pd.DataFrame({"employee_id": [], "employee_name": [], "legal_entity": []}),
        pd.DataFrame(
            {
                "project_code": [code],
                "project_name": ["New"],
                "customer_id": ["C1"],
                "legal_entity": ["DE01"],
                "currency": ["EUR"],
            }
        ),
        pd.DataFrame({"project_code": [code], "task_code": ["T1"], "task_name": ["Dev"]}),
    )


def test_outage_mid_window_then_rerun_completes_exactly_once(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": f"TE{i:02d}"} for i in range(20)])
    # A batch's first attempt is one call (a never-sent batch needs no lookup): the outage
    # starts with the third batch and lasts through every retry.
    down = posting_env.faulty_erp(FaultInjection(fail_after_n_calls=2))
    stopped = posting_env.window(erp=down, batch_size=4)
    down.close()
    assert stopped.status == "stopped"
    assert "unavailable" in stopped.message and "run the window again" in stopped.message
    posted_first = set(erp_lines(posting_env.erp)["external_id"])
    assert len(posted_first) == 8  # two batches of 4, one call each, then the outage
    states = ledger(posting_env.db)["state"].value_counts().to_dict()
    assert states["confirmed"] == len(posted_first)
    assert states.get("planned", 0) + states.get("sent", 0) == 20 - len(posted_first)
    done = posting_env.window(batch_size=4)
    assert done.status == "completed"
    assert len(erp_lines(posting_env.erp)) == 20
    assert erp_net_hours(posting_env.erp) == {f"TE{i:02d}": D("7.5") for i in range(20)}
    _assert_ledger_agrees_with_erp(posting_env)


def test_outage_while_planning_stops_cleanly_and_the_rerun_posts_all(
    duck_env: PostingEnv,
) -> None:
    """The ERP is down when the plan asks for its open periods: the window stops (nothing
    written into the ledger, the plan dropped, the lock released) and the next one posts."""
    stage_entries(duck_env.db, [{"entry_id": f"TE{i}"} for i in range(3)])
    down = duck_env.faulty_erp(FaultInjection(periods_unavailable=True))
    stopped = duck_env.window(erp=down)
    down.close()
    assert stopped.status == "stopped" and "run the window again" in stopped.message
    assert ledger(duck_env.db).empty and erp_lines(duck_env.erp).empty
    assert duck_env.db.scalar("SELECT status FROM posting_windows") == "stopped"
    done = duck_env.window()
    assert done.status == "completed" and done.counts["confirmed"] == 3
    _assert_ledger_agrees_with_erp(duck_env)


def test_lost_response_is_confirmed_on_retry_not_posted_twice(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": f"TE{i}"} for i in range(6)])
    # The first batch's post: the ERP commits it, the answer is lost.
    flaky = posting_env.faulty_erp(FaultInjection(lose_response_on_posts={1}))
    result = posting_env.window(erp=flaky, batch_size=3)
    flaky.close()
    assert result.status == "completed"
    assert result.counts["already_in_erp"] == 3 and result.counts["confirmed"] == 6
    assert len(erp_lines(posting_env.erp)) == 6
    _assert_ledger_agrees_with_erp(posting_env)


def test_line_superseded_before_it_was_sent_is_voided(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": "TE1"}])
    down = duck_env.faulty_erp(FaultInjection(unavailable=True))
    assert duck_env.window(erp=down).status == "stopped"
    down.close()
    correct(duck_env.db, "TE1", hours=D("3"))
    result = duck_env.window()
    assert result.counts["voided"] == 1
    assert "time_line_reversal_planned" not in result.counts  # v1 never reached the ERP
    led = ledger(duck_env.db).set_index("external_id")["state"].to_dict()
    assert led == {"te:TE1:v1:post": "void", "te:TE1:v2:post": "confirmed"}
    assert erp_net_hours(duck_env.erp) == {"TE1": D("3")}


def test_max_lines_refuses_the_whole_plan(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": f"TE{i}"} for i in range(5)])
    with pytest.raises(PlanTooLarge, match="5 lines to send, more than max_lines 4"):
        duck_env.window(max_lines=4)
    assert ledger(duck_env.db).empty and erp_lines(duck_env.erp).empty
    status = duck_env.db.scalar("SELECT status FROM posting_windows")
    assert status == "refused"


def test_scope_limits_legal_entities_and_dates(duck_env: PostingEnv) -> None:
    from datetime import date

    stage_entries(
        duck_env.db,
        [
            {"entry_id": "A", "work_date": date(2026, 11, 2)},
            {"entry_id": "B", "work_date": date(2026, 12, 1)},
            {"entry_id": "C", "legal_entity": "US01", "project_code": "UP1", "currency": "USD"},
        ],
    )
    duck_env.window(legal_entities=["DE01"], date_to=date(2026, 11, 30))
    assert set(erp_net_hours(duck_env.erp)) == {"A"}
    duck_env.window(legal_entities=["US01"])
    assert set(erp_net_hours(duck_env.erp)) == {"A", "C"}


def test_invoice_posted_then_changed_then_cancelled(posting_env: PostingEnv) -> None:
    from datetime import date

    stage_invoice(
        posting_env.db,
        "INV1",
        [{"line_no": 1, "amount": D("100.00")}, {"line_no": 2, "amount": D("50.00")}],
    )
    stage_invoice(posting_env.db, "INV2", [{"line_no": 1, "amount": D("10.00")}], status="draft")
    posting_env.window()
    far = (date(2000, 1, 1), date(2100, 1, 1))
    docs = posting_env.erp.read_invoices(*far).set_index("external_id")
    assert list(docs.index) == ["inv:INV1:v2:post"]  # the draft is not posted
    assert docs.loc["inv:INV1:v2:post", "total_amount"] == D("150.00")
    stage_invoice(posting_env.db, "INV1", [{"line_no": 2, "amount": D("80.00")}])
    posting_env.window()
    stage_invoice(
        posting_env.db,
        "INV1",
        [{"line_no": 1, "amount": D("100.00")}, {"line_no": 2, "amount": D("80.00")}],
        status="cancelled",
    )
    posting_env.window()
    docs = posting_env.erp.read_invoices(*far).set_index("external_id")
    assert docs["total_amount"].to_dict() == {
        "inv:INV1:v2:post": D("150.00"),
        "inv:INV1:v2:rev": D("-150.00"),
        "inv:INV1:v3:post": D("180.00"),
        "inv:INV1:v3:rev": D("-180.00"),
    }
    assert sum(docs["total_amount"], D(0)) == 0
    credit = posting_env.erp.read_invoice_lines(["inv:INV1:v3:rev"])
    assert credit["amount"].tolist() == [D("-100.00"), D("-80.00")]
    inv_ledger = ledger(posting_env.db, "invoice_ledger")
    assert set(inv_ledger["state"]) == {"confirmed"}


def test_long_entry_ids_get_a_hashed_external_id(duck_env: PostingEnv) -> None:
    long_id = "D365-" + "9f1c2a7e-" * 8  # 77 characters
    stage_entries(duck_env.db, [{"entry_id": long_id}])
    duck_env.window()
    ext = erp_lines(duck_env.erp)["external_id"].tolist()
    assert ext == [external_id("te", long_id, 1, "post")]
    assert ext[0].startswith("te~") and len(ext[0]) <= 64
    assert external_id("te", "TE1", 2, "rev") == "te:TE1:v2:rev"


@pytest.mark.parametrize("batch_no", [1, 42, 99_999, 123_456])
def test_batch_ids_formatted_alike_in_sql_and_python(any_db, batch_no: int) -> None:
    """The ledger's batch id is formatted in SQL as lines enter the ledger and in Python to
    find the batch again: the same text, never cut short past five digits."""
    with any_db.engine.connect() as conn:
        got = conn.execute(
            sa.text(f"SELECT {_BATCH_ID_SQL} FROM (SELECT CAST(:n AS INTEGER) AS batch_no) p"),
            {"bp": "W1-b", "n": batch_no},
        ).scalar_one()
    assert got == ledger_batch_id("W1", "te", batch_no)
    assert got == f"W1-b{batch_no:05d}"
