"""A batch's fate is written once, in `posting_batches`, not once per line (DuckDB and PostgreSQL).

A line is written into the ledger once, as `sent`; its batch's row says it was confirmed.
Lines the ERP left unanswered are settled one by one, and ledgers written before the batches
table (per-line states, no batch rows) read as they always did.
"""

from __future__ import annotations

import sqlalchemy as sa

from tests.support.erp_faults import FaultInjection
from tests.support.posting_helpers import PostingEnv, erp_lines, ledger, stage_entries

pytest_plugins = ["tests.support.posting_fixtures"]


def _raw(env: PostingEnv):
    """The ledger's own rows, as stored (not through `ledger_rows`)."""
    return env.db.query_df("SELECT * FROM posting_ledger ORDER BY external_id")


def _batches(env: PostingEnv):
    return env.db.query_df("SELECT * FROM posting_batches ORDER BY batch_id")


def test_a_line_is_written_once_and_confirmed_by_its_batch(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": f"TE{i}"} for i in range(7)])
    result = posting_env.window(batch_size=3)
    assert result.status == "completed" and result.counts["confirmed"] == 7

    batches = _batches(posting_env)
    assert batches["state"].tolist() == ["confirmed"] * 3
    assert batches["lines"].tolist() == [3, 3, 1]
    assert set(batches["document"]) == {"time_line"}
    assert set(batches["window_id"]) == {result.window_id}
    raw = _raw(posting_env)
    # Inserted `sent` just before the ERP saw them, never updated after.
    assert set(raw["state"]) == {"sent"} and raw["settled_at"].isna().all()
    led = ledger(posting_env.db)
    assert set(led["state"]) == {"confirmed"}
    settled = dict(zip(batches["batch_id"], batches["settled_at"], strict=True))
    assert (led["settled_at"] == led["batch_id"].map(settled)).all()
    assert set(led["external_id"]) == set(erp_lines(posting_env.erp)["external_id"])


def test_unanswered_lines_stay_sent_then_are_settled_not_posted_twice(
    posting_env: PostingEnv,
) -> None:
    stage_entries(posting_env.db, [{"entry_id": f"TE{i}"} for i in range(4)])
    # The ERP books all four, its answer names three.
    quiet = posting_env.faulty_erp(FaultInjection(unanswered_lines=1))
    first = posting_env.window(erp=quiet, batch_size=10)
    quiet.close()
    assert first.counts["unanswered"] == 1 and first.counts["confirmed"] == 3
    assert _batches(posting_env)["state"].tolist() == ["failed"]
    led = ledger(posting_env.db)
    assert sorted(led["state"]) == ["confirmed", "confirmed", "confirmed", "sent"]

    again = posting_env.window()
    assert again.counts["settled_confirmed"] == 1 and again.counts["lines_sendable"] == 0
    assert set(ledger(posting_env.db)["state"]) == {"confirmed"}
    lines = erp_lines(posting_env.erp)
    assert len(lines) == 4 and lines["external_id"].is_unique


def test_a_ledger_written_before_the_batches_table_reads_as_before(
    posting_env: PostingEnv,
) -> None:
    """Rows as release 5 wrote them: per-line `confirmed` with their own settlement time, and
    no batch rows. They read the same, and a later window neither re-posts nor settles them."""
    stage_entries(posting_env.db, [{"entry_id": f"TE{i}"} for i in range(5)])
    posting_env.window(batch_size=2)
    before = ledger(posting_env.db)
    with posting_env.db.begin() as conn:
        conn.execute(
            sa.text(
                """UPDATE posting_ledger SET state = 'confirmed', settled_at = (
                       SELECT b.settled_at FROM posting_batches b
                       WHERE b.batch_id = posting_ledger.batch_id)"""
            )
        )
        conn.execute(sa.text("DELETE FROM posting_batches"))
    assert ledger(posting_env.db).equals(before)

    stage_entries(posting_env.db, [{"entry_id": "TE9"}])
    later = posting_env.window()
    assert later.counts["settled_confirmed"] == 0 and later.counts["confirmed"] == 1
    led = ledger(posting_env.db)
    assert set(led["state"]) == {"confirmed"} and len(led) == 6
    assert len(erp_lines(posting_env.erp)) == 6


def test_reconciliation_reads_batch_confirmed_lines_as_confirmed(posting_env: PostingEnv) -> None:
    """Lines confirmed by their batch (stored `sent`) reconcile as posted: every entry of a
    completed window is `in_sync`, none an exception, on both staging backends, and the
    fast path takes them (it joins the ledger in staging: states must come through batches,
    or every posted entry falls to the slow line-by-line path)."""
    from datetime import UTC, date, datetime

    from reconciliation.compare import Period, reconcile

    stage_entries(posting_env.db, [{"entry_id": f"TE{i}"} for i in range(5)])
    assert posting_env.window(batch_size=2).counts["confirmed"] == 5
    assert set(_raw(posting_env)["state"]) == {"sent"}  # the batches say confirmed
    rec = reconcile(
        posting_env.db,
        posting_env.erp,
        Period(date(2026, 11, 1), date(2026, 11, 30), ()),
        now=datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert rec.lines.num_rows == 0, rec.lines.to_pandas()[["entry_id", "class"]]
    assert rec.counts().get("in_sync") == 5
    # ... and on the fast path: a batch-confirmed line is a confirmed post of its version.
    assert rec.exact_path_entries == 0


def test_closing_counts_taken_while_the_last_batch_posts_match_the_ledger(
    posting_env: PostingEnv,
) -> None:
    """A window counts its lines (all but the last batch's) while the ERP books its last
    batch, and adds the last batch once recorded: the counts are the ledger's, with lines
    rejected in an earlier batch and in the last time-line batch, and an invoice batch last."""
    from decimal import Decimal as D

    from tests.support.posting_helpers import stage_invoice

    stage_entries(
        posting_env.db,
        [
            {
                "entry_id": f"TE{i}",
                "hours": D(i + 1),
                **({"project_code": "P9"} if i in (1, 6) else {}),
            }
            for i in range(7)
        ],
    )
    stage_invoice(posting_env.db, "INV1", [{"line_no": 1, "amount": D("100.00")}])
    result = posting_env.window(batch_size=3)
    assert result.status == "completed"
    assert [b.rsplit("-", 1)[-1] for b in _batches(posting_env)["batch_id"]] == [
        "b00001",
        "b00002",
        "b00003",
        "b00001",  # the invoice batch (`-inv-b00001`), sent last
    ]
    led = ledger(posting_env.db)
    by_state = led.groupby("state")
    assert result.counts["time_lines_confirmed"] == by_state.size()["confirmed"] == 5
    assert result.counts["time_lines_rejected"] == by_state.size()["rejected"] == 2
    confirmed = led[led["state"] == "confirmed"]
    assert result.counts["hours_confirmed"] == str(sum(confirmed["hours"], D(0))) == "19.0000"
    assert result.counts["invoices_confirmed"] == 1
    assert result.counts["amount_confirmed_invoices"] == {"EUR": "100.00"}
    assert result.counts["amount_confirmed_time_lines"] == {
        "EUR": str(sum(confirmed["amount"], D(0)))
    }
    assert sorted(result.rejections["external_id"]) == ["te:TE1:v1:post", "te:TE6:v1:post"]
