"""Reconciliation test worlds: PSA files landed and validated for real, then ledger rows and ERP
lines written directly (no posting code), so every discrepancy is seeded on purpose.

The ERP is the SQL interface target (`SqlInterfaceTarget`) on a DuckDB file; its lines are
inserted into its interface table as an ERP that booked them would hold them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.erp.sql_interface import SqlInterfaceTarget, erp_invoices, erp_time_lines
from staging_models.db import StagingDB
from staging_models.landing import land_file
from staging_models.ledger_tables import invoice_ledger, posting_ledger
from tests.support.csvtools import te, write_csv

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CENT = Decimal("0.01")


def day(i: int) -> str:
    """Work date `i` days after 2026-11-01 (one entry per day keeps each day under 24 h)."""
    return (date(2026, 11, 1) + timedelta(days=i)).isoformat()


def entry_row(entry_id: str, i: int, **kw: str) -> dict[str, str]:
    """An approved E1/P1 entry on day `i`, approved the next morning (UTC)."""
    wd = date.fromisoformat(day(i))
    approved = f"{wd + timedelta(days=1)}T09:00:00Z"
    return te(**{"entry_id": entry_id, "work_date": wd.isoformat(), "approved_at": approved, **kw})


def land(db: StagingDB, folder: Path, file_name: str, dataset: str, rows: list[dict]) -> Path:
    path = write_csv(folder / file_name, dataset, rows)
    land_file(db, path, dataset)
    return path


class Books:
    """Writes posting-ledger rows and ERP lines the way a posting window would leave them."""

    def __init__(self, db: StagingDB, erp: SqlInterfaceTarget) -> None:
        self.db, self.erp = db, erp

    def version(self, entry_id: str, version: int) -> dict[str, Any]:
        """A staged version as the ledger line posting would derive from it."""
        df = self.db.query_df(
            """SELECT s.row_key AS entry_id, s.version, s.employee_id, s.project_code,
                      s.task_code, s.work_date, s.hours, s.bill_rate, s.billable, s.currency,
                      s.description, p.legal_entity
               FROM stg_time_entries s
               LEFT JOIN stg_projects p ON p.is_current AND p.row_key = s.project_code
               WHERE s.row_key = :e AND s.version = :v""",
            {"e": entry_id, "v": version},
        )
        r = df.iloc[0].to_dict()
        amount = (r["hours"] * r["bill_rate"]).quantize(CENT) if r["billable"] else Decimal("0")
        return {
            "external_id": f"te:{entry_id}:v{version}:post",
            "kind": "post",
            "entry_id": entry_id,
            "entry_version": version,
            "reverses_external_id": None,
            "legal_entity": r["legal_entity"],
            "employee_id": r["employee_id"],
            "project_code": r["project_code"],
            "task_code": r["task_code"],
            "work_date": r["work_date"],
            "period": r["work_date"].strftime("%Y-%m"),
            "hours": r["hours"],
            "bill_rate": r["bill_rate"],
            "amount": amount,
            "currency": r["currency"],
            "description": r["description"],
        }

    def ledger(self, line: dict[str, Any], state: str = "confirmed", message: str | None = None):
        with self.db.begin() as c:
            c.execute(
                posting_ledger.insert().values(
                    **line,
                    state=state,
                    erp_message=message,
                    window_id="W-test",
                    planned_at=NOW - timedelta(days=3),
                    sent_at=NOW - timedelta(days=3),
                    settled_at=NOW - timedelta(days=3) if state == "confirmed" else None,
                )
            )

    def erp_lines(self, lines: Iterable[dict[str, Any]]) -> None:
        with self.erp.engine.begin() as c:
            for line in lines:
                c.execute(erp_time_lines.insert().values(**line))

    def post(
        self,
        entry_id: str,
        version: int = 1,
        *,
        state: str = "confirmed",
        in_erp: bool = True,
        erp: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Ledger line for the version; the ERP holds it (with `erp` overrides) if `in_erp`."""
        line = self.version(entry_id, version)
        self.ledger(line, state, "Posting period 2026-11 is closed" if state == "held" else None)
        if in_erp:
            self.erp_lines([{**line, **(erp or {})}])
        return line

    def reverse(self, entry_id: str, version: int, *, in_erp: bool = True) -> dict[str, Any]:
        orig = self.version(entry_id, version)
        line = {
            **orig,
            "external_id": f"te:{entry_id}:v{version}:rev",
            "kind": "reversal",
            "reverses_external_id": orig["external_id"],
            "hours": -orig["hours"],
            "amount": -orig["amount"],
            "description": f"Reversal of {orig['external_id']}",
        }
        self.ledger(line)
        if in_erp:
            self.erp_lines([line])
        return line

    def invoice(
        self,
        invoice_id: str,
        total: Decimal,
        *,
        version: int = 1,
        ledger_state: str | None = "confirmed",
        in_erp: bool = True,
        erp_total: Decimal | None = None,
        legal_entity: str = "US01",
    ) -> None:
        doc = {
            "external_id": f"inv:{invoice_id}:v{version}:post",
            "kind": "post",
            "reverses_external_id": None,
            "invoice_id": invoice_id,
            "invoice_version": version,
            "legal_entity": legal_entity,
            "project_code": "P1",
            "customer_id": "C1",
            "currency": "USD",
            "issue_date": date(2026, 11, 10),
            "due_date": date(2026, 12, 10),
            "period": "2026-11",
        }
        if ledger_state:
            with self.db.begin() as c:
                c.execute(
                    invoice_ledger.insert().values(
                        **doc,
                        total_amount=total,
                        line_count=1,
                        state=ledger_state,
                        window_id="W-test",
                        planned_at=NOW - timedelta(days=3),
                        settled_at=NOW - timedelta(days=3),
                    )
                )
        if in_erp:
            with self.erp.engine.begin() as c:
                c.execute(
                    erp_invoices.insert().values(
                        **doc,
                        total_amount=total if erp_total is None else erp_total,
                        status="posted",
                    )
                )


