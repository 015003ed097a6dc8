"""Tests of the sample PSA export generator.

The central check is an independent, vectorised mini-validator written here
from the format description: on a clean sample it must find nothing, and on
a sample with bad rows it must find exactly the generator's ground truth.
"""

from __future__ import annotations

import csv
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from connectors.sample_data import (
    BAD_KINDS,
    COLUMNS,
    DATASETS,
    XLSX_MAX_ROWS,
    SampleData,
    generate_frames,
    main,
    write_sample,
)

AS_OF = date(2026, 11, 22)  # window 2026-08-24..2026-11-21 spans the end of DST
DECIMAL = re.compile(r"^-?\d+\.\d{2}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture(scope="module")
def clean() -> SampleData:
    return generate_frames(6000, seed=11, as_of=AS_OF)


@pytest.fixture(scope="module")
def dirty() -> SampleData:
    return generate_frames(6000, seed=11, as_of=AS_OF, bad_share=0.05, corrections_share=0.03)


def find_violations(sd: SampleData) -> pd.DataFrame:
    """(row_index, kind) for every rule a time entry breaks, computed from the frames only."""
    te = sd.time_entries
    emp = sd.employees.set_index("employee_id")
    proj = sd.projects.set_index("project_code")
    tasks = sd.project_tasks.assign(key=lambda d: d.project_code + "|" + d.task_code)
    tasks = tasks.set_index("key")

    hours = pd.to_numeric(te.hours, errors="coerce")
    wd = pd.to_datetime(te.work_date, format="%Y-%m-%d", errors="coerce")
    p = proj.reindex(te.project_code).reset_index(drop=True)
    e = emp.reindex(te.employee_id).reset_index(drop=True)
    known_p = te.project_code.isin(proj.index)
    known_e = te.employee_id.isin(emp.index)
    task_key = te.project_code + "|" + te.task_code
    task_known = task_key.isin(tasks.index)
    task_billable = tasks.billable.reindex(task_key).reset_index(drop=True)
    start = pd.to_datetime(p.start_date)
    end = pd.to_datetime(p.end_date)
    approved = te.approval_status == "approved"
    approved_on = pd.to_datetime(te.approved_at.str[:10], format="%Y-%m-%d", errors="coerce")

    day_sum = (
        pd.DataFrame({"emp": te.employee_id, "wd": wd, "h": hours.where(approved)})
        .groupby(["emp", "wd"])["h"]
        .transform("sum")
    )
    rules = {
        "bad_hours": hours.isna(),
        "negative_hours": hours < 0,
        "zero_hours": hours == 0,
        "absurd_hours": hours > 24,
        "over_24_per_day": approved & (day_sum > 24),
        "bad_date": wd.isna(),
        "future_date": wd > pd.Timestamp(sd.as_of),
        "missing_entry_id": te.entry_id.isna(),
        "duplicate_conflict": te.entry_id.notna() & te.entry_id.duplicated(keep=False),
        "unknown_employee": ~known_e,
        "unknown_project": ~known_p,
        "closed_project": known_p & ((p.status != "open") | (wd < start) | (wd > end)),
        "task_not_in_project": known_p & ~task_known,
        "currency_mismatch": known_p & (te.currency != p.currency),
        "billable_on_non_billable_task": (te.billable == "true")
        & task_known
        & (task_billable == "false"),
        "approved_before_work": approved & (approved_on <= wd),
        "missing_rate": _missing_rate(sd, wd, e.role),
        # no bad kind exists for these: no row may break them
        "entity_mismatch": known_p & known_e & (e.legal_entity != p.legal_entity),
        "odd_hours": ((hours > 10) & (hours <= 24)) | (hours.notna() & ((hours * 4) % 1 != 0)),
        "approval_fields": (approved != te.approved_at.notna())
        | (approved != te.approved_by.notna()),
        "deleted_in_main_file": te.deleted != "false",
    }
    found = [
        pd.DataFrame({"row_index": np.flatnonzero(mask.to_numpy(bool)), "kind": kind})
        for kind, mask in rules.items()
    ]
    return pd.concat(found, ignore_index=True)


def resolve_rates(sd: SampleData, wd: pd.Series, role: pd.Series) -> pd.Series:
    """The rate card rate for each entry (None if none covers it).

    Valid on the work date; a card for the employee beats one for the role
    beats one for anyone.
    """
    te = sd.time_entries
    rows = pd.DataFrame(
        {
            "row": np.arange(len(te)),
            "project_code": te.project_code.to_numpy(),
            "emp": te.employee_id.to_numpy(),
            "role": role.to_numpy(),
            "wd": wd.to_numpy(),
        }
    )
    m = rows.merge(sd.rate_cards.rename(columns={"role": "card_role"}), on="project_code")
    valid_to = pd.to_datetime(m.valid_to).fillna(pd.Timestamp.max)
    in_time = (pd.to_datetime(m.valid_from) <= m.wd) & (m.wd <= valid_to)
    anyone = m.employee_id.isna() & m.card_role.isna()
    by_role = m.employee_id.isna() & (m.card_role == m.role)
    m["rank"] = np.select([m.employee_id == m.emp, by_role, anyone], [0, 1, 2], 9)
    best = m[in_time & (m["rank"] < 9)].sort_values(["row", "rank"]).drop_duplicates("row")
    out = pd.Series([None] * len(te), dtype=object)
    out.iloc[best.row.to_numpy()] = best.bill_rate.to_numpy()
    return out


def _missing_rate(sd: SampleData, wd: pd.Series, role: pd.Series) -> pd.Series:
    """Billable rows with a blank bill_rate that no rate card row covers."""
    te = sd.time_entries
    rate = resolve_rates(sd, wd, role)
    return pd.Series(
        ((te.billable == "true") & te.bill_rate.isna()).to_numpy() & rate.isna().to_numpy()
    )


def _pairs(df: pd.DataFrame) -> set[tuple[int, str]]:
    return set(zip(df.row_index.astype(int), df.kind, strict=True))


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_does_not() -> None:
    opts = {"as_of": AS_OF, "bad_share": 0.02, "corrections_share": 0.02}
    a = generate_frames(1500, seed=5, **opts)
    b = generate_frames(1500, seed=5, **opts)
    c = generate_frames(1500, seed=6, **opts)
    for name in (*DATASETS, "corrections", "bad_rows"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert not a.time_entries.equals(c.time_entries)
    assert not a.employees.equals(c.employees)


def test_bad_rows_leave_master_data_and_other_rows_untouched(clean, dirty) -> None:
    for name in ("employees", "projects", "project_tasks", "rate_cards"):
        pd.testing.assert_frame_equal(getattr(clean, name), getattr(dirty, name))
    keep = ~dirty.time_entries.index.isin(dirty.bad_rows.row_index)
    pd.testing.assert_frame_equal(clean.time_entries[keep], dirty.time_entries[keep])


# --- shape and formatting ----------------------------------------------------------------------


def test_columns_and_value_formats(dirty) -> None:
    for name in DATASETS:
        assert tuple(getattr(dirty, name).columns) == COLUMNS[name]
    assert tuple(dirty.corrections.columns) == COLUMNS["time_entries"]
    bad_hours = dirty.bad_rows.row_index[dirty.bad_rows.kind == "bad_hours"]
    bad_dates = dirty.bad_rows.row_index[dirty.bad_rows.kind == "bad_date"]
    te = dirty.time_entries
    checks = [
        (te.drop(index=bad_hours).hours, DECIMAL),
        (te.bill_rate, DECIMAL),
        (dirty.employees.cost_rate, DECIMAL),
        (dirty.rate_cards.bill_rate, DECIMAL),
        (dirty.invoices.quantity, DECIMAL),
        (dirty.invoices.unit_price, DECIMAL),
        (dirty.invoices.amount, DECIMAL),
        (te.drop(index=bad_dates).work_date, DATE),
        (dirty.projects.start_date, DATE),
        (dirty.projects.end_date, DATE),
        (dirty.rate_cards.valid_from, DATE),
        (dirty.rate_cards.valid_to, DATE),
        (dirty.invoices.issue_date, DATE),
        (te.approved_at, TIMESTAMP),
        (te.updated_at, TIMESTAMP),
        (dirty.projects.updated_at, TIMESTAMP),
        (dirty.invoices.updated_at, TIMESTAMP),
        (te.entry_id, re.compile(r"^TE\d{9}$")),
    ]
    for series, pattern in checks:
        values = series.dropna()
        assert len(values) > 0
        assert values.map(lambda v, p=pattern: bool(p.match(v))).all(), series.name
    for series in (te.billable, te.deleted, dirty.employees.active, dirty.project_tasks.billable):
        assert set(series) <= {"true", "false"}
    # every cell is a string or None: what a reader gets from the file
    for name in (*DATASETS, "corrections"):
        values = getattr(dirty, name).to_numpy().ravel()
        assert all(v is None or isinstance(v, str) for v in values), name
    assert set(dirty.bad_rows.columns) == {"row_index", "entry_id", "kind"}


def test_clean_entries_look_like_a_psa_export(clean) -> None:
    te = clean.time_entries
    hours = te.hours.map(Decimal)
    assert hours.min() >= Decimal("0.25") and hours.max() <= Decimal("10.00")
    assert (hours * 4 % 1 == 0).all()
    wd = pd.to_datetime(te.work_date)
    assert wd.min() >= pd.Timestamp("2026-08-24") and wd.max() <= pd.Timestamp("2026-11-21")
    assert (wd.dt.dayofweek != 6).all()  # Sundays are reserved for injected bad rows
    assert te.entry_id.is_unique and te.entry_id.is_monotonic_increasing
    assert 0.80 <= (te.approval_status == "approved").mean() <= 0.90
    assert set(te.approval_status) == {"draft", "submitted", "approved", "rejected"}
    assert 0.2 < te.bill_rate.isna().mean() < 0.7  # some filled, some from the rate card
    assert set(clean.employees.legal_entity) == {"US01", "DE01", "GB01"}
    assert set(clean.employees.role) == {"consultant", "senior", "manager", "partner"}
    assert {"open", "closed", "on_hold"} == set(clean.projects.status)
    assert "non_billable" in set(clean.projects.billing_method)
    assert (clean.project_tasks.billable == "false").any()
    # approvals happen on a later day than the work
    approved = te[te.approval_status == "approved"]
    assert (approved.approved_at.str[:10] > approved.work_date).all()


def test_timestamps_follow_daylight_saving(clean) -> None:
    te = clean.time_entries.merge(clean.employees[["employee_id", "legal_entity"]])
    us = te[(te.legal_entity == "US01") & te.approved_at.notna()]
    day = us.approved_at.str[:10]
    assert (us.approved_at[day <= "2026-10-31"].str[-6:] == "-04:00").all()
    assert (us.approved_at[day >= "2026-11-02"].str[-6:] == "-05:00").all()
    gb = te[(te.legal_entity == "GB01") & te.approved_at.notna()]
    assert (gb.approved_at[gb.approved_at.str[:10] >= "2026-10-26"].str.endswith("Z")).all()


# --- consistency of clean data -----------------------------------------------------------


def test_clean_sample_breaks_no_rule(clean) -> None:
    found = find_violations(clean)
    assert found.empty, found.groupby("kind").size().to_dict()
    assert clean.bad_rows.empty


def test_filled_bill_rates_equal_the_rate_card(clean) -> None:
    te = clean.time_entries
    role = clean.employees.set_index("employee_id").role.reindex(te.employee_id)
    rate = resolve_rates(clean, pd.to_datetime(te.work_date), role.reset_index(drop=True))
    method = clean.projects.set_index("project_code").billing_method.reindex(te.project_code)
    tm = (method == "time_and_materials").to_numpy() & (te.billable == "true").to_numpy()
    assert rate[tm].notna().all()  # every billable T&M entry resolves, filled or not
    filled = tm & te.bill_rate.notna().to_numpy()
    assert filled.sum() > 100 and (rate[filled] == te.bill_rate[filled]).all()
    # projects without a rate card carry the rate on the entry
    no_card = ~method.isin(["time_and_materials"]).to_numpy() & (te.billable == "true").to_numpy()
    assert no_card.any() and te.bill_rate[no_card].notna().all() and rate[no_card].isna().all()
    # employee-specific cards exist and do win over role cards
    emp_cards = clean.rate_cards[clean.rate_cards.employee_id.notna()]
    assert len(emp_cards) > 0


def test_rate_card_periods_never_overlap(clean) -> None:
    cards = clean.rate_cards.copy()
    cards["from"] = pd.to_datetime(cards.valid_from)
    cards["to"] = pd.to_datetime(cards.valid_to).fillna(pd.Timestamp.max)
    key = [cards.project_code, cards.employee_id.fillna("*"), cards.role.fillna("*")]
    cards = cards.sort_values("from")
    prev_to = cards.groupby([k.loc[cards.index] for k in key])["to"].shift()
    assert (prev_to.isna() | (prev_to < cards["from"])).all()
    assert (cards["from"] <= cards["to"]).all()
    assert cards.groupby(key).size().max() >= 2  # some cards do change over time


# --- bad rows ground truth -------------------------------------------------------------------


def test_validator_finds_exactly_the_ground_truth(dirty) -> None:
    truth = dirty.bad_rows
    assert set(truth.kind) == set(BAD_KINDS)
    assert _pairs(find_violations(dirty)) == _pairs(truth)


def test_ground_truth_rows_are_present(dirty) -> None:
    te, truth = dirty.time_entries, dirty.bad_rows
    assert truth.row_index.is_unique and truth.row_index.max() < len(te)
    ids = te.entry_id.iloc[truth.row_index].reset_index(drop=True)
    pd.testing.assert_series_equal(ids, truth.entry_id, check_names=False)
    share = truth.kind.ne("duplicate_conflict").sum() / len(te)
    assert 0.045 <= share <= 0.055
    over = te.iloc[truth.row_index[truth.kind == "over_24_per_day"]]
    assert (over.groupby(["employee_id", "work_date"]).size() >= 3).all()


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (["over_24_per_day"], {"over_24_per_day": 3}),
        (["negative_hours", "bad_date"], {"negative_hours": 5, "bad_date": 5}),
        (["duplicate_conflict"], {"duplicate_conflict": 20}),
    ],
)
def test_bad_kinds_subset(kinds: list[str], expected: dict[str, int]) -> None:
    share = 0.0005 if kinds == ["over_24_per_day"] else 0.005
    sd = generate_frames(2000, seed=3, as_of=AS_OF, bad_share=share, bad_kinds=kinds)
    assert sd.bad_rows.kind.value_counts().to_dict() == expected
    assert _pairs(find_violations(sd)) == _pairs(sd.bad_rows)


