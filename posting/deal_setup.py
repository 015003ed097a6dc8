"""Project set-up from won CRM deals: customer, project and template tasks in the ERP, exactly
once, and a project-import file for the PSA.

A deal is set up when its current version is `valid` (it passed the contracts of
`staging_models.contracts`, `DEAL_*`) and its stage is `won`. The posting discipline holds:

1. **Ledger first.** In one staging transaction every deal to set up (new, changed since, or
   left `sending` by a killed run) gets its `deal_setups` row marked `sending` with the version
   and the values it is set up with. Only then does the ERP see it.
2. **Look up before create.** `ErpTarget.set_up_projects` asks the ERP for the deals'
   external IDs (`customer:<customer_id>`, the project code = the deal id, `<project>::<task>`)
   and creates only what is missing; a later version writes the fields that may change
   (`documents.PROJECT_UPDATABLE`: dates, budget, contract value, manager, ...). A run killed
   anywhere re-runs into the same IDs: nothing is created twice.
3. **Confirm.** The ERP's ids and the applied version are recorded (`set_up` or `updated`).
4. **PSA import file.** The projects whose applied version the PSA has not been sent are
   written as canonical `projects` and `project_tasks` CSVs to the outbound folder, each whole
   under a temporary name and then renamed, and the rows record the file. A kill before the
   record writes them again (with the same content) on the next run.

What may not change after set-up (currency, customer, template; the legal entity once time is
posted) is quarantined by `DEAL_IMMUTABLE_CHANGED` before it reaches this module; `deal_setups`
then says `quarantined` with the reason, and the ERP keeps the set-up version.

`deal_setups` (deal_id, erp_customer_id, erp_project_id, status, reason, updated_at) is the
set-up status the billing loop's status feedback reports to the CRM.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from config.settings import current
from connectors.erp.base import ErpError, ErpTarget
from connectors.erp.documents import CUSTOMER, PROJECT, PROJECT_TASK
from connectors.sources.canonical import DATASETS
from connectors.sql import load_temp, read_frame
from staging_models.db import StagingDB, data_dir

#: Prefix of a customer's external ID (Tryton's party; the SQL target's customer_id).
CUSTOMER_PREFIX = "customer:"
#: Points a test may stop the run at (SIGKILL), in order.
STEPS = ("planned", "erp_done", "recorded", "psa_written")

_IDS_SCHEMA = pa.schema(
    [
        ("deal_id", pa.string()),
        ("erp_customer_id", pa.string()),
        ("erp_project_id", pa.string()),
    ]
)

# Current, valid, won deals the ERP does not hold at their version yet (or a run left sending).
_TODO = """
    FROM stg_crm_deals d LEFT JOIN deal_setups s ON s.deal_id = d.row_key
    WHERE d.is_current AND d.state = 'valid'
      AND (s.applied_version IS NULL OR s.applied_version <> d.version
           OR s.status IN ('sending', 'failed'))
