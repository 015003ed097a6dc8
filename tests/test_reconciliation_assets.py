"""The reconciliation assets end to end: staging tables, key figures as run metadata, the
workbook (read back with openpyxl) and its download link through the report server."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, RunConfig, materialize

from assets.reconciliation import (
    ReconciliationConfig,
    WorkbookConfig,
    reconciliation_assets,
    resolve_period,
)
from connectors.erp.base import ErpTarget
from io_managers.staging_table import StagingTableIOManager, load_frame
from reconciliation.compare import ALL, EXCEPTION_CLASSES
from reconciliation.report import (
    CLASS_TITLES,
    INVOICE_SHEET,
    TOTALS_SHEET,
    key_figures,
    multi_rule_note,
    write_reconciliation_workbook,
)
from reconciliation.sheet_columns import CLASS_COLUMNS, CLASS_REASONS, HEADERS
from reconciliation.store import load_lines
from resources.feedback import OutboundDelivery
from resources.psa_source import PsaSource
from resources.reports import ReportUpload
from resources.staging import StagingDatabase
from staging_models.db import dispose_all, staging_db
from staging_models.desk_breaches import breaches
from staging_models.desk_breaches import totals as breach_totals
from tests.support.recon_helpers import (
    EXPECTED_CLASSES,
    FULL_PATTERN,
    INJECTION,
    KEYLESS_ROWS,
    SeededWorld,
)
from tests.support.sftp_server import SftpServer

BROKEN = "time_entries_009_broken.csv"


class FixedErp:
    """Stands in for the ERP resource: hands out one real ERP target (the SQL interface)."""

    def __init__(self, target: ErpTarget) -> None:
        self.target = target

    def get_target(self) -> ErpTarget:
        return self.target


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[dict]:
    """Seed a world, start the report server, materialize both assets once for the module."""
    folder = tmp_path_factory.mktemp("assets")
    mp = pytest.MonkeyPatch()
    mp.setenv("STAGEPOST_DATA_DIR", str(folder))
    mp.setenv("STAGEPOST_REPORTS_DIR", str(folder / "reports"))
    mp.setenv("STAGEPOST_DESK_PORT", "3999")  # the links' base; the desk serves them (below)
    url = f"duckdb:///{folder / 'staging.duckdb'}"
    db = staging_db(url)
    world = SeededWorld(db, folder)
    # A broken file in the inbox (ingestion refuses it too): skipped with a note, not fatal.
    (folder / "inbox" / BROKEN).write_bytes(b"entry_id,hours\nTE1,\xff\xfe\n")
    result = _materialize(
        url, PsaSource(inbox=str(folder / "inbox")), world, full_export_pattern=FULL_PATTERN
    )
    yield {
        "result": result,
        "db": db,
        "folder": folder,
        "world": world,
    }
    world.erp.close()
    dispose_all()
    mp.undo()


def _materialize(
    url: str, psa_source: PsaSource, world: SeededWorld, full_export_pattern: str = ""
):
    """Both reconciliation assets over the seeded world, October and November 2026."""
    staging = StagingDatabase(url=url)
    return materialize(
        reconciliation_assets,
        resources={
            "staging": staging,
            "psa_source": psa_source,
            "erp": FixedErp(world.erp),
            "staging_table_io_manager": StagingTableIOManager(staging=staging),
            "report_upload": ReportUpload(),
            "outbound": OutboundDelivery(folder=str(world.folder / "feedback")),
        },
        instance=DagsterInstance.ephemeral(),
        run_config=RunConfig(
            ops={
                "reconciliation": ReconciliationConfig(
                    date_from="2026-10-01",
                    date_to="2026-11-30",
                    full_export_pattern=full_export_pattern,
                ),
                "reconciliation_workbook": WorkbookConfig(per_legal_entity=True),
            }
        ),
    )


def _metadata(result, key: str) -> dict:
    mats = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == key
    ]
    assert len(mats) == 1
    return mats[0].metadata


def test_results_are_stored_in_staging(run) -> None:
    assert run["result"].success
    db = run["db"]
    by_class = dict(
        db.query_df("SELECT class, COUNT(*) AS n FROM rec_lines GROUP BY class").values.tolist()
    )
    assert by_class == {c: len(v) for c, v in EXPECTED_CLASSES.items() if c in EXCEPTION_CLASSES}
    kpis = load_frame(db, "rec_kpis")
    row = kpis[(kpis["legal_entity"] == ALL) & (kpis["name"] == "straight_through_entries")]
    assert int(row["entries"].iloc[0]) == 7
    totals = load_frame(db, "rec_totals")
    us = totals[(totals["dimension"] == "legal_entity") & (totals["legal_entity"] == "US01")]
    assert us["variance_ledger_erp_hours"].iloc[0] == Decimal("-2.5")
    invoices = load_frame(db, "rec_invoices")
    assert sorted(invoices["class"]) == sorted(
        ["in_sync", "ready_not_posted", "draft", "value_mismatch", "erp_unknown_to_staging"]
    )


def _notes(db) -> list[str]:
    kpis = load_frame(db, "rec_kpis")
    return kpis[kpis["name"].str.startswith("note_")]["text"].tolist()


def test_a_broken_inbox_file_is_noted_and_the_rest_compared(run) -> None:
    problems = [n for n in _notes(run["db"]) if BROKEN in n]
    assert len(problems) == 1 and "its rows were not compared" in problems[0]
    # The readable file not landed yet is still compared (`S1`, newer content in the inbox).
    lines = load_frame(run["db"], "rec_lines")
    assert lines.loc[lines["entry_id"] == "S1", "class"].tolist() == ["not_yet_staged"]


def test_an_unreachable_inbox_is_noted_and_the_books_still_compared(
    tmp_path: Path, sftp_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SFTP inbox whose host key is unknown (a fatal SourceError): reconciled without it."""
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STAGEPOST_REPORTS_DIR", str(tmp_path / "reports"))
    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    world = SeededWorld(staging_db(url), tmp_path)
    strange = tmp_path / "known_hosts_other"
    strange.write_text(sftp_server.known_hosts_line().replace(str(sftp_server.port), "1", 1))
    sftp = PsaSource(
        kind="sftp",
        host="127.0.0.1",
        port=sftp_server.port,
        username=sftp_server.user,
        key_path=str(sftp_server.keys.key),
        known_hosts_path=str(strange),
        inbox=str(sftp_server.inbox),
    )
    try:
        assert _materialize(url, sftp, world).success
        db = staging_db(url)
        notes = [n for n in _notes(db) if n.startswith("PSA inbox not checked")]
        assert len(notes) == 1 and "not in known_hosts" in notes[0]
        lines = load_frame(db, "rec_lines")
        assert "S1" not in set(lines["entry_id"])  # only the inbox knew it
        assert len(lines) > 0  # the books were still compared
    finally:
        world.erp.close()
        dispose_all()