def test_unusable_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown bad kinds"):
        generate_frames(100, bad_share=0.1, bad_kinds=["nope"])
    with pytest.raises(ValueError, match="bad_share"):
        generate_frames(100, bad_share=0.9)
    with pytest.raises(ValueError, match="too few"):
        generate_frames(2, as_of=AS_OF, bad_share=0.5, bad_kinds=["over_24_per_day"])


def test_no_entries_still_gives_master_data() -> None:
    sd = generate_frames(0, seed=1, as_of=AS_OF)
    assert sd.time_entries.empty and tuple(sd.time_entries.columns) == COLUMNS["time_entries"]
    assert len(sd.employees) > 0 and len(sd.projects) > 0


# --- corrections -------------------------------------------------------------------------------


def test_corrections_are_later_versions_of_approved_clean_entries(dirty) -> None:
    te = dirty.time_entries.set_index("entry_id", drop=False)
    corr = dirty.corrections
    assert len(corr) == round(0.03 * len(dirty.time_entries)) and corr.entry_id.is_unique
    bad_ids = set(dirty.bad_rows.entry_id.dropna())
    assert not set(corr.entry_id) & bad_ids
    orig = te.loc[corr.entry_id].reset_index(drop=True)
    assert (orig.approval_status == "approved").all()
    new_ts = pd.to_datetime(corr.updated_at, utc=True, format="ISO8601")
    old_ts = pd.to_datetime(orig.updated_at, utc=True, format="ISO8601")
    assert (new_ts > old_ts).all()
    deleted = corr.deleted == "true"
    assert 0 < deleted.sum() < len(corr) / 4
    same = ["employee_id", "project_code", "work_date", "billable", "bill_rate", "currency"]
    pd.testing.assert_frame_equal(corr[same], orig[same])
    content = ["hours", "description", "task_code"]
    diff = corr[content].fillna("") != orig[content].fillna("")
    changed = diff.any(axis=1)
    assert changed[~deleted].all() and not changed[deleted].any()
    assert diff[~deleted].any().all()  # each kind of edit occurs
    tasks = set(zip(dirty.project_tasks.project_code, dirty.project_tasks.task_code, strict=True))
    assert all(pt in tasks for pt in zip(corr.project_code, corr.task_code, strict=True))
    step = (corr.hours.map(Decimal) - orig.hours.map(Decimal)).abs()
    assert step.max() <= Decimal("1.00")


