"""The bad-input catalogue: each case names the rule that must quarantine it (or the outcome),
and every test ends with conservation: every row read is accounted for."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from staging_models.db import StagingDB
from staging_models.validation import conservation, ignore_quarantined
from tests.support.staging_helpers import World, entry

# (case id, entry overrides, rule codes that must be among the row's quarantine codes)
ENTRY_CASES: list[tuple[str, dict[str, str], set[str]]] = [
    ("negative_hours", dict(hours="-1.00"), {"TE_HOURS_NOT_POSITIVE"}),
    ("zero_hours", dict(hours="0"), {"TE_HOURS_NOT_POSITIVE"}),
    ("absurd_hours", dict(hours="25.00"), {"TE_HOURS_OVER_24"}),
    ("hours_text", dict(hours="abc"), {"TE_HOURS_FORMAT"}),
    ("hours_decimal_comma", dict(hours="7,5"), {"TE_HOURS_FORMAT"}),
    ("hours_too_precise", dict(hours="1.23456"), {"TE_HOURS_FORMAT"}),
    ("hours_scientific", dict(hours="1e1"), {"TE_HOURS_FORMAT"}),
    ("hours_missing", dict(hours=""), {"TE_HOURS_MISSING"}),
    ("date_us_format", dict(work_date="11/02/2026"), {"TE_WORK_DATE_FORMAT"}),
    ("date_impossible", dict(work_date="2026-02-30"), {"TE_WORK_DATE_FORMAT"}),
    ("date_missing", dict(work_date=""), {"TE_WORK_DATE_MISSING"}),
    (
        "future_date",
        dict(work_date="2026-11-25", approved_at="2026-11-26T09:00:00Z"),
        {"TE_FUTURE_DATE"},
    ),
    ("approved_before_work", dict(approved_at="2026-10-30T09:00:00Z"), {"TE_APPROVED_BEFORE_WORK"}),
    (
        # 04:30 UTC on the work day, but 23:30 the evening before where it was approved.
        "approved_the_evening_before_in_new_york",
        dict(approved_at="2026-11-01T23:30:00-05:00"),
        {"TE_APPROVED_BEFORE_WORK"},
    ),
    (
        "approved_at_without_offset",
        dict(approved_at="2026-11-03 09:00:00"),
        {"TE_APPROVED_AT_FORMAT"},
    ),
    ("approved_at_missing", dict(approved_at=""), {"TE_APPROVED_AT_MISSING"}),
    ("status_unknown", dict(approval_status="approvd"), {"TE_APPROVAL_STATUS_UNKNOWN"}),
    ("unknown_employee", dict(employee_id="E404"), {"TE_UNKNOWN_EMPLOYEE"}),
    ("unknown_project", dict(project_code="P404"), {"TE_UNKNOWN_PROJECT"}),
    ("closed_project", dict(project_code="P2"), {"TE_PROJECT_CLOSED"}),
    ("on_hold_project", dict(project_code="P4"), {"TE_PROJECT_ON_HOLD"}),
    (
        "before_project_start",
        dict(work_date="2025-12-31", approved_at="2026-01-02T00:00:00Z"),
        {"TE_OUTSIDE_PROJECT_DATES"},
    ),
    ("legal_entity_mismatch", dict(employee_id="E2"), {"TE_LEGAL_ENTITY_MISMATCH"}),
    ("task_not_in_project", dict(task_code="T7"), {"TE_UNKNOWN_TASK"}),
    ("currency_mismatch", dict(currency="EUR"), {"TE_CURRENCY_MISMATCH"}),
    ("currency_not_iso", dict(currency="USX"), {"TE_CURRENCY_INVALID", "TE_CURRENCY_MISMATCH"}),
    ("currency_lowercase", dict(currency="usd"), {"TE_CURRENCY_INVALID"}),
    (
        "missing_rate",
        dict(employee_id="E2", project_code="P5", currency="EUR", bill_rate=""),
        {"TE_RATE_MISSING"},
    ),
    ("negative_rate", dict(bill_rate="-150.00"), {"TE_RATE_NEGATIVE"}),
    ("rate_text", dict(bill_rate="150 USD"), {"TE_BILL_RATE_FORMAT"}),
    ("billable_on_non_billable_project", dict(project_code="P3"), {"TE_BILLABLE_NOT_ALLOWED"}),
    ("billable_on_non_billable_task", dict(task_code="T9"), {"TE_BILLABLE_NOT_ALLOWED"}),
    ("billable_not_boolean", dict(billable="maybe"), {"TE_BILLABLE_FORMAT"}),
    ("missing_entry_id", dict(entry_id=""), {"TE_KEY_MISSING"}),
    ("missing_project", dict(project_code=""), {"TE_PROJECT_CODE_MISSING"}),
]


def _assert_conserved(db: StagingDB) -> None:
    df = conservation(db)
    assert df["ok"].all(), df.to_dict("records")


@pytest.fixture
def world(duck_db: StagingDB, tmp_path: Path) -> World:
    return World(duck_db, tmp_path).master()


@pytest.mark.parametrize(
    "overrides,codes", [c[1:] for c in ENTRY_CASES], ids=[c[0] for c in ENTRY_CASES]
)
def test_bad_entry_is_quarantined_with_its_rule(world: World, overrides, codes) -> None:
    bad = entry(**{"entry_id": "BAD", **overrides})
    world.land("time_entries", [entry(entry_id="GOOD"), bad])
    world.validate()
    key = (
        "BAD"
        if bad["entry_id"]
        else world.db.scalar("SELECT row_key FROM stg_time_entries WHERE key_missing")
    )
    got = world.codes(key)
    assert codes <= got, f"expected {codes}, quarantine has {got}"
    assert world.state(key) == "quarantined"
    assert world.state("GOOD") == "valid"
    messages = world.db.scalar("SELECT messages FROM quarantine WHERE row_key = :k", {"k": key})
    assert messages and all(ch not in messages for ch in ("None", "NULL"))
    _assert_conserved(world.db)


def test_day_over_24_hours_quarantines_every_entry_of_that_day(world: World) -> None:
    world.land(
        "time_entries", [entry(entry_id="A", hours="14.00"), entry(entry_id="B", hours="14.00")]
    )
    world.validate()
    assert world.codes("A") == world.codes("B") == {"TE_DAY_OVER_24"}
    _assert_conserved(world.db)


def test_work_date_near_midnight_is_judged_in_the_latest_time_zone(world: World) -> None:
    # NOW is 2026-11-20 12:00 UTC: it is already 11-21 at UTC+14, so 11-21 is not future.
    world.land(
        "time_entries",
        [
            entry(
                entry_id="TODAY_SOMEWHERE",
                work_date="2026-11-21",
                approved_at="2026-11-21T01:00:00+14:00",  # 11:00 UTC on 11-20
            ),
            # 19:00 UTC on 11-01, but 08:00 on 11-02 in Auckland where it was approved: fine.
            entry(entry_id="AUCKLAND", approved_at="2026-11-02T08:00:00+13:00"),
        ],
    )
    world.validate()
    assert world.state("TODAY_SOMEWHERE") == "valid"
    assert world.state("AUCKLAND") == "valid"


def test_approved_before_work_message_says_which_date_it_compared(world: World) -> None:
    """The rule compares the date written in approved_at, at the offset written with it: the
    message says exactly that (it used to call any time "the approver's local time")."""
    world.land("time_entries", [entry(entry_id="NY", approved_at="2026-11-01T23:30:00-05:00")])
    world.validate()
    assert world.db.scalar("SELECT messages FROM quarantine WHERE row_key = 'NY'") == (
        "approved on 2026-11-01, the date of 2026-11-01T23:30:00-05:00 at the UTC offset "
        "written with it, before the work date 2026-11-02"
    )


def test_rate_resolution_prefers_employee_then_role_card_by_date(world: World) -> None:
    world.land(
        "time_entries",
        [
            entry(
                entry_id="MARCH",
                work_date="2026-03-02",
                bill_rate="",
                approved_at="2026-03-03T00:00:00Z",
            ),
            entry(
                entry_id="NOV5",
                work_date="2026-11-05",
                bill_rate="",
                approved_at="2026-11-17T00:00:00Z",
            ),
            entry(
                entry_id="NOV16",
                work_date="2026-11-16",
                bill_rate="",
                approved_at="2026-11-17T00:00:00Z",
            ),
            entry(entry_id="OWN", bill_rate="99.50"),
        ],
    )
    world.validate()
    got = world.db.query_df("SELECT entry_id, bill_rate, rate_source FROM validated_time_entries")
    rates = {r.entry_id: (r.bill_rate, r.rate_source) for r in got.itertuples()}
    assert rates == {
        "MARCH": (Decimal("200"), "rate_card"),
        "NOV5": (Decimal("250"), "rate_card"),
        "NOV16": (Decimal("210"), "rate_card"),
        "OWN": (Decimal("99.5"), "entry"),
    }


def test_amount_is_rounded_once_half_away_from_zero(world: World) -> None:
    world.land(
        "time_entries",
        [
            entry(entry_id="R1", hours="6.67", bill_rate="150.00"),  # 1000.50
            entry(
                entry_id="R2", hours="0.125", bill_rate="100.04", work_date="2026-11-03"
            ),  # 12.505
            entry(
                entry_id="R3", hours="0.3333", bill_rate="100.00", work_date="2026-10-30"
            ),  # 33.33
            entry(entry_id="NB", project_code="P3", billable="false", work_date="2026-10-29"),
        ],
    )
    world.validate()
    got = dict(world.db.query_df("SELECT entry_id, amount FROM validated_time_entries").values)
    assert got == {
        "R1": Decimal("1000.50"),
        "R2": Decimal("12.51"),
        "R3": Decimal("33.33"),
        "NB": Decimal("0"),
    }


def test_duplicate_id_with_different_content_in_one_file(world: World) -> None:
    world.land(
        "time_entries", [entry(entry_id="D", hours="1.00"), entry(entry_id="D", hours="2.00")]
    )
    world.land("time_entries", [entry(entry_id="SAME"), entry(entry_id="SAME")])
    world.validate()
    assert "TE_DUPLICATE_CONFLICT" in world.codes("D")
    assert world.state("SAME") == "valid"
    _assert_conserved(world.db)


def test_drafts_and_deletions_are_not_postable_not_quarantined(world: World) -> None:
    world.land(
        "time_entries",
        [
            entry(entry_id="DRAFT", approval_status="draft", approved_at=""),
            entry(entry_id="DEL", deleted="true"),
        ],
    )
    world.validate()
    assert world.state("DRAFT") == world.state("DEL") == "not_postable"
    assert world.db.scalar("SELECT COUNT(*) FROM quarantine") == 0
    _assert_conserved(world.db)


def test_edit_after_approval_supersedes_the_validated_version(world: World) -> None:
    world.land("time_entries", [entry(entry_id="X")])
    world.validate()
    world.land(
        "time_entries", [entry(entry_id="X", hours="5.00", updated_at="2026-11-10T00:00:00Z")]
    )
    world.validate()
    states = world.db.query_df(
        "SELECT version, state FROM stg_time_entries WHERE row_key = 'X' ORDER BY version"
    )
    assert states["state"].tolist() == ["superseded", "valid"]
    v = world.db.query_df("SELECT version, hours FROM validated_time_entries")
    assert v.values.tolist() == [[2, Decimal("5")]]
    _assert_conserved(world.db)


def test_fixed_version_closes_the_quarantine_of_the_bad_one(world: World) -> None:
    world.land("time_entries", [entry(entry_id="X", hours="-2.00")])
    world.validate()
    world.land(
        "time_entries", [entry(entry_id="X", hours="2.00", updated_at="2026-11-10T00:00:00Z")]
    )
    world.validate()
    q = world.db.query_df("SELECT version, status FROM quarantine")
    assert q.values.tolist() == [[1, "superseded"]]
    assert world.state("X") == "valid"
    _assert_conserved(world.db)


def test_reopened_project_releases_its_quarantined_entries(world: World) -> None:
    world.land("time_entries", [entry(entry_id=f"C{i}", project_code="P2") for i in range(3)])
    world.validate()
    assert {world.state(f"C{i}") for i in range(3)} == {"quarantined"}
    reopened = [
        dict(p, status="open", updated_at="2026-11-15T00:00:00Z")
        if p["project_code"] == "P2"
        else p
        for p in World.__init__.__globals__["PROJECTS"]
    ]
    world.land("projects", reopened)
    world.validate()
    assert {world.state(f"C{i}") for i in range(3)} == {"valid"}
    statuses = world.db.query_df("SELECT status FROM quarantine")["status"].tolist()
    assert statuses == ["released"] * 3
    events = world.db.query_df("SELECT event FROM quarantine_events ORDER BY event_at, event")[
        "event"
    ]
    assert events.value_counts().to_dict() == {"quarantined": 3, "released": 3}
    assert world.db.scalar("SELECT COUNT(*) FROM validated_time_entries") == 3
    _assert_conserved(world.db)


def test_added_rate_card_releases_entries_missing_a_rate(world: World) -> None:
    bad = entry(entry_id="NR", employee_id="E2", project_code="P5", currency="EUR", bill_rate="")
    world.land("time_entries", [bad])
    world.validate()
    assert world.codes("NR") == {"TE_RATE_MISSING"}
    world.land(
        "rate_cards",
        [
            dict(
                project_code="P5",
                employee_id="",
                role="consultant",
                bill_rate="120.00",
                currency="EUR",
                valid_from="2026-01-01",
                valid_to="",
            )
        ],
    )
    world.validate()
    assert world.state("NR") == "valid"
    assert world.db.scalar(
        "SELECT amount FROM validated_time_entries WHERE entry_id = 'NR'"
    ) == Decimal("900.00")


def test_ignored_rows_stay_out_with_reason_and_audit(world: World) -> None:
    world.land(
        "time_entries",
        [entry(entry_id="IGN", project_code="P404"), entry(entry_id="KEEP", hours="-1")],
    )
    world.validate()
    with pytest.raises(ValueError, match="reason"):
        ignore_quarantined(world.db, "time_entries", reason=" ", actor="ops", row_keys=["IGN"])
    n = ignore_quarantined(
        world.db,
        "time_entries",
        reason="test project, never billed",
        actor="ops@example.com",
        rule_code="TE_UNKNOWN_PROJECT",
    )
    assert n == 1
    world.validate()
    q = world.db.query_df(
        "SELECT row_key, status, status_reason, status_by FROM quarantine ORDER BY row_key"
    )
    assert q.values.tolist() == [
        ["IGN", "ignored", "test project, never billed", "ops@example.com"],
        ["KEEP", "open", None, None],
    ]
    assert world.db.scalar("SELECT COUNT(*) FROM quarantine_events WHERE event = 'ignored'") == 1
    _assert_conserved(world.db)


# -- master data ----------------------------------------------------------------------------


def test_invalid_project_quarantines_it_and_holds_its_entries(world: World) -> None:
    world.land(
        "projects",
        [
            dict(
                World.__init__.__globals__["PROJECTS"][0],
                project_code="PX",
                currency="DOLLARS",
                start_date="2026-12-01",
                end_date="2026-01-01",
            )
        ],
    )
    world.land(
        "project_tasks", [dict(project_code="PX", task_code="T1", task_name="t", billable="true")]
    )
    world.land("time_entries", [entry(entry_id="ONPX", project_code="PX", currency="DOLLARS")])
    world.validate()
    assert {"PRJ_CURRENCY_INVALID", "PRJ_DATES_INVERTED"} <= world.codes("PX", "projects")
    assert "TE_PROJECT_NOT_VALID" in world.codes("ONPX")
    _assert_conserved(world.db)


def test_rate_card_overlap_and_inverted_dates(world: World) -> None:
    world.land(
        "rate_cards",
        [
            dict(
                project_code="P5",
                employee_id="",
                role="consultant",
                bill_rate="100",
                currency="EUR",
                valid_from="2026-01-01",
                valid_to="2026-06-30",
            ),
            dict(
                project_code="P5",
                employee_id="",
                role="consultant",
                bill_rate="110",
                currency="EUR",
                valid_from="2026-06-01",
                valid_to="",
            ),
            dict(
                project_code="P5",
                employee_id="E2",
                role="",
                bill_rate="100",
                currency="EUR",
                valid_from="2026-05-01",
                valid_to="2026-04-01",
            ),
            dict(
                project_code="P5",
                employee_id="",
                role="partner",
                bill_rate="300",
                currency="USD",
                valid_from="2026-01-01",
                valid_to="",
            ),
        ],
    )
    world.validate()
    keys = world.db.query_df(
        "SELECT row_key, rule_codes FROM quarantine WHERE dataset = 'rate_cards' ORDER BY row_key"
    )
    got = dict(keys.values)
    assert got["P5||consultant|2026-01-01"] == "RC_OVERLAP"
    assert got["P5||consultant|2026-06-01"] == "RC_OVERLAP"
    assert got["P5|E2||2026-05-01"] == "RC_DATES_INVERTED"
    assert got["P5||partner|2026-01-01"] == "RC_CURRENCY_MISMATCH"
    _assert_conserved(world.db)


def test_task_of_unknown_project_and_employee_conflict(world: World) -> None:
    world.land(
        "project_tasks", [dict(project_code="NOPE", task_code="T1", task_name="x", billable="true")]
    )
    world.land(
        "employees",
        [
            dict(World.__init__.__globals__["EMPLOYEES"][0], employee_id="E9"),
            dict(World.__init__.__globals__["EMPLOYEES"][0], employee_id="E9", role="partner"),
        ],
    )
    world.validate()
    assert world.codes("NOPE|T1", "project_tasks") == {"TASK_UNKNOWN_PROJECT"}
    assert world.codes("E9", "employees") == {"EMP_DUPLICATE_CONFLICT"}
    _assert_conserved(world.db)


# -- invoices ---------------------------------------------------------------------------------


def _inv(**kw: str) -> dict[str, str]:
    base = dict(
        invoice_id="I1",
        project_code="P1",
        customer_id="C1",
        currency="USD",
        issue_date="2026-11-10",
        due_date="2026-12-10",
        status="released",
        line_no="1",
        line_kind="time",
        description="November time",
        quantity="7.5",
        unit_price="150.00",
        amount="1125.00",
        entry_ids="A",
        updated_at="2026-11-10T00:00:00Z",
    )
    return {**base, **kw}


def test_invoice_line_rules(world: World) -> None:
    world.land(
        "time_entries",
        [
            entry(entry_id="A"),
            entry(entry_id="DR", approval_status="draft", approved_at=""),
            entry(entry_id="OTHER", employee_id="E2", project_code="P5", currency="EUR"),
        ],
    )
    world.land(
        "invoices",
        [
            _inv(),
            _inv(line_no="2", amount="1125.01"),
            _inv(line_no="3", entry_ids="A;GHOST"),
            _inv(line_no="4", entry_ids="DR"),
            _inv(line_no="5", entry_ids="OTHER"),
            _inv(
                line_no="6",
                line_kind="milestone",
                entry_ids="",
                quantity="1",
                unit_price="5000",
                amount="5000.00",
            ),
            _inv(invoice_id="I2", currency="EUR", customer_id="C9"),
            _inv(invoice_id="I3", due_date="2026-11-01"),
            _inv(invoice_id="I4", entry_ids=""),
        ],
    )
    world.validate()
    c = world.codes
    assert world.state("I1|1", "invoices") == "valid"
    assert world.state("I1|6", "invoices") == "valid"
    assert c("I1|2", "invoices") == {"INV_AMOUNT_MISMATCH"}
    assert c("I1|3", "invoices") == {"INV_ENTRY_UNKNOWN"}
    assert c("I1|4", "invoices") == {"INV_ENTRY_NOT_APPROVED"}
    assert c("I1|5", "invoices") == {"INV_ENTRY_OTHER_PROJECT"}
    assert c("I2|1", "invoices") == {"INV_CURRENCY_MISMATCH", "INV_CUSTOMER_MISMATCH"}
    assert c("I3|1", "invoices") == {"INV_DUE_BEFORE_ISSUE"}
    assert c("I4|1", "invoices") == {"INV_TIME_LINE_WITHOUT_ENTRIES"}
    assert "GHOST" in world.db.scalar("SELECT messages FROM quarantine WHERE row_key = 'I1|3'")
    _assert_conserved(world.db)


# -- the whole catalogue on both backends -------------------------------------------------------


def test_catalogue_gives_the_same_quarantine_on_duckdb_and_postgresql(
    any_db: StagingDB, tmp_path: Path
) -> None:
    w = World(any_db, tmp_path).master()
    rows = [
        entry(entry_id=f"BAD_{name}", **{k: v for k, v in o.items() if k != "entry_id"})
        for name, o, _ in ENTRY_CASES
        if o.get("entry_id", "x")
    ]
    # On a day of its own: the bad rows together exceed 24 hours on theirs.
    rows.append(entry(entry_id="GOOD", work_date="2026-11-09", approved_at="2026-11-10T00:00:00Z"))
    w.land("time_entries", rows)
    w.validate()
    for name, o, codes in ENTRY_CASES:
        if o.get("entry_id", "x"):
            assert codes <= w.codes(f"BAD_{name}"), name
    assert w.state("GOOD") == "valid"
    _assert_conserved(any_db)


def test_pandera_contract_flags_exactly_what_the_sql_quarantines(world: World) -> None:
    """The pandera schema (pandas backend) and the SQL enforcement agree rule by rule."""
    import pandera.pandas as pa

    from staging_models.contracts import RULES, pandera_schema

    rows = [
        entry(entry_id=f"BAD_{n}", **{k: v for k, v in o.items() if k != "entry_id"})
        for n, o, _ in ENTRY_CASES
    ]
    rows += [entry(entry_id=f"OK{i}", work_date=f"2026-10-{i + 10:02d}") for i in range(5)]
    world.land("time_entries", rows)
    world.validate()
    frame = world.db.query_df(
        """SELECT s.*, l.raw_work_date, l.raw_hours, l.raw_billable, l.raw_bill_rate,
                  l.raw_approved_at, l.raw_updated_at, l.raw_deleted
           FROM stg_time_entries s JOIN land_time_entries l
             ON l.load_id = s.load_id AND l.row_no = s.row_no
           WHERE s.is_current AND s.state <> 'not_postable'"""
    )
    with pytest.raises(pa.errors.SchemaErrors) as err:
        pandera_schema("time_entries").validate(frame, lazy=True)
    fc = err.value.failure_cases.dropna(subset=["index"])
    by_pandera = {
        (frame.loc[int(i), "row_key"], check)
        for check, i in zip(fc["check"], fc["index"], strict=True)
    }
    row_level = {r.code for r in RULES["time_entries"] if r.check is not None}
    sql = world.db.query_df("SELECT row_key, rule_code FROM quarantine_violations")
    by_sql = {(k, c) for k, c in sql.itertuples(index=False) if c in row_level}
    assert by_sql, "the catalogue should trigger row-level rules"
    assert by_pandera == by_sql