def test_key_figures_are_run_metadata(run) -> None:
    md = _metadata(run["result"], "rec_kpis")
    assert md["straight_through_rate"].value == "41.18%"  # 7 / 17, as in the workbook
    assert md["approved_entries"].value == 17
    assert md["entries_by_class"].value["quarantined"] == 2
    assert md["quarantined_entries"].value == 2
    assert md["quarantined_rows_without_key"].value == 2
    assert md["approved_not_posted_amount"].value == {"USD": "4,500.00"}
    assert md["invoice_ready_backlog_amount"].value == {"USD": "2,000.00"}
    assert "straight_through_rate" in md["key_figures"].value  # the markdown table
    assert "| 41.18% |" in md["key_figures"].value


def test_workbook_summary_cell_by_cell(run) -> None:
    md = _metadata(run["result"], "reconciliation_workbook")
    path = Path(md["path"].value)
    assert path.parent == run["folder"] / "reports" and path.exists()
    kpis = load_frame(run["db"], "rec_kpis")
    info = dict(zip(kpis["name"], kpis["text"], strict=True))
    wb = openpyxl.load_workbook(path)
    ws = wb["Summary"]
    rows = [r for r in ws.iter_rows(values_only=True)]
    start = rows.index(("Key figures",) + (None,) * (len(rows[0]) - 1)) + 2
    expected = key_figures(kpis, ALL, info["period"])
    for offset, (label, value) in enumerate(expected):
        got_label, got_value = rows[start + offset][:2]
        assert got_label == label
        if isinstance(value, Decimal | float | int) and value is not None:
            assert got_value == pytest.approx(float(value)), label
        else:
            assert got_value == value, label
    figures = dict(expected)
    assert figures["Entries: Quarantined"] == 2
    assert figures["Straight-through rate"] == "41.18%"  # the UI's format
    assert figures["Invoice-ready backlog: amount (USD)"] == Decimal("2000.00")
    assert figures["Rows: Quarantined, no key or date"] == 2
    assert not any(label.endswith("amount") for label, _ in expected)  # always per currency
    # Totals section: one row per legal entity and currency, every state and variance.
    totals = load_frame(run["db"], "rec_totals")
    per_le = totals[totals["dimension"] == "legal_entity"].drop(columns=["dimension", "member"])
    assert len(per_le) == 2  # both legal entities of the seeded world
    top = [r[0] for r in rows].index("Totals") + 1
    assert list(rows[top][: per_le.shape[1]]) == [HEADERS[c] for c in per_le.columns]
    for i, rec in enumerate(per_le.sort_values("legal_entity").itertuples(index=False)):
        cells = rows[top + 1 + i][: per_le.shape[1]]
        assert cells[:2] == tuple(rec[:2])
        assert [float(x) for x in rec[2:]] == pytest.approx(list(cells[2:]))
    assert len(ws._charts) == 2  # hours and amount by age