"""


@dataclass
class DealSetupResult:
    """What one set-up run did, per deal (deal ids, sorted)."""

    set_up: list[str] = field(default_factory=list)  # created in the ERP (first version)
    updated: list[str] = field(default_factory=list)  # a later version applied
    quarantined: list[str] = field(default_factory=list)  # current version quarantined (all)
    failed: dict[str, str] = field(default_factory=dict)  # deal -> the ERP's message
    psa_files: list[Path] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.set_up) + len(self.updated)


def outbound_dir() -> Path:
    """Where the PSA import files go (`STAGEPOST_DEAL_OUTBOUND_DIR`, else `<data>/outbound/psa`)."""
    configured = current().deal_outbound_dir
    return configured.resolve() if configured else data_dir() / "outbound" / "psa"


def outbound_name(kind: str, now: datetime) -> str:
    """`projects_deals_20261120T120000.000000Z.csv`: the canonical dataset first (the PSA's import
    and stagepost's own inbox take files by that prefix), then when it was written."""
    return f"{kind}_deals_{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}.csv"


def write_whole(path: Path, frame: pd.DataFrame) -> Path:
    """Write a CSV under a hidden temporary name in the same folder, then rename it: a reader
    of the folder sees the whole file or none. (The billing loop's outbound delivery, with
    SFTP and status feedback, is `connectors/outbound/`; this is the local write only.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def run_deal_setup(
    db: StagingDB,
    erp: ErpTarget,
    outbound: Path,
    *,
    now: datetime | None = None,
    run_id: str | None = None,
    hooks: Callable[[str], None] | None = None,
) -> DealSetupResult:
    """Set up every won, valid deal not yet in the ERP at its current version; write the PSA
    import file; record the status of every deal (see the module's docstring)."""
    now = now or datetime.now(UTC)
    hook = hooks or (lambda _step: None)
    out = DealSetupResult()

    # 1. Ledger first: the deals to send, committed `sending` before the ERP sees them.
    with db.begin() as conn:
        conn.execute(
            sa.text(
                f"""INSERT INTO deal_setups (deal_id, project_code, sending_version, customer_id,
                        legal_entity, currency, template_code, customer_external_id,
                        project_external_id, status, reason, run_id, updated_at)
                    SELECT d.row_key, d.row_key, d.version, d.customer_id, d.legal_entity,
                           d.currency, d.template_code, '{CUSTOMER_PREFIX}' || d.customer_id,
                           d.row_key, 'sending', NULL, :run, :now
                    {_TODO}
                    ON CONFLICT (deal_id) DO UPDATE SET
                        sending_version = excluded.sending_version,
                        customer_id = excluded.customer_id,
                        legal_entity = excluded.legal_entity,
                        currency = excluded.currency,
                        template_code = excluded.template_code,
                        customer_external_id = excluded.customer_external_id,
                        project_external_id = excluded.project_external_id,
                        status = 'sending', reason = NULL, run_id = excluded.run_id,
                        updated_at = excluded.updated_at"""
            ),
            {"run": run_id, "now": now},
        )
        customers, projects, tasks = _documents(conn)
    hook("planned")
    if projects.empty:
        return _finish(db, out, outbound, now, hook, run_id)

    # 2. The ERP: look up, create what is missing, update what may change.
    try:
        ids = erp.set_up_projects(customers, projects, tasks)
    except ErpError as exc:  # ErpUnavailable included: the next run sends them again
        message = str(exc)
        with db.begin() as conn:
            conn.execute(
                sa.text(
                    """UPDATE deal_setups SET status = 'failed', reason = :m, updated_at = :now
                       WHERE status = 'sending'"""
                ),
                {"m": message, "now": now},
            )
        out.failed = dict.fromkeys(projects["project_code"].astype(str), message)
        return _finish(db, out, outbound, now, hook, run_id)
    hook("erp_done")

    # 3. Confirm: the ERP's ids and the applied version.
    ids = ids.rename(columns={"project_code": "deal_id"}).astype(str)
    with db.begin() as conn:
        load_temp(conn, "tmp_deal_ids", ids, _IDS_SCHEMA)
        done = read_frame(
            conn,
            """SELECT s.deal_id, s.applied_version IS NULL AS is_new
               FROM deal_setups s JOIN tmp_deal_ids i ON i.deal_id = s.deal_id
               WHERE s.status = 'sending' ORDER BY s.deal_id""",
        )
        conn.execute(
            sa.text(
                """UPDATE deal_setups SET
                       status = CASE WHEN applied_version IS NULL THEN 'set_up' ELSE 'updated' END,
                       applied_version = sending_version, sending_version = NULL,
                       erp_customer_id = i.erp_customer_id, erp_project_id = i.erp_project_id,
                       set_up_at = coalesce(set_up_at, :now), reason = NULL, updated_at = :now
                   FROM tmp_deal_ids i
                   WHERE deal_setups.deal_id = i.deal_id AND deal_setups.status = 'sending'"""
            ),
            {"now": now},
        )
    out.set_up = done.loc[done["is_new"].astype(bool), "deal_id"].tolist()
    out.updated = done.loc[~done["is_new"].astype(bool), "deal_id"].tolist()
    hook("recorded")

    # 4. The PSA import file.
    return _finish(db, out, outbound, now, hook, run_id)


def _finish(
    db: StagingDB,
    out: DealSetupResult,
    outbound: Path,
    now: datetime,
    hook: Callable[[str], None],
    run_id: str | None,
) -> DealSetupResult:
    """Write the PSA import file of what the ERP holds; record and name the deals whose current
    version is quarantined."""
    out.psa_files = _write_psa_files(db, outbound, now, hook)
    _record_quarantined(db, now, run_id)
    out.quarantined = db.query_df(
        "SELECT deal_id FROM deal_setups WHERE status = 'quarantined' ORDER BY deal_id"
    )["deal_id"].tolist()
    return out


def _documents(conn: sa.Connection) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The customers, projects and template tasks of the deals marked `sending`."""
    sending = """FROM stg_crm_deals d JOIN deal_setups s
                 ON s.deal_id = d.row_key AND s.status = 'sending'
                 AND d.version = s.sending_version"""
    customers = read_frame(
        conn,
        f"""SELECT d.customer_id, min(d.customer_name) AS customer_name {sending}
            GROUP BY d.customer_id ORDER BY d.customer_id""",
    )[list(CUSTOMER.names)]
    projects = read_frame(
        conn,
        f"""SELECT d.row_key AS project_code, coalesce(d.deal_name, d.row_key) AS project_name,
                   d.customer_id, d.legal_entity, d.currency, d.billing_method, d.start_date,
                   d.end_date, d.budget_hours, d.contract_value, d.project_manager,
                   d.row_key AS deal_id
            {sending} ORDER BY d.row_key""",
    )[list(PROJECT.names)]
    tasks = read_frame(
        conn,
        f"""SELECT d.row_key AS project_code, t.task_code, t.task_name
            {sending} JOIN stg_project_templates t ON t.is_current AND t.state = 'valid'
                       AND t.template_code = d.template_code
            ORDER BY d.row_key, t.task_code""",
    )[list(PROJECT_TASK.names)]
    return customers, projects, tasks


def _record_quarantined(db: StagingDB, now: datetime, run_id: str | None) -> None:
    """Deals whose current version is quarantined: status `quarantined` with the rules'
    messages as the reason. A deal set up before keeps its set-up values (the ERP keeps the
    applied version); one never set up gets a row without them (nothing locked). A deal still
    `sending` (a killed run's) is confirmed first: the ERP may hold it already."""
    reason = """(SELECT min(q.rule_codes || ': ' || q.messages) FROM quarantine q
                 WHERE q.dataset = 'crm_deals' AND q.row_key = d.row_key
                   AND q.version = d.version AND q.status = 'open')"""
    with db.begin() as conn:
        conn.execute(
            sa.text(
                f"""INSERT INTO deal_setups (deal_id, project_code, status, reason, run_id,
                                             updated_at)
                    SELECT d.row_key, d.row_key, 'quarantined', {reason}, :run, :now
                    FROM stg_crm_deals d
                    LEFT JOIN deal_setups s ON s.deal_id = d.row_key
                    WHERE d.is_current AND d.state = 'quarantined' AND NOT d.key_missing
                      AND (s.deal_id IS NULL OR s.status NOT IN ('quarantined', 'sending')
                           OR (s.status = 'quarantined' AND s.reason IS DISTINCT FROM {reason}))
                    ON CONFLICT (deal_id) DO UPDATE SET status = 'quarantined',
                        reason = excluded.reason, run_id = excluded.run_id,
                        updated_at = excluded.updated_at"""
            ),
            {"run": run_id, "now": now},
        )


def _psa_frames(conn: sa.Connection, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The set-up projects the PSA has not been sent at their applied version, in the
    canonical `projects` and `project_tasks` layouts."""
    pending = """FROM deal_setups s JOIN stg_crm_deals d
                 ON d.row_key = s.deal_id AND d.version = s.applied_version
                 AND s.applied_version IS NOT NULL
                 AND s.psa_version IS DISTINCT FROM s.applied_version"""
    projects = read_frame(
        conn,
        f"""SELECT d.row_key AS project_code, coalesce(d.deal_name, d.row_key) AS project_name,
                   d.customer_id, d.customer_name, d.legal_entity, d.currency, d.billing_method,
                   'open' AS status, d.start_date, d.end_date, d.project_manager,
                   d.contract_value, nullif(d.budget_hours, 0) AS budget_hours
            {pending} ORDER BY d.row_key""",
    )
    tasks = read_frame(
        conn,
        f"""SELECT d.row_key AS project_code, t.task_code, t.task_name, t.billable
            {pending}
            JOIN stg_project_templates t ON t.is_current AND t.state = 'valid'
             AND t.template_code = d.template_code
            ORDER BY d.row_key, t.task_code""",
    )
    projects["updated_at"] = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tasks["billable"] = tasks["billable"].map({True: "true", False: "false"})
    # Every column of the canonical layouts; what a deal does not carry (the manager's e-mail,
    # a billing hold, the recognition method, a cost budget) stays empty. Its contract value
    # and budget hours are the revenue recognition's (docs/revenue.md; a budget of 0 h is
    # left empty: the projects' contract refuses it).
    return (
        projects.reindex(columns=list(DATASETS["projects"].layout)),
        tasks.reindex(columns=list(DATASETS["project_tasks"].layout)),
    )


def _write_psa_files(
    db: StagingDB, outbound: Path, now: datetime, hook: Callable[[str], None]
) -> list[Path]:
    """Write the PSA import files (projects, then project_tasks) and record them."""
    with db.engine.connect() as conn:
        projects, tasks = _psa_frames(conn, now)
    if projects.empty:
        return []
    files = [
        write_whole(outbound / outbound_name("projects", now), projects),
        write_whole(outbound / outbound_name("project_tasks", now), tasks),
    ]
    hook("psa_written")
    with db.begin() as conn:
        conn.execute(
            sa.text(
                """UPDATE deal_setups SET psa_file = :f, psa_version = applied_version
                   WHERE applied_version IS NOT NULL
                     AND psa_version IS DISTINCT FROM applied_version
                     AND deal_id IN :ids"""
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"f": files[0].name, "ids": projects["project_code"].astype(str).tolist()},
        )
    return files


__all__ = ["STEPS", "DealSetupResult", "outbound_dir", "run_deal_setup", "write_whole"]