# --- invoices ----------------------------------------------------------------------------------


def test_invoice_time_lines_trace_to_approved_entries(dirty) -> None:
    inv = dirty.invoices
    te = dirty.time_entries.set_index("entry_id")
    assert set(inv.line_kind) == {"time", "milestone", "expense", "fixed_fee", "adjustment"}
    assert {"draft", "released"} <= set(inv.status) <= {"draft", "released", "cancelled"}
    time_lines = inv[inv.line_kind == "time"]
    assert inv.entry_ids[inv.line_kind != "time"].isna().all()
    ids = time_lines.entry_ids.str.split(";").explode()
    assert ids.is_unique  # an entry is on one proposal line at most
    entries = te.loc[ids.to_numpy()]
    assert (entries.approval_status == "approved").all() and (entries.billable == "true").all()
    assert (entries.project_code.to_numpy() == time_lines.project_code[ids.index]).all()
    assert not set(ids) & set(dirty.bad_rows.entry_id.dropna())
    hours = entries.hours.map(Decimal).groupby(ids.index.to_numpy()).sum()
    assert (hours == time_lines.quantity.map(Decimal)).all()
    filled = entries.bill_rate.notna().to_numpy()
    assert (entries.bill_rate[filled].to_numpy() == time_lines.unit_price[ids.index][filled]).all()