def test_workbook_detail_sheets_and_injection(run) -> None:
    md = _metadata(run["result"], "reconciliation_workbook")
    path = Path(md["path"].value)
    wb = openpyxl.load_workbook(path)
    for cls in EXCEPTION_CLASSES:
        ws = wb[CLASS_TITLES[cls]]
        entry = [c.value for c in ws[1]].index("Entry")
        ids = [r[entry] for r in ws.iter_rows(min_row=2, values_only=True)]
        assert set(ids) == EXPECTED_CLASSES[cls], cls
    ws = wb[CLASS_TITLES["approved_not_posted"]]
    header = [c.value for c in ws[1]]
    n1 = next(r for r in ws.iter_rows(min_row=2) if r[header.index("Entry")].value == "N1")
    cell = n1[header.index("Description")]
    assert cell.value == INJECTION and cell.data_type == "s"
    q = wb[CLASS_TITLES["quarantined"]]
    qh = [c.value for c in q[1]]
    reasons = {r[qh.index("Entry")]: r[0] for r in q.iter_rows(min_row=2, values_only=True)}
    assert reasons["Q2"] == "project P2 is closed"
    with zipfile.ZipFile(path) as z:
        xml = b"".join(z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/"))
    assert b"<f>" not in xml and b"<f " not in xml  # no formula anywhere, only text


def test_rows_without_a_key_have_a_sheet_with_file_and_row(run) -> None:
    """Quarantined rows with no entry id or an unreadable work date: their own sheet in the
    workbook (and in their legal entity's), with the file and row to find them by."""
    md = _metadata(run["result"], "reconciliation_workbook")
    us = next((run["folder"] / "reports").glob("reconciliation_US01_*.xlsx"))
    for path in (Path(md["path"].value), us):
        wb = openpyxl.load_workbook(path)
        ws = wb[CLASS_TITLES["quarantined_without_key"]]
        header = [c.value for c in ws[1]]
        rows = [
            dict(zip(header, r, strict=True)) for r in ws.iter_rows(min_row=2, values_only=True)
        ]
        assert {(r["Entry"], r["Row in file"]) for r in rows} == KEYLESS_ROWS
        assert {r["File"] for r in rows} == {"time_entries_001.csv"}
        assert all(r["Rules broken"] for r in rows)
        summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(values_only=True) if r[0]}
        assert summary["Rows: Quarantined, no key or date"] == 2
    assert _metadata(run["result"], "rec_kpis")["quarantined_rows_without_key"].value == 2


