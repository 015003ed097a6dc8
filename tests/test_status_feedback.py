"""Status fed back to the PSA/CRM (issue 16 item 3), on DuckDB and PostgreSQL staging with the
SQL-interface target: per entry posted / invoiced / reversed, per invoice number, status and
amount open; only what changed is delivered; files whole in a local folder and over the real
sshd; a webhook receiver started here that fails and recovers (one accepted delivery per
change, by idempotency key); dead letters replayed; a delivery SIGKILLed and re-run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from connectors.outbound.folders import LocalFolder, SftpFolder
from connectors.outbound.webhook import Webhook
from staging_models.outbound import Targets, deliver_rows, replay_dead_letters
from staging_models.status_feedback import deliver_status
from tests.support.expense_world import ExpenseEnv, expense
from tests.support.feedback_helpers import Receiver, bill_entries, set_project
from tests.support.posting_helpers import PostingEnv, correct, stage_entries, stage_invoice

pytest_plugins = ["tests.support.posting_fixtures", "tests.support.expense_fixtures"]

D = Decimal
ROOT = Path(__file__).resolve().parents[1]


def _world(env: PostingEnv) -> None:
    """TE1..TE3 posted; invoice I1 (TE1, TE2) posted."""
    stage_entries(env.db, [{"entry_id": f"TE{i}"} for i in (1, 2, 3)])
    stage_invoice(env.db, "I1", [{"line_no": 1, "amount": D("1500.00")}])
    bill_entries(env.db, "I1", "TE1; TE2")
    assert env.window().status == "completed"


def _read(folder: Path, feed: str, sequence: int) -> tuple[dict, pd.DataFrame, list[dict]]:
    stem = f"{feed}_{sequence:08d}"
    manifest = json.loads((folder / f"{stem}.manifest.json").read_text())
    jsonl = (folder / f"{stem}.jsonl").read_bytes()
    assert hashlib.sha256(jsonl).hexdigest() == manifest["content_sha256"]
    csv_bytes = (folder / f"{stem}.csv").read_bytes()
    assert hashlib.sha256(csv_bytes).hexdigest() == manifest["files"][f"{stem}.csv"]
    frame = pd.read_csv(folder / f"{stem}.csv", dtype=str, keep_default_na=False)
    records = [json.loads(line) for line in jsonl.decode().splitlines()]
    key = next(k for k in ("entry_id", "invoice_id", "expense_id") if k in frame)
    assert frame[key].tolist() == [r[key] for r in records]
    return manifest, frame, records


def _by(records: list[dict], key: str) -> dict[str, dict]:
    return {r[key]: r for r in records}


def test_status_is_delivered_changed_only(posting_env: PostingEnv) -> None:
    env = posting_env
    _world(env)
    out = env.tmp_path / "feedback"
    targets = Targets(folder=LocalFolder(out))

    first = deliver_status(env.db, env.erp, targets)
    assert [(r.feed, r.sequence, r.records) for r in first] == [
        ("time_entry_status", 1, 3),
        ("invoice_status", 1, 1),
        ("expense_status", None, 0),  # no expenses: nothing delivered
    ]
    manifest, _, entries = _read(out, "time_entry_status", 1)
    assert manifest["feed"] == "time_entry_status" and manifest["sequence"] == 1
    assert manifest["records"] == 3 and manifest["full_resend"] is False
    e = _by(entries, "entry_id")
    assert e["TE1"]["status"] == "invoiced"
    assert e["TE1"]["erp_invoice_number"] == "inv:I1:v1:post"
    assert e["TE1"]["invoice_date"] == "2026-11-30"
    assert e["TE1"]["erp_document"] == "te:TE1:v1:post" and e["TE1"]["erp_period"] == "2026-11"
    assert e["TE3"]["status"] == "posted" and e["TE3"]["erp_invoice_number"] is None
    _, _, invoices = _read(out, "invoice_status", 1)
    assert invoices == [
        {
            "invoice_id": "I1",
            "status": "posted",
            "erp_document": "inv:I1:v1:post",
            "erp_invoice_number": "inv:I1:v1:post",
            "erp_period": "2026-11",
            "invoice_date": "2026-11-30",
            "currency": "EUR",
            "amount": "1500.00",
            "amount_open": "1500.00",
            "reversed_by": None,
            "hold_reason": None,
        }
    ]
    # Nothing changed: no delivery, no sequence number used, no file.
    again = deliver_status(env.db, env.erp, targets)
    assert [r.sequence for r in again] == [None, None, None]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{f}_00000001.{x}"
        for f in ("time_entry_status", "invoice_status")
        for x in ("csv", "jsonl", "manifest.json")
    )

    # A payment in the ERP: only the invoice changes.
    env.erp.record_payment("PAY1", "inv:I1:v1:post", date(2026, 12, 3), D("500.00"))
    paid = deliver_status(env.db, env.erp, targets)
    assert [(r.feed, r.sequence, r.records) for r in paid] == [
        ("time_entry_status", None, 0),
        ("invoice_status", 2, 1),
        ("expense_status", None, 0),
    ]
    (inv,) = _read(out, "invoice_status", 2)[2]
    assert inv["status"] == "partially_paid" and inv["amount_open"] == "1000.00"

    # Cancelled in the ERP (by its users): its entries are no longer invoiced.
    with env.erp._tx() as conn:
        conn.exec_driver_sql("UPDATE erp_invoices SET status = 'cancelled'")
    cancelled = deliver_status(env.db, env.erp, targets)
    assert [(r.sequence, r.records) for r in cancelled] == [(2, 2), (3, 1), (None, 0)]
    e = _by(_read(out, "time_entry_status", 2)[2], "entry_id")
    assert set(e) == {"TE1", "TE2"}
    assert {r["status"] for r in e.values()} == {"posted"}
    assert e["TE1"]["erp_invoice_number"] is None
    (inv,) = _read(out, "invoice_status", 3)[2]
    assert inv["status"] == "cancelled" and inv["amount_open"] == "0.00"

    # TE3 deleted in the PSA: the next window reverses it, the next delivery says so.
    correct(env.db, "TE3", state="not_postable")
    env.window()
    (te3,) = (
        _read(out, "time_entry_status", 3)[2]
        if deliver_status(env.db, env.erp, targets)[0].sequence == 3
        else pytest.fail("no delivery after the reversal")
    )
    assert te3["status"] == "reversed" and te3["reversed_by"] == "te:TE3:v1:rev"
    assert te3["erp_document"] is None

    # A full resend: every record, flagged.
    full = deliver_status(env.db, env.erp, targets, full_resend=True)
    # (An empty feed is resent too: an empty delivery, the expenses' first.)
    assert [(r.sequence, r.records) for r in full] == [(4, 3), (4, 1), (1, 0)]
    assert _read(out, "time_entry_status", 4)[0]["full_resend"] is True
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_a_psa_cancellation_credits_the_invoice_and_unbills_its_entries(
    posting_env: PostingEnv,
) -> None:
    env = posting_env
    _world(env)
    out = env.tmp_path / "feedback"
    targets = Targets(folder=LocalFolder(out))
    deliver_status(env.db, env.erp, targets)
    stage_invoice(env.db, "I1", [{"line_no": 1, "amount": D("1500.00")}], status="cancelled")
    bill_entries(env.db, "I1", "TE1; TE2")
    env.window()
    results = deliver_status(env.db, env.erp, targets)
    e = _by(_read(out, "time_entry_status", results[0].sequence)[2], "entry_id")
    assert {k: v["status"] for k, v in e.items()} == {"TE1": "posted", "TE2": "posted"}
    (inv,) = _read(out, "invoice_status", results[1].sequence)[2]
    assert inv["status"] == "reversed" and inv["reversed_by"] == "inv:I1:v1:rev"


def test_a_time_entry_a_window_holds_is_reported_held_with_the_reason(
    posting_env: PostingEnv,
) -> None:
    """Time lines under a billing hold (`hold`): a new entry is `held` with the hold's reason,
    not `not_posted`; a held correction leaves the entry `posted` (its old line) with the
    reason; after the release both are `posted` and the reason is gone."""
    env = posting_env
    stage_entries(env.db, [{"entry_id": "TE1"}])
    assert env.window().status == "completed"
    set_project(env.db, "P1", hold=True, reason="Disputed scope", since=date(2026, 12, 1))
    correct(env.db, "TE1", hours=D("2.50"))
    stage_entries(env.db, [{"entry_id": "TE2"}])
    env.window(billing_hold_time_and_expenses="hold")
    out = env.tmp_path / "feedback"
    targets = Targets(folder=LocalFolder(out))
    assert deliver_status(env.db, env.erp, targets)[0].sequence == 1
    e = _by(_read(out, "time_entry_status", 1)[2], "entry_id")
    reason = "Billing hold on project P1 since 2026-12-01: Disputed scope"
    assert (e["TE2"]["status"], e["TE2"]["hold_reason"], e["TE2"]["erp_document"]) == (
        "held",
        reason,
        None,
    )
    assert (e["TE1"]["status"], e["TE1"]["posted_version"], e["TE1"]["entry_version"]) == (
        "posted",
        "1",
        "2",
    )
    assert e["TE1"]["hold_reason"] == reason

    set_project(env.db, "P1", hold=False)
    env.window(billing_hold_time_and_expenses="hold")
    assert deliver_status(env.db, env.erp, targets)[0].sequence == 2
    e = _by(_read(out, "time_entry_status", 2)[2], "entry_id")
    assert {k: (v["status"], v["posted_version"], v["hold_reason"]) for k, v in e.items()} == {
        "TE1": ("posted", "2", None),
        "TE2": ("posted", "1", None),
    }


def test_expense_status_posted_held_reversed_and_changed_only(expense_env: ExpenseEnv) -> None:
    """Per current expense, as for time entries: posted (line, period, amounts), not posted,
    held under a billing hold (a correction: the old line stays posted, with the reason),
    reversed after a deletion; only changed expenses are delivered."""
    env = expense_env
    env.land(
        expense(),
        expense(expense_id="X2", receipt_ref="R-2"),
        expense(expense_id="X3", receipt_ref="R-3", approval_status="submitted"),
    )
    assert env.window().status == "completed"
    out = env.world.folder / "feedback"
    targets = Targets(folder=LocalFolder(out))
    first = deliver_status(env.world.db, env.erp, targets)
    assert [(r.feed, r.sequence, r.records) for r in first] == [
        ("time_entry_status", None, 0),
        ("invoice_status", None, 0),
        ("expense_status", 1, 3),
    ]
    x = _by(_read(out, "expense_status", 1)[2], "expense_id")
    assert x["X1"] == {
        "expense_id": "X1",
        "expense_version": "1",
        "status": "posted",
        "erp_document": "exp:X1:v1:post",
        "erp_period": "2026-11",
        "posted_version": "1",
        "currency": "USD",
        "amount": "120.00",
        "rebill_amount": "132.00",
        "reversed_by": None,
        "hold_reason": None,
    }
    assert x["X3"]["status"] == "not_posted" and x["X3"]["erp_document"] is None
    assert [r.sequence for r in deliver_status(env.world.db, env.erp, targets)] == [None] * 3

    # Under a billing hold (`hold`), X1's correction waits: the old line stays, with the
    # reason; X2 deleted is reversed (its project is P1 too: the reversal waits as well).
    env.hold_p1(hold=True)
    env.land(
        expense(amount="99.50", updated_at="2026-11-06T09:00:00Z"),
        expense(expense_id="X2", receipt_ref="R-2", deleted="true"),
    )
    env.window(billing_hold_time_and_expenses="hold")
    held = deliver_status(env.world.db, env.erp, targets)
    assert [(r.sequence, r.records) for r in held][2] == (2, 2)
    x = _by(_read(out, "expense_status", 2)[2], "expense_id")
    assert x["X1"]["status"] == "posted" and x["X1"]["expense_version"] == "2"
    assert x["X1"]["posted_version"] == "1"
    assert x["X1"]["hold_reason"] == "Billing hold on project P1: Disputed scope"
    assert x["X2"]["status"] == "posted" and x["X2"]["hold_reason"].startswith("Billing hold")

    # Released: the correction and the reversal post; the next delivery says so.
    env.hold_p1(hold=False)
    env.window(billing_hold_time_and_expenses="hold")
    released = deliver_status(env.world.db, env.erp, targets)
    assert [(r.sequence, r.records) for r in released][2] == (3, 2)
    x = _by(_read(out, "expense_status", 3)[2], "expense_id")
    assert x["X1"]["status"] == "posted" and x["X1"]["erp_document"] == "exp:X1:v2:post"
    assert x["X1"]["amount"] == "99.50" and x["X1"]["hold_reason"] is None
    assert x["X2"]["status"] == "reversed" and x["X2"]["reversed_by"] == "exp:X2:v1:rev"
    assert x["X2"]["erp_document"] is None


def test_status_over_the_real_sshd(duck_env: PostingEnv, sftp_server) -> None:
    env = duck_env
    _world(env)
    kw = sftp_server.source_kwargs()
    for source_only in ("inbox", "stable_seconds"):
        kw.pop(source_only)
    folder = SftpFolder(folder="feedback", **kw)
    try:
        results = deliver_status(env.db, env.erp, Targets(folder=folder))
    finally:
        folder.close()
    remote = sftp_server.root / "feedback"
    assert {p.name for p in remote.iterdir()} == {
        f"{r.feed}_00000001.{x}"
        for r in results
        if r.sequence  # no expenses: no expense_status delivery
        for x in ("csv", "jsonl", "manifest.json")
    }
    manifest, _, entries = _read(remote, "time_entry_status", 1)
    assert manifest["records"] == 3 and _by(entries, "entry_id")["TE1"]["status"] == "invoiced"
    # A wrong host key is refused before anything is written.
    sftp_server.restart_with_new_host_key()
    env.erp.record_payment("PAY1", "inv:I1:v1:post", date(2026, 12, 3), D("1500.00"))
    stranger = SftpFolder(folder="feedback", **kw)
    with pytest.raises(Exception, match="(?i)host key"):
        deliver_status(env.db, env.erp, Targets(folder=stranger))
    stranger.close()
    pending = env.db.query_df("SELECT status FROM outbound_deliveries WHERE sequence = 2")
    assert pending["status"].tolist() == ["prepared"]  # re-sent by the next run


def test_webhook_fails_recovers_and_dead_letters_replay(posting_env: PostingEnv) -> None:
    env = posting_env
    _world(env)
    receiver = Receiver(fail_next=2).start()
    try:
        hook = Webhook(receiver.url, attempts=3, base_delay=0, sleep=lambda s: None)
        targets = Targets(folder=LocalFolder(env.tmp_path / "fb"), webhook=hook)
        first = deliver_status(env.db, env.erp, targets)
        # Two 503s, then accepted: both feeds' pushes, each accepted once (no expenses: no
        # expense_status delivery, nothing pushed).
        assert [r.webhook for r in first] == ["accepted", "accepted", None]
        assert [s for _, s in receiver.requests] == [503, 503, 200, 200]
        assert len(receiver.accepted) == 2
        body = receiver.accepted["stagepost:time_entry_status:1:" + first[0].content_hash]
        assert {json.loads(x)["entry_id"] for x in body.decode().splitlines()} == {
            "TE1",
            "TE2",
            "TE3",
        }

        # The endpoint stays down: the push becomes a dead letter, the files are delivered.
        receiver.fail_next = 10**6
        env.erp.record_payment("PAY1", "inv:I1:v1:post", date(2026, 12, 3), D("1500.00"))
        down = deliver_status(env.db, env.erp, targets)
        assert down[1].webhook == "dead_letter" and down[1].sequence == 2
        dead = env.db.query_df("SELECT * FROM outbound_dead_letters")
        assert dead[["feed", "sequence", "status", "attempts"]].values.tolist() == [
            ["invoice_status", 2, "dead", 3]
        ]
        assert "503" in dead.loc[0, "last_error"]
        assert replay_dead_letters(env.db, hook) == {"replayed": 0, "still_dead": 1}

        # It recovers: the replay delivers it once, a second replay has nothing to do.
        receiver.fail_next = 0
        assert replay_dead_letters(env.db, hook) == {"replayed": 1, "still_dead": 0}
        assert replay_dead_letters(env.db, hook) == {"replayed": 0, "still_dead": 0}
        key = "stagepost:invoice_status:2:" + down[1].content_hash
        assert json.loads(receiver.accepted[key])["status"] == "paid"
        # Exactly one accepted delivery per change.
        assert len(receiver.accepted) == 3
        assert sum(1 for k, s in receiver.requests if s == 200) == 3
    finally:
        receiver.stop()


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from connectors.erp.sql_interface import SqlInterfaceTarget
    from connectors.outbound.folders import LocalFolder
    from connectors.outbound.webhook import Webhook
    from staging_models.db import StagingDB
    from staging_models.outbound import Targets
    from staging_models.status_feedback import deliver_status

    staging, erp_url, folder, url, step, feed = sys.argv[1:7]
    db = StagingDB(staging)
    db.init_schema()
    seen = []

    def hook(name):
        seen.append(name)
        if name == step and len([s for s in seen if s == step]) == int(feed):
            os.kill(os.getpid(), signal.SIGKILL)

    targets = Targets(folder=LocalFolder(folder), webhook=Webhook(url, attempts=1))
    deliver_status(db, SqlInterfaceTarget(erp_url), targets, hooks=hook)
    """
)