def test_invoice_amounts_are_exact_and_consistent_with_projects(dirty) -> None:
    inv = dirty.invoices
    qty, price, amount = (inv[c].map(Decimal) for c in ("quantity", "unit_price", "amount"))
    assert (qty * price == amount).all()
    proj = dirty.projects.set_index("project_code").loc[inv.project_code]
    assert (proj.currency.to_numpy() == inv.currency).all()
    assert (proj.customer_id.to_numpy() == inv.customer_id).all()
    assert (inv.due_date > inv.issue_date).all() and (inv.issue_date <= str(AS_OF)).all()
    line_no = inv.line_no.astype(int)
    assert (
        line_no.groupby(inv.invoice_id).transform(lambda s: list(s) == list(range(1, len(s) + 1)))
    ).all()


# --- files ------------------------------------------------------------------------------------


def _as_strings(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), None)


@pytest.fixture(scope="module")
def small() -> SampleData:
    return generate_frames(400, seed=9, as_of=AS_OF, bad_share=0.05, corrections_share=0.02)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_files_hold_exactly_the_frames(tmp_path: Path, small: SampleData, fmt: str) -> None:
    truth = tmp_path / "truth.csv"
    paths = write_sample(
        tmp_path / "out", 400, fmt, "t1", seed=9, as_of=AS_OF, bad_share=0.05,
        corrections_share=0.02, truth_path=truth,
    )  # fmt: skip
    assert set(paths) == {*DATASETS, "corrections"}
    assert paths["corrections"].name == f"time_entries_t1_corrections.{fmt}"
    assert not list((tmp_path / "out").glob("*.part"))
    for key, path in paths.items():
        assert path.name.startswith("time_entries" if key == "corrections" else key)
        expected = getattr(small, key)
        got = _read(path, fmt)
        assert list(got.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(_as_strings(got), _as_strings(expected), check_dtype=False)
    got_truth = pd.read_csv(truth, dtype=str, keep_default_na=False, na_values=[""])
    assert list(got_truth.row_index.astype(int)) == list(small.bad_rows.row_index)


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        # an empty cell is unquoted, any value is quoted: keep the two apart
        return pd.DataFrame(
            [[v if v != "" else None for v in r] for r in rows[1:]], columns=rows[0]
        )
    if fmt == "parquet":
        return pq.read_table(path).to_pandas()
    ws = load_workbook(path, read_only=True).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    return pd.DataFrame(rows[1:], columns=rows[0])


def test_csv_is_utf8_with_dot_decimals(tmp_path: Path) -> None:
    paths = write_sample(tmp_path, 300, "csv", seed=4, as_of=AS_OF)
    text = paths["time_entries"].read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join(f'"{c}"' for c in COLUMNS["time_entries"])
    assert re.search(r',"\d+\.\d{2}","(true|false)",', text)
    assert "," + '"7,50"' not in text
    names = paths["employees"].read_text(encoding="utf-8")
    assert any(ch in names for ch in "äöüßéÖÜ'")


def test_xlsx_is_refused_for_large_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xlsx output is limited"):
        write_sample(tmp_path, XLSX_MAX_ROWS + 1, "xlsx", as_of=AS_OF)
    assert not any(tmp_path.iterdir())


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drop"
    code = main([
        "--out", str(out), "--entries", "500", "--seed", "2", "--format", "parquet",
        "--bad-share", "0.02", "--bad-kinds", "zero_hours,unknown_project",
        "--as-of", "2026-11-22", "--corrections-share", "0.02",
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert len(list(out.glob("*.parquet"))) == len(DATASETS) + 1
    assert "time_entries_sample.parquet" in printed and "500 rows" in printed
    assert pq.read_table(out / "time_entries_sample.parquet").num_rows == 500
    code = main(["--out", str(out), "--entries", "10", "--bad-share", "0.1", "--bad-kinds", "x"])
    assert code == 2 and "unknown bad kinds" in capsys.readouterr().err