def _workbook(run) -> openpyxl.Workbook:
    return openpyxl.load_workbook(
        Path(_metadata(run["result"], "reconciliation_workbook")["path"].value)
    )


def test_exception_sheets_start_with_the_reason_and_show_their_own_columns(run) -> None:
    wb = _workbook(run)
    seen = set()
    defaults = 0
    for cls in EXCEPTION_CLASSES:
        header = [c.value for c in wb[CLASS_TITLES[cls]][1]]
        assert header[0] == "Reason", cls
        reasons = [r[0] for r in wb[CLASS_TITLES[cls]].iter_rows(min_row=2, values_only=True)]
        assert all(reasons), cls  # every row says why it is there
        defaults += sum(r == CLASS_REASONS[cls] for r in reasons)
        assert header == [HEADERS[c] for c in CLASS_COLUMNS[cls]], cls
        assert not any("_" in h for h in header), cls  # people's words, not column names
        seen.add(tuple(header))
    assert len(seen) == len(EXCEPTION_CLASSES)  # no two classes share one 30-column layout
    assert defaults > 0  # rows whose class is their whole reason say so in words
    unknown = [c.value for c in wb[CLASS_TITLES["erp_unknown_to_staging"]][1]]
    assert "ERP amount" in unknown and "PSA amount" not in unknown  # nothing the PSA has
    quarantined = [c.value for c in wb[CLASS_TITLES["quarantined"]][1]]
    assert quarantined[:3] == ["Reason", "Rules broken", "Number of rules broken"]
    assert "ERP amount" not in quarantined
    summary = [r[0] for r in wb["Summary"].iter_rows(values_only=True)]
    assert {"Days open", "Sheet"} <= set(summary)  # the summary's own tables in words too
    invoices = [c.value for c in wb[INVOICE_SHEET][1]]
    assert invoices[:2] == ["Reason", "Exception"]
    totals = [c.value for c in wb[TOTALS_SHEET][1]]
    assert "Hours: PSA - staging valid" in totals and "variance_psa_staging_hours" not in totals


def test_draft_invoices_are_no_exception(run) -> None:
    wb = _workbook(run)
    ws = wb[INVOICE_SHEET]
    header = [c.value for c in ws[1]]
    rows = [dict(zip(header, r, strict=True)) for r in ws.iter_rows(min_row=2, values_only=True)]
    assert {r["Invoice"] for r in rows} == {"I2", "I4", "I5"}  # I3 (draft) and I1 (in sync) not
    assert {r["Exception"] for r in rows} == {
        "Ready, not posted",
        "Value mismatch",
        "ERP unknown to staging",
    }
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(values_only=True) if r[0]}
    assert summary["Invoices: Draft"] == 1  # still counted, as a key figure


def test_every_sheet_prints_landscape_one_page_wide_with_its_header_repeated(run) -> None:
    wb = _workbook(run)
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape", ws.title
        assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0), ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        if ws.title != "Summary":
            assert ws.print_title_rows == "$1:$1", ws.title


def test_the_summary_states_the_period_and_ties_to_the_posted_totals(run) -> None:
    kpis = load_frame(run["db"], "rec_kpis")
    period = dict(zip(kpis["name"], kpis["text"], strict=True))["period"]
    ws = _workbook(run)["Summary"]
    assert (ws["A2"].value, ws["B2"].value) == ("Period", period)
    assert period.startswith("2026-10-01 to 2026-11-30")
    notes = [r[0] for r in ws.iter_rows(values_only=True)]
    notes = notes[notes.index("Notes") + 1 :]
    totals = load_frame(run["db"], "rec_totals")
    per_le = totals[totals["dimension"] == "legal_entity"]
    for r in per_le.itertuples(index=False):
        line = next(n for n in notes if n and n.startswith(f"{r.legal_entity} {r.currency}: "))
        assert f"posted {Decimal(str(r.ledger_hours)).normalize():f} h" in line
        assert f"{Decimal(str(r.ledger_amount)):,.2f} {r.currency}" in line
        ties = r.variance_ledger_erp_hours == 0 and r.variance_ledger_erp_amount == 0
        assert line.endswith(": ties.") == ties, line
    us = next(n for n in notes if n and n.startswith("US01 USD: "))
    assert "does not tie: -2.5 h" in us  # posted 2.5 h less than the ERP holds