@pytest.mark.parametrize(("step", "nth"), [("files_written", 1), ("webhook_pushed", 2)])
def test_a_delivery_killed_with_sigkill_is_rerun_once(
    posting_env: PostingEnv, step: str, nth: int
) -> None:
    """Killed after its files were written (no push yet), or after the receiver accepted the
    second feed's push (ledger not moved): the re-run sends the same delivery under the same
    sequence and idempotency key; the receiver accepts each change once."""
    env = posting_env
    _world(env)
    out = env.tmp_path / "fb"
    receiver = Receiver().start()
    try:
        env.db.engine.dispose()
        env.erp.close()
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD,
                env.db.url,
                env.erp_url,
                str(out),
                receiver.url,
                step,
                str(nth),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        before = env.db.query_df(
            "SELECT feed, sequence, status FROM outbound_deliveries ORDER BY feed"
        )
        assert "prepared" in set(before["status"])
        accepted_before = dict(receiver.accepted)

        hook = Webhook(receiver.url, attempts=2, base_delay=0, sleep=lambda s: None)
        rerun = deliver_status(env.db, env.erp, Targets(folder=LocalFolder(out), webhook=hook))
        # The killed run's deliveries are finished under their numbers; nothing is doubled.
        assert [r.sequence for r in rerun if r.sequence] == [1] * len(
            [r for r in rerun if r.sequence]
        )
        assert any(r.resumed for r in rerun)
        after = env.db.query_df("SELECT feed, sequence, status FROM outbound_deliveries")
        assert set(after["status"]) == {"delivered"} and len(after) == 2
        assert len(receiver.accepted) == 2  # one per feed's delivery, however often pushed
        for key, body in accepted_before.items():
            assert receiver.accepted[key] == body
        ledger = env.db.query_df("SELECT feed, COUNT(*) AS n FROM outbound_ledger GROUP BY feed")
        assert dict(zip(ledger["feed"], ledger["n"], strict=True)) == {
            "time_entry_status": 3,
            "invoice_status": 1,
        }
        assert not [p for p in out.iterdir() if p.name.endswith(".part")]
        assert deliver_status(env.db, env.erp, Targets(folder=LocalFolder(out)))[0].sequence is None
    finally:
        receiver.stop()


def test_any_feed_of_rows_is_delivered_changed_only(duck_env: PostingEnv) -> None:
    """The generic API other flows use (`deliver_rows`): a named feed, a key, a frame."""
    db = duck_env.db
    out = duck_env.tmp_path / "actuals"
    targets = Targets(folder=LocalFolder(out))
    rows = pd.DataFrame(
        {"project_code": ["P1", "P2"], "month": ["2026-11", "2026-11"], "hours": ["7.5", "3"]}
    )
    key = ("project_code", "month")
    assert deliver_rows(db, "actuals", rows, key, targets).records == 2
    rows.loc[1, "hours"] = "4"
    second = deliver_rows(db, "actuals", rows, key, targets)
    assert (second.sequence, second.records) == (2, 1)
    assert json.loads((out / "actuals_00000002.jsonl").read_text())["project_code"] == "P2"
    assert deliver_rows(db, "actuals", rows, key, targets).sequence is None
    assert deliver_rows(db, "actuals", rows, key, targets, full_resend=True).records == 2
