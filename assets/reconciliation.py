"""Reconciliation assets: PSA vs staging vs ERP, stored in staging, and the controllers' workbooks.

`reconciliation` compares (see `reconciliation.compare`) and stores its results in
staging tables: `rec_lines` (exception lines, written set-based), and `rec_totals`,
`rec_invoices`, `rec_expenses`, `rec_kpis` through the staging-table IO manager.
`reconciliation_workbook` reads them back and writes one workbook per run (and one per legal
entity) into the reports folder, with a download link served by the finance desk (`desk/downloads.py`).
"""

import re
import tempfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    Config,
    MaterializeResult,
    MetadataValue,
    Nothing,
    Output,
    ResourceParam,
    asset,
    multi_asset,
)
from pydantic import Field

from assets.metadata_tables import md_table
from assets.pools import RECONCILIATION
from assets.resource_plans import plan_vs_actual
from assets.validation import validated_expenses, validated_invoices, validated_time_entries
from config.settings import current
from connectors.erp.base import ErpTarget
from connectors.report_upload import UploadError
from connectors.sources.base import SourceError
from reconciliation.compare import ALL, Period, Reconciliation, reconcile
from reconciliation.intercompany import currency_totals, intercompany_reconciliation
from reconciliation.plan_report import has_plans, plan_sheets
from reconciliation.psa_files import Unlanded, unlanded_rows
from reconciliation.report import write_reconciliation_workbook
from reconciliation.report_files import report_url, reports_dir
from reconciliation.revenue import read_revenue_rollforward
from reconciliation.store import load_lines, store_lines
from resources.psa_source import PsaSource
from resources.reports import ReportUpload
from resources.staging import StagingDatabase
from staging_models.desk_breaches import breaches
from staging_models.figures import decimal_text, rate, text_map

IO_MANAGER_KEY = "staging_table_io_manager"
GROUP = "reconciliation"


class ErpProvider(Protocol):
    """What the assets need of the ERP resource (`resources.erp.ErpResource`)."""

    def get_target(self) -> ErpTarget: ...


class ReconciliationConfig(Config):
    date_from: str = Field(
        default="", description="YYYY-MM-DD; empty: 1st of the month `months_back` months ago"
    )
    date_to: str = Field(default="", description="YYYY-MM-DD; empty: today")
    months_back: int = Field(default=2, description="Default period: this and N earlier months")
    legal_entities: list[str] = Field(default_factory=list, description="Empty: all")
    full_export_pattern: str = Field(
        default="",
        description="File-name glob of full PSA exports (deletion detection); "
        "empty: $STAGEPOST_FULL_EXPORT_PATTERN",
    )
    check_psa_inbox: bool = Field(
        default=True, description="Also compare complete PSA files not landed yet"
    )