def test_a_row_breaking_several_rules_is_explained(run, tmp_path: Path) -> None:
    """The rule figures count a row once per rule: the summary says so, and the quarantine
    sheet shows how many rules each row breaks."""
    db = run["db"]
    lines = load_lines(db)
    codes = lines["rule_codes"].to_pylist()
    ids = lines["entry_id"].to_pylist()
    codes[ids.index("Q1")] = "TE_UNKNOWN_PROJECT,TE_HOURS_OVER_24"
    lines = lines.set_column(
        lines.column_names.index("rule_codes"), "rule_codes", pa.array(codes, pa.string())
    )
    note = multi_rule_note(lines)
    assert note is not None and "1 rows break more than one" in note
    broken = [
        len(c.split(","))
        for c, state in zip(codes, lines["psa_state"].to_pylist(), strict=True)
        if c and state == "quarantined"
    ]
    quarantined, rules = len(broken), sum(broken)
    assert note.startswith(f"{quarantined} quarantined rows break {rules} rules in all")
    kpis = load_frame(db, "rec_kpis")
    path = tmp_path / "multi.xlsx"
    write_reconciliation_workbook(
        path,
        period_label="2026-10-01 to 2026-11-30, all legal entities",
        kpis=kpis,
        totals=load_frame(db, "rec_totals"),
        invoices=load_frame(db, "rec_invoices"),
        lines=lines,
    )
    wb = openpyxl.load_workbook(path)
    assert note in [r[0] for r in wb["Summary"].iter_rows(values_only=True)]
    q = wb[CLASS_TITLES["quarantined"]]
    header = [c.value for c in q[1]]
    broken = {
        r[header.index("Entry")]: r[header.index("Number of rules broken")]
        for r in q.iter_rows(min_row=2, values_only=True)
    }
    assert broken["Q1"] == 2 and broken["Q2"] == 1
    assert multi_rule_note(load_lines(db)) is None  # the seeded rows break one rule each


def test_one_workbook_per_legal_entity(run) -> None:
    md = _metadata(run["result"], "reconciliation_workbook")
    links = md["workbooks"].value
    assert "[DE01](" in links and "[US01](" in links
    de = next((run["folder"] / "reports").glob("reconciliation_DE01_*.xlsx"))
    ws = openpyxl.load_workbook(de)["Summary"]
    values: dict = {}
    for r in ws.iter_rows(values_only=True):  # the key figure, not the totals' header
        if r[0]:
            values.setdefault(r[0], r[1])
    assert values["Legal entity"] == "DE01"
    assert values["Entries: In sync"] == 1
    # The asset counts the desk's breaches for the workbook's legal entity.
    open_, overdue = breach_totals(breaches(run["db"], datetime.now(UTC).date()), "DE01")
    assert values["Exceptions open on the desk"] == open_
    assert values["Exceptions past their due date (breaches)"] == overdue


def test_breaches_on_the_summary(run, tmp_path: Path) -> None:
    """Overdue exceptions (past their due date) are key figures on the summary: none before
    any due date, every open one long after."""
    db = run["db"]
    with db.engine.connect() as conn:
        groups = conn.execute(sa.text("SELECT count(*) FROM desk_items WHERE status = 'open'"))
        open_groups = groups.scalar()
    assert open_groups >= 2  # Q1, Q2 and the keyless rows

    def summary(today: date) -> dict:
        path = tmp_path / f"breaches_{today}.xlsx"
        write_reconciliation_workbook(
            path,
            period_label="2026-10-01 to 2026-11-30, all legal entities",
            kpis=load_frame(db, "rec_kpis"),
            totals=load_frame(db, "rec_totals"),
            invoices=load_frame(db, "rec_invoices"),
            lines=load_lines(db),
            breaches=breaches(db, today),
        )
        values: dict = {}
        for r in openpyxl.load_workbook(path)["Summary"].iter_rows(values_only=True):
            if r[0]:
                values.setdefault(r[0], r[1])
        return values

    early, late = summary(date(2000, 1, 3)), summary(date(2100, 1, 4))
    assert (
        early["Exceptions open on the desk"] == late["Exceptions open on the desk"] == open_groups
    )
    assert early["Exceptions past their due date (breaches)"] == 0
    assert late["Exceptions past their due date (breaches)"] == open_groups


