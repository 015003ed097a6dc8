"""The generator's bad rows, by kind, are exactly what the contracts quarantine."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from connectors.sample_data import write_sample
from connectors.sources.base import dataset_of
from staging_models.db import StagingDB
from staging_models.landing import land_file
from staging_models.validation import conservation, validate_all

KIND_TO_RULES = {
    "negative_hours": {"TE_HOURS_NOT_POSITIVE"},
    "zero_hours": {"TE_HOURS_NOT_POSITIVE"},
    "absurd_hours": {"TE_HOURS_OVER_24"},
    "over_24_per_day": {"TE_DAY_OVER_24"},
    "unknown_project": {"TE_UNKNOWN_PROJECT"},
    "closed_project": {"TE_PROJECT_CLOSED", "TE_OUTSIDE_PROJECT_DATES"},
    "task_not_in_project": {"TE_UNKNOWN_TASK"},
    "currency_mismatch": {"TE_CURRENCY_MISMATCH"},
    "missing_rate": {"TE_RATE_MISSING"},
    "future_date": {"TE_FUTURE_DATE"},
    "approved_before_work": {"TE_APPROVED_BEFORE_WORK"},
    "bad_date": {"TE_WORK_DATE_FORMAT"},
    "bad_hours": {"TE_HOURS_FORMAT"},
    "unknown_employee": {"TE_UNKNOWN_EMPLOYEE"},
    "billable_on_non_billable_task": {"TE_BILLABLE_NOT_ALLOWED"},
    "duplicate_conflict": {"TE_DUPLICATE_CONFLICT"},
    "missing_entry_id": {"TE_KEY_MISSING"},
}


def test_every_generated_bad_row_is_caught_by_its_rule(duck_db: StagingDB, tmp_path: Path) -> None:
    as_of = date(2026, 11, 20)
    truth_path = tmp_path / "truth.csv"
    files = write_sample(
        tmp_path / "inbox", 4000, seed=11, as_of=as_of, bad_share=0.05, truth_path=truth_path
    )
    for f in sorted(files.values()):
        land_file(duck_db, f, dataset_of(f.name))
    validate_all(duck_db, now=datetime(2026, 11, 20, 18, 0, tzinfo=UTC))
    import pandas as pd

    truth = pd.read_csv(truth_path, dtype=str, keep_default_na=False)
    assert set(truth["kind"]) == set(KIND_TO_RULES), "every kind is exercised"
    # Join the ground truth to what staging decided, through the file's row number.
    got = duck_db.query_df(
        """SELECT l.row_no - 2 AS row_index, s.state, q.rule_codes
           FROM land_time_entries l
           JOIN loads ld ON ld.load_id = l.load_id AND ld.file_name = 'time_entries_sample.csv'
           JOIN stg_time_entries s ON s.row_key = l.row_key AND s.is_current
           LEFT JOIN quarantine q ON q.dataset = 'time_entries' AND q.row_key = s.row_key
                AND q.version = s.version"""
    ).drop_duplicates("row_index")
    got["row_index"] = got["row_index"].astype(int).astype(str)
    merged = truth.merge(got, on="row_index", how="left", validate="many_to_one")
    problems = []
    for r in merged.itertuples(index=False):
        codes = set((r.rule_codes or "").split(",")) - {""}
        if r.state == "not_postable":
            continue  # a bad row the PSA never approved is not postable, not quarantined
        if not (codes & KIND_TO_RULES[r.kind]):
            problems.append((r.row_index, r.kind, r.state, sorted(codes)))
    assert not problems, problems[:10]
    caught = merged[merged["state"] == "quarantined"]
    assert len(caught) >= 0.8 * len(merged), "most bad rows are approved ones"
    # No clean row of the main file is quarantined.
    bad_idx = set(truth["row_index"])
    clean_quarantined = got[(got["state"] == "quarantined") & ~got["row_index"].isin(bad_idx)]
    assert clean_quarantined.empty, clean_quarantined.head()
    assert conservation(duck_db)["ok"].all()