def invoice_row(invoice_id: str, amount: str, **kw: str) -> dict[str, str]:
    """A one-line milestone invoice proposal of P1 (no time-entry references to check)."""
    base = dict(
        invoice_id=invoice_id,
        project_code="P1",
        customer_id="C1",
        currency="USD",
        issue_date="2026-11-10",
        due_date="2026-12-10",
        status="released",
        line_no="1",
        line_kind="milestone",
        description="Milestone",
        quantity="1",
        unit_price=amount,
        amount=amount,
        entry_ids="",
        updated_at="2026-11-10T00:00:00Z",
    )
    return {**base, **kw}


def make_erp(folder: Path) -> SqlInterfaceTarget:
    return SqlInterfaceTarget(f"duckdb:///{folder / 'erp.duckdb'}")


INJECTION = '=HYPERLINK("http://evil.example/x","click me")'
PERIOD_FROM, PERIOD_TO = date(2026, 10, 1), date(2026, 11, 30)

#: Entries per class that `seed_world` plants (and nothing else).
EXPECTED_CLASSES: dict[str, set[str]] = {
    "in_sync": {"A1", "A2", "A3", "R1", "W1"},
    "approved_not_posted": {"N1", "N2", "N3", "N4"},
    "quarantined": {"Q1", "Q2"},
    "posted_missing_in_erp": {"M1"},
    "erp_unknown_to_staging": {"U1", "U2"},
    "value_mismatch": {"V1", "V2"},
    "changed_in_psa_since_posting": {"C1", "C2", "C3"},
    "deleted_in_psa": {"D1"},
    "not_yet_staged": {"S1", "S2"},
    "not_postable": {"Z1"},
    "quarantined_without_key": {None, "K2"},
}
EXPECTED_INVOICE_CLASSES: dict[str, set[str]] = {
    "in_sync": {"I1"},
    "ready_not_posted": {"I2"},
    "draft": {"I3"},
    "value_mismatch": {"I4"},
    "erp_unknown_to_staging": {"I5"},
}
FULL_PATTERN = "time_entries_full_*"


def _first_entries() -> list[dict[str, str]]:
    later = "2026-11-18T09:00:00Z"
    return [
        entry_row("A1", 1),
        entry_row("A2", 2),
        entry_row(
            "A3",
            3,
            employee_id="E2",
            employee_name="Jörg Müller",
            project_code="P5",
            currency="EUR",
            bill_rate="100.00",
        ),
        entry_row("R1", 4, hours="8.00"),
        entry_row("N1", 16, approved_at="2026-11-19T20:00:00Z", description=INJECTION),
        entry_row("N2", 1),
        entry_row("N3", 14, approved_at="2026-11-15T09:00:00Z"),
        te(entry_id="N4", work_date="2026-10-05", approved_at="2026-10-06T09:00:00Z"),
        entry_row("Q1", 5, project_code="P404"),
        entry_row("Q2", 5, project_code="P2"),
        entry_row("M1", 6),
        entry_row("U2", 6),
        entry_row("V1", 7),
        entry_row("V2", 7),
        entry_row("C1", 8),
        entry_row("C2", 8),
        entry_row("C3", 9),
        entry_row("D1", 9),
        entry_row("Z1", 10, approval_status="draft", approved_at=""),
        entry_row("W1", 10, employee_id="E9", employee_name="New Hire", updated_at=later),
        # Rows no key can place: no entry id (row 22 of the file), an unreadable work date.
        entry_row("", 13, hours="1.25"),
        entry_row("K2", 13, work_date="2026-11-31"),
    ]