def test_download_link_serves_the_workbook(run) -> None:
    """The link in the metadata is the desk's; signed in, the desk serves the file (its
    refusals of anything else: tests/test_desk.py)."""
    import re

    from starlette.testclient import TestClient

    from desk.app import create_app
    from desk.users import add_user

    md = _metadata(run["result"], "reconciliation_workbook")
    url = md["download"].value
    prefix = "http://127.0.0.1:3999/files/reports/reconciliation_all_2026-10-01_2026-11-30_"
    assert url.startswith(prefix)
    add_user(run["db"], "carla", "controller", password="correct horse battery")
    client = TestClient(create_app(run["db"], secret=b"k" * 32))
    assert client.get(url.removeprefix("http://127.0.0.1:3999")).status_code == 401
    token = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)[1]
    client.post(
        "/login",
        data={"login_token": token, "username": "carla", "password": "correct horse battery"},
    )
    resp = client.get(url.removeprefix("http://127.0.0.1:3999"))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert resp.content == Path(md["path"].value).read_bytes()


def test_default_period_is_this_and_two_earlier_months() -> None:
    from datetime import date

    p = resolve_period(ReconciliationConfig(), date(2026, 1, 15))
    assert (p.date_from, p.date_to) == (date(2025, 11, 1), date(2026, 1, 15))


def _workbooks_again(run, upload: ReportUpload):
    """The workbook asset alone, from the stored results of the module's run."""
    staging = StagingDatabase(url=f"duckdb:///{run['folder'] / 'staging.duckdb'}")
    return materialize(
        reconciliation_assets,
        selection=["reconciliation_workbook"],
        resources={  # all the assets' resources, though only the workbook asset runs
            "staging": staging,
            "psa_source": PsaSource(inbox=str(run["folder"] / "inbox")),
            "erp": FixedErp(run["world"].erp),
            "staging_table_io_manager": StagingTableIOManager(staging=staging),
            "report_upload": upload,
            "outbound": OutboundDelivery(folder=str(run["folder"] / "feedback")),
        },
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _upload_to(server: SftpServer, **overrides) -> ReportUpload:
    kw = dict(
        folder="controllers",
        host=server.host,
        port=server.port,
        username=server.user,
        key_path=str(server.keys.key),
        known_hosts_path=str(server.known_hosts),
    )
    return ReportUpload(**{**kw, **overrides})


def test_workbooks_are_uploaded_to_the_sftp_folder(run, sftp_server: SftpServer) -> None:
    result = _workbooks_again(run, _upload_to(sftp_server))
    assert result.success
    md = _metadata(result, "reconciliation_workbook")
    uploaded = md["sftp"].value
    assert set(uploaded) == {ALL, "DE01", "US01"}
    local = Path(md["path"].value)
    assert uploaded[ALL] == f"controllers/{local.name}"
    remote = sftp_server.root / "controllers"
    assert (remote / local.name).read_bytes() == local.read_bytes()
    assert sorted(p.name for p in remote.iterdir()) == sorted(
        Path(p).name for p in uploaded.values()
    )


def test_a_failed_upload_fails_the_asset_and_says_where_the_workbooks_are(
    run, sftp_server: SftpServer
) -> None:
    sftp_server.stop()
    result = _workbooks_again(run, _upload_to(sftp_server, retries=0))
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error, messages = failure.step_failure_data.error, []
    while error is not None:  # Dagster wraps the asset's exception: follow the causes
        messages.append(error.message)
        error = error.cause
    message = "\n".join(messages)
    assert "RetryableUploadError" in message and "failed after 1 attempt(s)" in message
    kept = message.split("in the reports folder all the same: ")[1].splitlines()[0].split(", ")
    assert len(kept) == 3 and all(Path(p).is_file() for p in kept)