def resolve_period(config: ReconciliationConfig, today: date) -> Period:
    """The configured period, or the default: from the 1st of `months_back` months ago to today."""
    if config.date_from:
        start = date.fromisoformat(config.date_from)
    else:
        months = today.year * 12 + today.month - 1 - config.months_back
        start = date(months // 12, months % 12 + 1, 1)
    end = date.fromisoformat(config.date_to) if config.date_to else today
    return Period(start, end, tuple(config.legal_entities))


def _by_name(k: pd.DataFrame, kind: str) -> dict[str, int]:
    rows = k[(k["kind"] == kind) & k["currency"].isna()]
    return {n: int(e) for n, e in zip(rows["name"], rows["entries"], strict=True)}


def _key_figure_table(k: pd.DataFrame) -> pd.DataFrame:
    """The scope's figures as the UI shows them: counts and hours over all currencies on
    rows without a currency, amounts on one row per currency; the rate as in the workbook."""
    table = k[k["kind"] != "info"][["kind", "name", "currency", "entries", "hours", "amount"]]
    table = table.rename(columns={"entries": "count"}).astype(object)
    rate_row = (table["kind"] == "kpi") & (table["name"] == "straight_through_rate")
    table.loc[rate_row, "count"] = None
    table["rate"] = None
    approved = int(k.loc[_kpi_row(k, "approved_entries"), "entries"].iloc[0])
    straight = int(k.loc[_kpi_row(k, "straight_through_entries"), "entries"].iloc[0])
    table.loc[rate_row, "rate"] = rate(straight, approved)
    return table


def _kpi_row(k: pd.DataFrame, name: str) -> pd.Series:
    return (k["kind"] == "kpi") & (k["name"] == name) & k["currency"].isna()


def _kpi_metadata(rec: Reconciliation) -> dict:
    """Key figures for the UI, each named by what it counts (entries, rows, invoices, lines);
    amounts exact and per currency (never a sum of several); the rate as in the workbook."""
    k = rec.kpis[rec.kpis["legal_entity"] == ALL]
    approved = int(rec.kpi("approved_entries")["entries"])
    straight = int(rec.kpi("straight_through_entries")["entries"])
    unposted = rec.kpi("approved_not_posted")
    backlog = rec.kpi("invoice_ready_backlog_lines")
    classes = _by_name(k, "class")
    return {
        "period": rec.period.label(),
        "approved_entries": approved,
        "straight_through_entries": straight,
        "straight_through_rate": rate(straight, approved) or "none approved",
        "approved_not_posted_entries": int(unposted["entries"]),
        "approved_not_posted_hours": decimal_text(unposted["hours"] or Decimal(0)),
        "approved_not_posted_amount": MetadataValue.json(
            text_map(rec.amounts("approved_not_posted"))
        ),
        "invoice_ready_backlog_invoices": int(rec.kpi("invoice_ready_backlog_invoices")["entries"]),
        "invoice_ready_backlog_lines": int(backlog["entries"]),
        "invoice_ready_backlog_amount": MetadataValue.json(
            text_map(rec.amounts("invoice_ready_backlog_lines"))
        ),
        "quarantined_entries": classes.get("quarantined", 0),
        "quarantined_rows_without_key": classes.get("quarantined_without_key", 0),
        "entries_by_class": MetadataValue.json(classes),
        "invoices_by_class": MetadataValue.json(_by_name(k, "invoice_class")),
        "expenses_by_class": MetadataValue.json(_by_name(k, "expense_class")),
        "quarantined_rows_by_rule": MetadataValue.json(_by_name(k, "reason")),
        "approved_not_posted_entries_by_age": MetadataValue.json(_by_name(k, "aging")),
        "key_figures": md_table(_key_figure_table(k)),
        "timings_s": MetadataValue.json({k: round(v, 3) for k, v in rec.timings.items()}),
    }


@multi_asset(
    group_name=GROUP,
    pool=RECONCILIATION,
    outs={
        "rec_lines": AssetOut(
            dagster_type=Nothing,
            kinds={"duckdb"},
            description="Exception entries of the latest reconciliation, one class each "
            "(staging table rec_lines, written set-based).",
        ),
        "rec_totals": AssetOut(
            io_manager_key=IO_MANAGER_KEY,
            description="Hours and amounts per legal entity, project, employee and period in "
            "PSA, staging, ledger and ERP, with variances (table rec_totals).",
        ),
        "rec_invoices": AssetOut(
            io_manager_key=IO_MANAGER_KEY,
            description="Invoice proposals vs ERP invoices, with their class (table rec_invoices).",
        ),
        "rec_expenses": AssetOut(
            io_manager_key=IO_MANAGER_KEY,
            description="Expenses vs ERP expense lines, with their class (table rec_expenses).",
        ),
        "rec_kpis": AssetOut(
            io_manager_key=IO_MANAGER_KEY,
            description="Key figures: straight-through rate, classes, quarantine reasons, aging "
            "of approved-but-unposted time, invoice-ready backlog (table rec_kpis).",
        ),
    },
    deps=[validated_time_entries, validated_invoices, validated_expenses],
    can_subset=False,
)
def reconciliation(
    context: AssetExecutionContext,
    config: ReconciliationConfig,
    staging: StagingDatabase,
    psa_source: PsaSource,
    erp: ResourceParam[ErpProvider],
):
    """Three-way reconciliation of the period: PSA, staging (versions, quarantine, ledger), ERP."""
    db = staging.get_db()
    now = datetime.now(UTC)
    period = resolve_period(config, now.date())
    inbox = Unlanded()
    if config.check_psa_inbox:
        try:
            # A scratch folder of this run: fetched copies and transcoded files go with it,
            # and a concurrent ingestion fetching the same file name never shares a path.
            with (
                psa_source.open() as source,
                tempfile.TemporaryDirectory(dir=psa_source.workdir(), prefix=".recon-") as tmp,
            ):
                inbox = unlanded_rows(db, source, fmt=psa_source.file_format(), workdir=Path(tmp))
        except SourceError as e:  # the books can still be compared; say what was not
            context.log.warning(f"PSA inbox not checked: {e}")
            inbox.problems.append(
                f"PSA inbox not checked ({e}): files not landed yet were not compared."
            )
    rec = reconcile(
        db,
        erp.get_target(),
        period,
        now=now,
        unlanded=inbox.rows,
        full_export_pattern=config.full_export_pattern
        or psa_source.full_export_pattern
        or current().full_export_pattern
        or None,
        notes=inbox.problems,
    )
    for note in rec.notes:
        context.log.info(note)
    stored = store_lines(db, rec.lines, context.run.run_id)
    yield Output(
        None,
        output_name="rec_lines",
        metadata={"rows": stored, "period": period.label(), "staging_table": "rec_lines"},
    )
    yield Output(rec.totals, output_name="rec_totals", metadata={"rows": len(rec.totals)})
    yield Output(
        rec.invoices.astype({"backlog": bool}),
        output_name="rec_invoices",
        metadata={"rows": len(rec.invoices)},
    )
    yield Output(
        rec.expenses.astype({"reimbursable": "boolean"}),
        output_name="rec_expenses",
        metadata={"rows": len(rec.expenses)},
    )
    yield Output(rec.kpi_frame(), output_name="rec_kpis", metadata=_kpi_metadata(rec))


class WorkbookConfig(Config):
    per_legal_entity: bool = Field(
        default=True, description="Also write one workbook per legal entity"
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _info(kpis: pd.DataFrame) -> dict[str, str]:
    rows = kpis[kpis["kind"] == "info"]
    return dict(zip(rows["name"], rows["text"], strict=True))


@asset(
    group_name=GROUP,
    pool=RECONCILIATION,
    kinds={"excel"},
    ins={
        "rec_kpis": AssetIn(input_manager_key=IO_MANAGER_KEY),
        "rec_totals": AssetIn(input_manager_key=IO_MANAGER_KEY),
        "rec_invoices": AssetIn(input_manager_key=IO_MANAGER_KEY),
        "rec_expenses": AssetIn(input_manager_key=IO_MANAGER_KEY),
    },
    deps=[AssetKey("rec_lines"), plan_vs_actual],
    description="The controllers' reconciliation workbook (and one per legal entity), "
    "downloadable from the link in the materialization, and uploaded to an SFTP folder "
    "if one is configured. With resource plans, its plan-vs-actual sheets too.",
)
def reconciliation_workbook(
    context: AssetExecutionContext,
    config: WorkbookConfig,
    staging: StagingDatabase,
    erp: ResourceParam[ErpProvider],
    report_upload: ReportUpload,
    rec_kpis: pd.DataFrame,
    rec_totals: pd.DataFrame,
    rec_invoices: pd.DataFrame,
    rec_expenses: pd.DataFrame,
) -> MaterializeResult:
    db = staging.get_db()
    info = _info(rec_kpis)
    notes = [v for k, v in sorted(info.items()) if k.startswith("note_")]
    stamp = f"{info['date_from']}_{info['date_to']}_{context.run.run_id[:8]}"
    folder = reports_dir()
    scopes = [ALL]
    if config.per_legal_entity:
        scopes += sorted(set(rec_kpis["legal_entity"]) - {ALL, "(none)"})
    written: dict[str, dict] = {}
    lines = load_lines(db)
    overdue = breaches(db, datetime.now(UTC).date())
    # Revenue against the ERP's journals: when revenue was computed (revenue_window_job).
    target = erp.get_target()
    try:
        revenue, revenue_notes = read_revenue_rollforward(db, target)
        # Intercompany pairs posted vs expected, each entity's side balanced
        # (docs/intercompany.md).
        ic_detail, ic_balance, ic_notes = intercompany_reconciliation(db, target)
    finally:
        close = getattr(target, "close", None)
        if close:
            close()
    # Totals per transaction currency, and in STAGEPOST_GROUP_CURRENCY where rates exist.
    by_currency, fx_missing, fx_notes = currency_totals(
        db, date.fromisoformat(info["date_from"]), date.fromisoformat(info["date_to"])
    )
    notes = [*notes, *revenue_notes, *ic_notes, *fx_notes]
    plans = has_plans(db)
    for scope in scopes:
        tag = "all" if scope == ALL else _UNSAFE.sub("_", scope)
        path = folder / f"reconciliation_{tag}_{stamp}.xlsx"
        wb = write_reconciliation_workbook(
            path,
            period_label=info["period"],
            kpis=rec_kpis,
            totals=rec_totals,
            invoices=rec_invoices,
            lines=lines,
            notes=notes,
            legal_entity=scope,
            breaches=overdue,
            expenses=rec_expenses,
            revenue=revenue,
            intercompany=(ic_detail, ic_balance),
            currencies=(by_currency, fx_missing),
            plan=plan_sheets(db, None if scope == ALL else scope) if plans else None,
        )
        written[scope] = {"path": str(wb.path), "url": report_url(wb.path.name), "rows": wb.rows}
        context.log.info(f"workbook {scope}: {wb.path}")
    main = written[ALL]
    links = "\n".join(f"- [{scope}]({w['url']})" for scope, w in written.items())
    metadata = {
        "path": MetadataValue.path(main["path"]),
        "download": MetadataValue.url(main["url"]),
        "workbooks": MetadataValue.md(links),
        "sheet_rows": MetadataValue.json(main["rows"]),
        "period": info["period"],
    }
    if report_upload.enabled:
        metadata["sftp"] = MetadataValue.json(_upload(context, report_upload, written))
    return MaterializeResult(metadata=metadata)


def _upload(
    context: AssetExecutionContext, report_upload: ReportUpload, written: dict[str, dict]
) -> dict[str, str]:
    """Upload every workbook just written; on failure they stay in the reports folder, and
    the error says so (re-running the asset writes and uploads them again)."""
    uploaded: dict[str, str] = {}
    with report_upload.open() as target:
        for scope, w in written.items():
            try:
                uploaded[scope] = target.upload(Path(w["path"]))
            except UploadError as exc:  # or RetryableUploadError: keep the class
                kept = ", ".join(each["path"] for each in written.values())
                raise type(exc)(
                    f"{exc}. The workbooks are in the reports folder all the same: {kept}"
                ) from exc
            context.log.info(f"workbook {scope} uploaded to {target.describe()}")
    return uploaded


reconciliation_assets = [reconciliation, reconciliation_workbook]