#: Rows of `time_entries_001.csv` that no entry id and date can place: (entry id, file row).
KEYLESS_ROWS = {(None, 22), ("K2", 23)}


class SeededWorld:
    """The world of `EXPECTED_CLASSES`: staging, ledger, ERP and one PSA file not landed."""

    def __init__(self, db: StagingDB, folder: Path) -> None:
        from reconciliation.psa_files import read_unlanded
        from staging_models.validation import validate_all
        from tests.support.staging_helpers import EMPLOYEES, PROJECTS, RATE_CARDS, TASKS

        self.db, self.folder = db, folder
        self.erp = make_erp(folder)
        books = self.books = Books(db, self.erp)
        land(db, folder, "employees_001.csv", "employees", EMPLOYEES)
        land(db, folder, "projects_001.csv", "projects", PROJECTS)
        land(db, folder, "project_tasks_001.csv", "project_tasks", TASKS)
        land(db, folder, "rate_cards_001.csv", "rate_cards", RATE_CARDS)
        first = _first_entries()
        land(db, folder, "time_entries_001.csv", "time_entries", first)
        land(
            db,
            folder,
            "invoices_001.csv",
            "invoices",
            [
                invoice_row("I1", "1000.00"),
                invoice_row("I2", "2000.00"),
                invoice_row("I3", "500.00", status="draft"),
                invoice_row("I4", "3000.00"),
            ],
        )
        validate_all(db, now=NOW, actor="test")
        new_hire = dict(EMPLOYEES[0], employee_id="E9", employee_name="New Hire")
        land(db, folder, "employees_002.csv", "employees", [*EMPLOYEES, new_hire])
        # The full export: every entry except C3 and D1 (deleted in the PSA, no tombstone),
        # with R1 and C1 edited and C2 deleted explicitly.
        later = {"updated_at": "2026-11-18T09:00:00Z"}
        edits = {
            "R1": {"hours": "6.00", **later},
            "C1": {"hours": "5.00", **later},
            "C2": {"deleted": "true", **later},
        }
        full = [
            {**r, **edits.get(r["entry_id"], {})}
            for r in first
            if r["entry_id"] not in ("C3", "D1", "", "K2")
        ]
        land(db, folder, "time_entries_full_002.csv", "time_entries", full)
        validate_all(db, now=NOW, actor="test")

        for e in ("A1", "A2", "A3", "W1", "M1", "V1", "V2", "C1", "C2", "C3"):
            erp = {
                "M1": None,
                "V1": {"hours": Decimal("7.0000"), "amount": Decimal("1050.00")},
                "V2": {"project_code": "P9"},
            }.get(e, {})
            books.post(e, 1, in_erp=erp is not None, erp=erp)
        books.post("R1", 1)
        books.reverse("R1", 1)
        books.post("R1", 2)
        books.post("N3", 1, state="held", in_erp=False)
        books.post("U2", 1, state="rejected", in_erp=True)
        books.erp_lines(
            [
                {
                    **books.version("A1", 1),
                    "external_id": "manual:U1",
                    "entry_id": "U1",
                    "hours": Decimal("3.0000"),
                    "amount": Decimal("450.00"),
                }
            ]
        )
        books.invoice("I1", Decimal("1000.00"))
        books.invoice("I4", Decimal("3000.00"), erp_total=Decimal("2999.00"))
        books.invoice("I5", Decimal("750.00"), ledger_state=None)

        land(db, folder, "time_entries_003.csv", "time_entries", [entry_row("S2", 11)])
        pending = write_csv(
            folder / "inbox" / "time_entries_004.csv", "time_entries", [entry_row("S1", 12)]
        )
        self.unlanded_files = [(pending.name, pending)]
        self.unlanded = read_unlanded(self.unlanded_files, workdir=folder / "work")

    def reconcile(self, **kw):
        from reconciliation.compare import Period, reconcile

        period = Period(PERIOD_FROM, PERIOD_TO, tuple(kw.pop("legal_entities", ())))
        return reconcile(
            self.db,
            self.erp,
            period,
            now=NOW,
            unlanded=self.unlanded,
            full_export_pattern=kw.pop("full_export_pattern", FULL_PATTERN),
            **kw,
        )
