"""The reconciliation SQL (DuckDB dialect), over the `r_*` relations of `_inputs`.

Statements create temporary tables `rc_*`; parameters: `$f`, `$t` (period dates) and
`$now` (timestamptz). `{le}`, `{le_p}`, `{le_u}` take the legal-entity filter (on
`legal_entity`, `p.legal_entity`, `pr.legal_entity`).

Two paths, so that a million entries cost little more than one join of the three states:

- fast path (`FAST`): valid current versions ⟗ ledger lines ⟗ ERP lines on the entry id,
  with narrow rows (the first join runs where staging is: `r_valid_ledger`): a row is
  *simple* when the ledger line is a confirmed post of the current version with its hours
  and amount, and the ERP line is that same line (external ID) agreeing with it on version,
  hours, amount, project, date, currency, legal entity and employee (compared as one 64-bit
  fingerprint per side; two different rows share one with odds of about 1 in 1.8e19). An
  entry whose only row is simple is in sync: any further ledger or ERP line, a missing one,
  or a difference makes a non-simple row, because ERP external IDs are unique
  (`TIME_LINE_COLUMNS`). The non-simple entries, every current version that is not valid
  (but the plain not-postable ones: never posted), vanished entries and entries with newer
  content not landed form `rc_k`.
- exact path: `rc_k` (usually a few percent) gets the line-by-line classification below,
  with every ledger and ERP line of its entries. In-sync entries are counted and summed as
  all valid versions (`CUBE`) minus those in `rc_k` (`SYNC`), so every entry counts once;
  never-posted, not-postable entries outside `rc_k` are counted as `not_postable` (`PLAIN`).

Entry classes, first match wins (the order says which discrepancy explains the others):

1. erp_unknown_to_staging  an ERP line the ledger does not know (or never saw confirmed);
2. not_yet_staged          newer content in a PSA file not landed yet, or landed, not validated;
3. posted_missing_in_erp   a line the ledger has confirmed is not in the ERP;
4. changed_in_psa_since_posting  the posted version is not the current one, or the entry is
                           deleted in the PSA (tombstone or vanished from the full export),
                           or now dated in another period while lines here do not net to 0;
5. value_mismatch          posted current version, ERP differs: hours, amount, project, date,
                           currency (listed in `differing_fields`);
6. in_sync                 posted current version, ERP equal;
7. deleted_in_psa          vanished from the full export, never posted (must not be);
8. quarantined, approved_not_posted (valid, no live posting), not_postable (draft, submitted,
   rejected, deleted), in that order.

Rows no entry id and date can place get a class of their own, `quarantined_without_key`
(`KEYLESS`): quarantined current rows without an entry id (dated in the period or without
a readable date), or with an entry id but no readable work date (in every period while
they wait), unless the entry is classified above by its ledger lines. They carry their
file and row (`source_file`, `row_no`); no other class does, as an entry id names those.
"""

from __future__ import annotations

from staging_models.billing_holds import BILLING_HOLD_PREFIX

ENTRY_CLASSES: tuple[str, ...] = (
    "erp_unknown_to_staging",
    "not_yet_staged",
    "posted_missing_in_erp",
    "changed_in_psa_since_posting",
    "value_mismatch",
    "deleted_in_psa",
    "quarantined",
    "approved_not_posted",
    "quarantined_without_key",
    "not_postable",
    "in_sync",
)
#: Entry classes that need someone's attention (a workbook sheet each).
EXCEPTION_CLASSES: tuple[str, ...] = ENTRY_CLASSES[:9]

INVOICE_CLASSES: tuple[str, ...] = (
    "erp_unknown_to_staging",
    "not_yet_staged",
    "posted_missing_in_erp",
    "changed_in_psa_since_posting",
    "value_mismatch",
    "quarantined",
    "billing_hold",
    "ready_not_posted",
    "draft",
    "not_postable",
    "in_sync",
)

#: Expense classes (`EXPENSES`), per expense as invoices are per invoice.
EXPENSE_CLASSES: tuple[str, ...] = (
    "erp_unknown_to_staging",
    "not_yet_staged",
    "posted_missing_in_erp",
    "changed_in_psa_since_posting",
    "value_mismatch",
    "quarantined",
    "approved_not_posted",
    "not_postable",
    "in_sync",
)

_AGE = "GREATEST(0, CAST(floor((epoch($now) - epoch({ts})) / 86400) AS INTEGER))"


def age_sql(ts: str) -> str:
    """Whole days from `ts` to `$now` (never negative)."""
    return _AGE.format(ts=ts)


# -- fast path --------------------------------------------------------------------------------

#: Entries of PSA files not landed yet whose content staging does not have (newer, or new).
#: `{newer}` is the content comparison, or TRUE when there are no such files (skips a scan).
UNLANDED = """
CREATE OR REPLACE TEMP TABLE rc_u AS
SELECT u.entry_id, min(u.file_name) AS u_file, any_value(u.work_date) AS u_work_date,
       any_value(u.hours) AS u_hours, any_value(u.project_code) AS u_project_code,
       any_value(u.employee_id) AS u_employee_id, any_value(u.currency) AS u_currency,
       any_value(pr.legal_entity) AS u_legal_entity
FROM r_unlanded u LEFT JOIN r_projects pr ON pr.project_code = u.project_code
WHERE u.work_date BETWEEN $f AND $t AND {le_u} AND {newer}
GROUP BY u.entry_id
"""
UNLANDED_NEWER = """NOT EXISTS (SELECT 1 FROM r_psa_in p
                                WHERE p.entry_id = u.entry_id AND p.content_hash = u.content_hash)"""


def _fingerprint(version: str) -> str:
    """One 64-bit hash of what must agree between a ledger line and its ERP line, external ID
    included (types normalised first: DuckDB hashes DECIMAL(10,4) and DECIMAL(18,4) of the
    same value differently)."""
    return f"""hash(external_id, CAST({version} AS BIGINT), CAST(hours AS DECIMAL(18,4)),
                CAST(amount AS DECIMAL(18,2)), project_code, work_date, currency, legal_entity,
                employee_id)"""


_ERP_KEY = "COALESCE(entry_id, '?' || external_id)"

#: Entries for the exact path: a row of PSA ⟗ ledger ⟗ ERP that is not simple, every current
#: version that is not valid, vanished entries, and entries with newer content not landed.
#: The ledger line of a version was copied from its validated row when it was planned, so it
#: is compared with the PSA on version, hours and amount, and with the ERP on everything.
FAST = f"""
CREATE OR REPLACE TEMP TABLE rc_k AS
WITH pl AS (
    SELECT entry_id, p_version, p_amount, p_legal_entity, l_ok,
           {_fingerprint("entry_version")} AS fp
    FROM r_valid_ledger
),
e AS (
    SELECT {_ERP_KEY} AS entry_id, {_fingerprint("entry_version")} AS fp, kind = 'post' AS post
    FROM r_erp WHERE {{le}}
),
j AS (
    SELECT COALESCE(pl.entry_id, e.entry_id) AS entry_id, pl.p_version AS version,
           pl.p_amount AS amount, pl.p_legal_entity AS legal_entity,
           COALESCE(pl.l_ok AND e.post AND e.fp = pl.fp, FALSE) AS simple
    FROM pl FULL JOIN e ON e.entry_id = pl.entry_id
),
k AS (
    SELECT entry_id, version, amount, legal_entity FROM j WHERE NOT simple
    UNION ALL SELECT entry_id, NULL, NULL, NULL FROM r_psa_in WHERE state <> 'valid' AND NOT plain
    UNION ALL SELECT entry_id, NULL, NULL, NULL FROM r_vanished
    UNION ALL SELECT entry_id, NULL, NULL, NULL FROM rc_u
)
-- With the validated version, amount and legal entity of those that are valid in the period.
SELECT entry_id, any_value(version) AS v_version, any_value(amount) AS v_amount,
       any_value(legal_entity) AS v_legal_entity
FROM k GROUP BY entry_id
"""

#: Plain not-postable entries (`_inputs._PLAIN`: never posted) that the exact path does not
#: classify (no ERP line, no newer content waiting, not vanished: those are in `rc_k`): class
#: `not_postable`, counted per legal entity and currency with their hours and amount as the
#: exact path would (`PSA`, `LINES`). Such an entry is never approved, so never expected.
PLAIN = """
CREATE OR REPLACE TEMP TABLE rc_plain AS
SELECT legal_entity, currency, COUNT(*) AS n, SUM(COALESCE(hours, 0)) AS hours,
       SUM(psa_amount) AS amount
FROM (
    SELECT COALESCE(pr.legal_entity, em.legal_entity) AS legal_entity, s.currency, s.hours,
           CASE WHEN s.billable AND s.bill_rate IS NOT NULL
                THEN round(s.hours * s.bill_rate, 2) ELSE 0 END AS psa_amount
    FROM r_psa_in s
    LEFT JOIN r_projects pr ON pr.project_code = s.project_code
    LEFT JOIN r_employees em ON em.employee_id = s.employee_id
    WHERE s.plain AND NOT EXISTS (SELECT 1 FROM rc_k k WHERE k.entry_id = s.entry_id)
) p
WHERE {le_p}
GROUP BY legal_entity, currency
"""

#: Every valid current version of the period per project, employee and month (summed where
#: staging is: `_inputs.r_cube`).
CUBE = """
CREATE OR REPLACE TEMP TABLE rc_cube AS SELECT * FROM r_cube
"""

#: The in-sync entries of the fast path, summed: the cube minus the valid versions of `rc_k`.
#: The few exact-path entries are summed on their own and matched to the cube's rows (a join
#: of ~1% of the rows instead of regrouping the whole cube); groups whose count nets to 0 go.
SYNC = """
CREATE OR REPLACE TEMP TABLE rc_sync AS
WITH a AS (
    SELECT project_code, employee_id, year(work_date) * 100 + month(work_date) AS ym,
           any_value(legal_entity) AS legal_entity, any_value(currency) AS currency,
           COUNT(*) AS n, SUM(CAST(ever_quarantined AS INTEGER)) AS nq, SUM(hours) AS hours,
           SUM(v_amount) AS amount
    FROM rc_psa WHERE in_cube
    GROUP BY ALL
),
j AS (
    SELECT COALESCE(c.project_code, a.project_code) AS project_code,
           COALESCE(c.employee_id, a.employee_id) AS employee_id, COALESCE(c.ym, a.ym) AS ym,
           COALESCE(c.legal_entity, a.legal_entity) AS legal_entity,
           COALESCE(c.currency, a.currency) AS currency,
           CAST(COALESCE(c.n, 0) - COALESCE(a.n, 0) AS HUGEINT) AS n,
           CAST(COALESCE(c.nq, 0) - COALESCE(a.nq, 0) AS HUGEINT) AS nq,
           CASE WHEN a.n IS NULL THEN c.hours
                WHEN c.n IS NULL THEN -a.hours ELSE c.hours - a.hours END AS hours,
           CASE WHEN a.n IS NULL THEN c.amount
                WHEN c.n IS NULL THEN -a.amount ELSE c.amount - a.amount END AS amount
    FROM rc_cube c
    FULL JOIN a ON a.project_code IS NOT DISTINCT FROM c.project_code
         AND a.employee_id IS NOT DISTINCT FROM c.employee_id AND a.ym = c.ym
)
SELECT * FROM j WHERE n <> 0
"""

# -- exact path (entries of rc_k) ---------------------------------------------------------------

#: Every ledger and ERP line of the exact-path entries, read once.
K_LEDGER = """
CREATE OR REPLACE TEMP TABLE rc_l AS
SELECT * FROM r_ledger_all WHERE {le} AND entry_id IN (SELECT entry_id FROM rc_k)
"""

#: The current versions of the exact-path entries, whatever their date.
K_PSA = """
CREATE OR REPLACE TEMP TABLE rc_s AS
SELECT * FROM r_psa_all WHERE entry_id IN (SELECT entry_id FROM rc_k)
"""

#: Valid exact-path entries whose validated row the fast path did not carry: dated outside
#: the period, or taken for a reason other than their ledger and ERP lines (vanished, newer
#: content not landed). Rarely any: `compare` skips the scan then (`{any_x}`).
K_VALID_X_ENTRIES = """
SELECT s.entry_id FROM rc_s s JOIN rc_k k ON k.entry_id = s.entry_id
WHERE s.state = 'valid' AND k.v_version IS NULL
"""
K_VALID_X = f"""
CREATE OR REPLACE TEMP TABLE rc_vx AS
SELECT entry_id, version, amount, legal_entity,
       COALESCE(work_date BETWEEN $f AND $t, FALSE) AS in_cube
FROM r_valid_all WHERE {{any_x}} AND entry_id IN ({K_VALID_X_ENTRIES})
"""
# The ERP lines of the exact path are cut out of the Arrow table by `compare` (pyarrow `is_in`
# costs a fraction of a DuckDB scan that would convert every line): relation `rc_e`.

PSA = """
CREATE OR REPLACE TEMP TABLE rc_psa AS
WITH s AS (SELECT * FROM rc_s),
v AS (SELECT entry_id, v_version AS version, v_amount AS amount, v_legal_entity AS legal_entity,
             TRUE AS in_cube
      FROM rc_k WHERE v_version IS NOT NULL
      UNION ALL SELECT * FROM rc_vx),
p AS (
    SELECT s.*, v.amount AS v_amount, COALESCE(v.in_cube, FALSE) AS in_cube,
           COALESCE(v.legal_entity, pr.legal_entity, em.legal_entity) AS legal_entity,
           q.rule_codes, q.messages AS q_messages, q.first_seen AS q_first_seen,
           s.entry_id IN (SELECT row_key FROM r_quarantine) AS ever_quarantined,
           s.entry_id IN (SELECT entry_id FROM r_vanished) AS vanished
    FROM s
    LEFT JOIN v ON v.entry_id = s.entry_id AND v.version = s.version
    LEFT JOIN r_projects pr ON pr.project_code = s.project_code
    LEFT JOIN r_employees em ON em.employee_id = s.employee_id
    LEFT JOIN r_quarantine q ON q.row_key = s.entry_id AND q.version = s.version
         AND q.status IN ('open', 'ignored')
)
SELECT p.*, strftime(p.work_date, '%Y-%m') AS period,
       COALESCE(p.v_amount, CASE WHEN p.billable AND p.bill_rate IS NOT NULL
                                 THEN round(p.hours * p.bill_rate, 2) ELSE 0 END) AS psa_amount,
       COALESCE(p.work_date BETWEEN $f AND $t, FALSE) AS in_period,
       (p.approval_status = 'approved' AND NOT p.deleted AND NOT p.vanished) AS expected
FROM p WHERE {le_p}
"""


def _matched(key: str, columns: str, missing: str = "TRUE") -> str:
    """CTEs `lrev`, `erev` and `j` over ledger lines `l` and ERP lines `e` (time lines or
    invoices): matched on external ID (one full outer join), with what nets them:
    `l_live` / `e_live` (a post no confirmed reversal cancels), `e_unknown` (an ERP document
    the ledger never sent), `l_missing` (confirmed in the ledger, absent in the ERP, and
    `missing`). `key` is the entry or invoice id ('?' + external ID for ERP documents
    without one); `columns`: the further columns of `j`."""
    return f"""lrev AS (SELECT DISTINCT reverses_external_id AS id FROM l
              WHERE kind = 'reversal' AND state = 'confirmed' AND reverses_external_id IS NOT NULL),
     erev AS (SELECT DISTINCT reverses_external_id AS id FROM e
              WHERE kind = 'reversal' AND reverses_external_id IS NOT NULL),
     j AS (
        SELECT COALESCE(l.{key}, e.{key}, '?' || e.external_id) AS {key},
               {columns},
               (l.kind = 'post' AND l.state = 'confirmed' AND lr.id IS NULL) AS l_live,
               (e.kind = 'post' AND er.id IS NULL) AS e_live,
               (e.external_id IS NOT NULL
                AND (l.external_id IS NULL OR l.state NOT IN ('sent', 'confirmed'))) AS e_unknown,
               (l.state = 'confirmed' AND e.external_id IS NULL AND {missing}) AS l_missing
        FROM l FULL JOIN e ON e.external_id = l.external_id
        LEFT JOIN lrev lr ON lr.id = l.external_id
        LEFT JOIN erev er ON er.id = e.external_id
     )"""


# Ledger and ERP lines of the exact-path entries, matched; then one row per entry.
_LINES_MATCHED = _matched(
    "entry_id",
    """l.external_id AS l_id, l.kind AS l_kind, l.entry_version AS l_version,
               l.state AS l_state, l.erp_message, l.hours AS l_hours, l.amount AS l_amount,
               l.settled_at, COALESCE(l.work_date BETWEEN $f AND $t, FALSE) AS l_in_period,
               e.external_id AS e_id, e.entry_version AS e_version, e.hours AS e_hours,
               e.amount AS e_amount, e.project_code AS e_project, e.work_date AS e_work_date,
               e.currency AS e_currency,
               COALESCE(l.legal_entity, e.legal_entity) AS legal_entity,
               COALESCE(l.employee_id, e.employee_id) AS employee_id,
               COALESCE(l.project_code, e.project_code) AS project_code,
               COALESCE(l.work_date, e.work_date) AS work_date,
               COALESCE(l.currency, e.currency) AS currency""",
    # The ERP was read for the period: lines dated outside it cannot be missing.
    missing="l.work_date BETWEEN $f AND $t",
)
_LEDGER_ERP = f"""
WITH l AS (SELECT * FROM rc_l),
     e AS (SELECT * FROM rc_e),
     {_LINES_MATCHED}
SELECT entry_id,
       any_value(legal_entity) AS x_legal_entity, any_value(employee_id) AS x_employee_id,
       any_value(project_code) AS x_project_code, any_value(work_date) AS x_work_date,
       any_value(currency) AS x_currency,
       COUNT(l_id) AS led_lines,
       SUM(l_hours) FILTER (WHERE l_state = 'confirmed') AS led_hours,
       SUM(l_amount) FILTER (WHERE l_state = 'confirmed') AS led_amount,
       SUM(l_hours) FILTER (WHERE l_state = 'confirmed' AND l_in_period) AS led_period_hours,
       SUM(l_amount) FILTER (WHERE l_state = 'confirmed' AND l_in_period) AS led_period_amount,
       MAX(l_version) FILTER (WHERE l_live) AS led_live_version,
       arg_max(l_state, l_version) FILTER (WHERE l_kind = 'post') AS led_state,
       arg_max(erp_message, l_version) FILTER (WHERE l_kind = 'post') AS led_message,
       MAX(settled_at) FILTER (WHERE l_state = 'confirmed') AS led_settled_at,
       COUNT(*) FILTER (WHERE l_missing) AS led_missing,
       string_agg(l_id, ', ') FILTER (WHERE l_missing) AS missing_ids,
       COUNT(e_id) AS erp_lines,
       SUM(e_hours) AS erp_hours, SUM(e_amount) AS erp_amount,
       COUNT(*) FILTER (WHERE e_unknown) AS erp_unknown,
       string_agg(e_id, ', ') FILTER (WHERE e_unknown) AS unknown_ids,
       arg_max(e_project, e_version) FILTER (WHERE e_live) AS erp_project,
       arg_max(e_work_date, e_version) FILTER (WHERE e_live) AS erp_work_date,
       arg_max(e_currency, e_version) FILTER (WHERE e_live) AS erp_currency
FROM j GROUP BY entry_id
"""

LINES = f"""
CREATE OR REPLACE TEMP TABLE rc_lines AS
WITH u AS (SELECT * FROM rc_u),
x AS ({_LEDGER_ERP}),
j AS (
    SELECT COALESCE(p.entry_id, x.entry_id, u.entry_id) AS entry_id,
           p.entry_id IS NOT NULL AS in_psa,
           p.* EXCLUDE (entry_id), x.* EXCLUDE (entry_id), u.* EXCLUDE (entry_id)
    FROM rc_psa p
    FULL JOIN x ON x.entry_id = p.entry_id
    FULL JOIN u ON u.entry_id = COALESCE(p.entry_id, x.entry_id)
),
d AS (
    SELECT j.*,
           CASE WHEN COALESCE(erp_lines, 0) > 0 AND in_psa THEN concat_ws(',',
               CASE WHEN erp_hours <> hours THEN 'hours' END,
               CASE WHEN erp_amount <> psa_amount THEN 'amount' END,
               CASE WHEN erp_project IS DISTINCT FROM project_code THEN 'project' END,
               CASE WHEN erp_work_date IS DISTINCT FROM work_date THEN 'date' END,
               CASE WHEN erp_currency IS DISTINCT FROM currency THEN 'currency' END)
           ELSE '' END AS diff
    FROM j
),
k AS (
    SELECT d.*, CASE
        WHEN COALESCE(erp_unknown, 0) > 0 THEN 'erp_unknown_to_staging'
        WHEN u_file IS NOT NULL OR state = 'pending' THEN 'not_yet_staged'
        WHEN COALESCE(led_missing, 0) > 0 THEN 'posted_missing_in_erp'
        -- Dated in another period now: this period's lines must net to zero.
        WHEN in_psa AND NOT in_period THEN CASE
            WHEN COALESCE(erp_hours, 0) = 0 AND COALESCE(erp_amount, 0) = 0
                 AND COALESCE(led_period_hours, 0) = 0 AND COALESCE(led_period_amount, 0) = 0
            THEN 'in_sync' ELSE 'changed_in_psa_since_posting' END
        WHEN led_live_version IS NOT NULL AND (NOT in_psa OR deleted OR vanished
             OR version <> led_live_version OR state <> 'valid')
            THEN 'changed_in_psa_since_posting'
        WHEN led_live_version IS NOT NULL AND diff <> '' THEN 'value_mismatch'
        WHEN led_live_version IS NOT NULL THEN 'in_sync'
        WHEN vanished AND state IN ('valid', 'quarantined') THEN 'deleted_in_psa'
        WHEN state = 'quarantined' THEN 'quarantined'
        WHEN state = 'valid' THEN 'approved_not_posted'
        WHEN state = 'not_postable' THEN 'not_postable'
        WHEN COALESCE(erp_hours, 0) = 0 AND COALESCE(erp_amount, 0) = 0 THEN 'in_sync'
        ELSE 'value_mismatch' END AS class
    FROM d
),
a AS (
    SELECT k.*, CASE class
        WHEN 'approved_not_posted' THEN {age_sql("approved_at")}
        WHEN 'quarantined' THEN {age_sql("q_first_seen")}
        WHEN 'changed_in_psa_since_posting' THEN {age_sql("landed_at")}
        WHEN 'not_yet_staged' THEN {age_sql("landed_at")}
        WHEN 'deleted_in_psa' THEN {age_sql("landed_at")}
        WHEN 'posted_missing_in_erp' THEN {age_sql("led_settled_at")}
        END AS age_days
    FROM k
)
SELECT entry_id, class,
       COALESCE(legal_entity, x_legal_entity, u_legal_entity) AS legal_entity,
       COALESCE(employee_id, x_employee_id, u_employee_id) AS employee_id, employee_name,
       COALESCE(project_code, x_project_code, u_project_code) AS project_code, task_code,
       COALESCE(work_date, x_work_date, u_work_date) AS work_date,
       strftime(COALESCE(work_date, x_work_date, u_work_date), '%Y-%m') AS period,
       COALESCE(currency, x_currency, u_currency) AS currency,
       version AS psa_version, state AS psa_state, approval_status,
       COALESCE(hours, u_hours) AS psa_hours, psa_amount,
       led_live_version AS posted_version, led_state AS ledger_state,
       led_hours AS ledger_hours, led_amount AS ledger_amount,
       COALESCE(erp_lines, 0) AS erp_lines, erp_hours, erp_amount,
       CASE WHEN COALESCE(expected, FALSE) THEN hours ELSE 0 END - COALESCE(erp_hours, 0)
           AS hours_variance,
       CASE WHEN COALESCE(expected, FALSE) THEN psa_amount ELSE 0 END - COALESCE(erp_amount, 0)
           AS amount_variance,
       NULLIF(diff, '') AS differing_fields,
       rule_codes,
       NULLIF(concat_ws('; ',
           CASE WHEN erp_unknown > 0 THEN 'ERP lines the ledger does not know: ' || unknown_ids END,
           CASE WHEN u_file IS NOT NULL THEN 'newer content in PSA file ' || u_file
                || ', not landed yet' END,
           CASE WHEN state = 'pending' THEN 'landed, not validated yet' END,
           CASE WHEN led_missing > 0 THEN 'confirmed in the ledger, missing in the ERP: '
                || missing_ids END,
           CASE WHEN deleted THEN COALESCE('missing from full PSA export ' || vanished_from
                || ', tombstoned (vanished_from_full_export)', 'deleted in the PSA') END,
           CASE WHEN in_psa AND NOT in_period
                THEN 'now dated ' || CAST(work_date AS VARCHAR) || ', outside this period' END,
           CASE WHEN vanished THEN 'missing from the latest full PSA export '
                || $full_file || ' (deleted in the PSA without notice)' END,
           CASE WHEN NOT in_psa AND led_live_version IS NOT NULL
                THEN 'no longer in the PSA data for this period' END,
           CASE WHEN led_live_version IS NOT NULL AND version <> led_live_version
                THEN 'posted version ' || led_live_version || ', PSA now at version ' || version
                END,
           CASE WHEN state = 'not_postable' AND NOT deleted
                THEN 'approval status ' || approval_status END,
           q_messages,
           CASE WHEN led_state IN ('planned', 'sent', 'held', 'rejected', 'void')
                THEN 'ledger ' || led_state || COALESCE(': ' || led_message, '') END
       ), '') AS reasons,
       approved_at, age_days,
       CASE WHEN class <> 'approved_not_posted' THEN NULL
            WHEN age_days <= 1 THEN '0-1' WHEN age_days <= 7 THEN '2-7'
            WHEN age_days <= 30 THEN '8-30' ELSE '>30' END AS aging_bucket,
       description, CAST(NULL AS VARCHAR) AS source_file, CAST(NULL AS BIGINT) AS row_no,
       COALESCE(expected AND in_period, FALSE) AS approved,
       COALESCE(expected AND in_period AND NOT ever_quarantined
                AND led_live_version = version, FALSE) AS straight_through,
       COALESCE(in_period, TRUE) AS in_period
FROM a
"""

#: Quarantined rows without an entry id or a readable work date (`r_keyless`), as lines of
#: their own class, with file and row. Not approved for the straight-through rate (no
#: entry can be matched to them); counted by their rules among the quarantine reasons.
KEYLESS = f"""
INSERT INTO rc_lines BY NAME
SELECT entry_id, 'quarantined_without_key' AS class, legal_entity, employee_id,
       employee_name, project_code, task_code, work_date,
       strftime(work_date, '%Y-%m') AS period, currency, version AS psa_version,
       'quarantined' AS psa_state, approval_status, hours AS psa_hours, 0 AS erp_lines,
       rule_codes,
       NULLIF(concat_ws('; ',
           CASE WHEN entry_id IS NULL THEN 'no entry id' END,
           CASE WHEN work_date IS NULL THEN 'no readable work date'
                || COALESCE(' (read: ' || raw_work_date || ')', '') END,
           messages), '') AS reasons,
       approved_at, {age_sql("first_seen")} AS age_days, description, source_file, row_no,
       FALSE AS approved, FALSE AS straight_through, TRUE AS in_period
FROM r_keyless
WHERE ({{le}} OR legal_entity IS NULL)
  AND (entry_id IS NULL
       OR entry_id NOT IN (SELECT entry_id FROM rc_lines WHERE entry_id IS NOT NULL))
"""

# Totals: in-sync entries from the cube (equal in all four states), exact-path entries with
# every source at its own dimensions (a line posted to the wrong project shows up in both
# projects), rolled up per dimension in one pass (sums: no finer pre-aggregation needed).
TOTALS = """
CREATE OR REPLACE TEMP TABLE rc_totals AS
WITH sync AS (SELECT * FROM rc_sync),
src AS (
    SELECT legal_entity, currency, project_code, employee_id, ym,
           hours AS psa_hours, amount AS psa_amount, hours AS staging_hours,
           amount AS staging_amount, hours AS ledger_hours, amount AS ledger_amount,
           hours AS erp_hours, amount AS erp_amount
    FROM sync
    UNION ALL BY NAME
    SELECT legal_entity, currency, project_code, employee_id,
           year(work_date) * 100 + month(work_date) AS ym,
           hours AS psa_hours, psa_amount,
           CASE WHEN state = 'valid' THEN hours END AS staging_hours,
           CASE WHEN state = 'valid' THEN psa_amount END AS staging_amount
    FROM rc_psa WHERE in_period AND expected
    UNION ALL BY NAME
    SELECT legal_entity, currency, project_code, employee_id,
           year(work_date) * 100 + month(work_date) AS ym,
           hours AS ledger_hours, amount AS ledger_amount
    FROM rc_l WHERE state = 'confirmed' AND work_date BETWEEN $f AND $t
    UNION ALL BY NAME
    SELECT legal_entity, currency, project_code, employee_id,
           year(work_date) * 100 + month(work_date) AS ym,
           hours AS erp_hours, amount AS erp_amount
    FROM rc_e
),
g AS (
    SELECT CASE WHEN GROUPING(project_code) = 0 THEN 'project'
                WHEN GROUPING(employee_id) = 0 THEN 'employee'
                WHEN GROUPING(ym) = 0 THEN 'period' ELSE 'legal_entity' END AS dimension,
           legal_entity, currency,
           CASE WHEN GROUPING(project_code) = 0 THEN project_code
                WHEN GROUPING(employee_id) = 0 THEN employee_id
                WHEN GROUPING(ym) = 0 THEN printf('%04d-%02d', ym // 100, ym % 100) END
               AS member,
           COALESCE(SUM(psa_hours), 0) AS psa_hours, COALESCE(SUM(staging_hours), 0) AS staging_hours,
           COALESCE(SUM(ledger_hours), 0) AS ledger_hours, COALESCE(SUM(erp_hours), 0) AS erp_hours,
           COALESCE(SUM(psa_amount), 0) AS psa_amount,
           COALESCE(SUM(staging_amount), 0) AS staging_amount,
           COALESCE(SUM(ledger_amount), 0) AS ledger_amount,
           COALESCE(SUM(erp_amount), 0) AS erp_amount
    FROM src
    GROUP BY GROUPING SETS ((legal_entity, currency), (legal_entity, currency, project_code),
                            (legal_entity, currency, employee_id), (legal_entity, currency, ym))
)
SELECT dimension, legal_entity, currency, member,
       psa_hours, staging_hours, ledger_hours, erp_hours,
       psa_hours - staging_hours AS variance_psa_staging_hours,
       staging_hours - erp_hours AS variance_staging_erp_hours,
       ledger_hours - erp_hours AS variance_ledger_erp_hours,
       psa_amount, staging_amount, ledger_amount, erp_amount,
       psa_amount - staging_amount AS variance_psa_staging_amount,
       staging_amount - erp_amount AS variance_staging_erp_amount,
       ledger_amount - erp_amount AS variance_ledger_erp_amount
FROM g
ORDER BY CASE dimension WHEN 'legal_entity' THEN 0 WHEN 'period' THEN 1 WHEN 'project' THEN 2
         ELSE 3 END, legal_entity NULLS LAST, currency NULLS LAST, member NULLS LAST
"""

# Key figures in long form: one row per legal entity ('(all)' for the whole scope), figure
# and currency. A row with `currency` NULL counts over all currencies (entries, hours) and
# has no amount; amounts are only ever summed within one currency, on the rows that name it.
_LE = "CASE WHEN GROUPING(legal_entity) = 1 THEN '(all)' ELSE COALESCE(legal_entity, '(none)') END"
_CUR = "CASE WHEN GROUPING(currency) = 1 THEN NULL ELSE COALESCE(currency, '(none)') END"


def _per_currency(amount: str) -> str:
    return f"CASE WHEN GROUPING(currency) = 1 THEN NULL ELSE {amount} END"


def _sets(*dims: str) -> str:
    """Grouping sets of `dims` with and without legal entity, each with and without currency."""
    out = []
    for le in ((), ("legal_entity",)):
        for cur in ((), ("currency",)):
            out.append("(" + ", ".join((*le, *dims, *cur)) + ")")
    return "GROUPING SETS (" + ", ".join(out) + ")"


KPIS = f"""
WITH l AS (SELECT * FROM rc_lines),
c AS (  -- per legal entity, currency and class; in-sync entries of the fast path, one row each
    SELECT legal_entity, currency, class, COUNT(*) AS n,
           SUM(COALESCE(psa_hours, erp_hours, 0)) AS h,
           SUM(COALESCE(psa_amount, erp_amount)) AS a,  -- unknown amounts (no rate) stay unknown
           COUNT(*) FILTER (WHERE approved) AS approved,
           COUNT(*) FILTER (WHERE straight_through) AS straight
    FROM l GROUP BY legal_entity, currency, class
    UNION ALL
    SELECT legal_entity, currency, 'in_sync', SUM(n), SUM(hours), SUM(amount), SUM(n), SUM(n - nq)
    FROM rc_sync GROUP BY legal_entity, currency
    UNION ALL
    SELECT legal_entity, currency, 'not_postable', n, hours, amount, 0, 0 FROM rc_plain
),
kpi AS (
    SELECT {_LE} AS le, {_CUR} AS cur, GROUPING(currency) = 1 AS all_cur,
           SUM(approved) AS approved, SUM(straight) AS straight,
           COALESCE(SUM(n) FILTER (WHERE class = 'approved_not_posted'), 0) AS unposted,
           SUM(h) FILTER (WHERE class = 'approved_not_posted') AS unposted_hours,
           {_per_currency("SUM(a) FILTER (WHERE class = 'approved_not_posted')")}
               AS unposted_amount
    FROM c GROUP BY {_sets()}
)
SELECT le AS legal_entity, cur AS currency, 'kpi' AS kind,
       'approved_entries' AS name, approved AS entries, NULL AS hours, NULL AS amount,
       NULL::DOUBLE AS value FROM kpi WHERE all_cur
UNION ALL
SELECT le, cur, 'kpi', 'straight_through_entries', straight, NULL, NULL, NULL
FROM kpi WHERE all_cur
UNION ALL
SELECT le, cur, 'kpi', 'straight_through_rate', NULL, NULL, NULL,
       CASE WHEN approved > 0 THEN straight::DOUBLE / approved END FROM kpi WHERE all_cur
UNION ALL
SELECT le, cur, 'kpi', 'approved_not_posted', unposted, COALESCE(unposted_hours, 0),
       CASE WHEN all_cur THEN NULL ELSE COALESCE(unposted_amount, 0) END, NULL
FROM kpi WHERE all_cur OR unposted > 0
UNION ALL
SELECT {_LE}, {_CUR}, 'class', class, SUM(n), SUM(h), {_per_currency("SUM(a)")}, NULL
FROM c GROUP BY {_sets("class")}
UNION ALL
SELECT {_LE}, {_CUR}, 'aging', aging_bucket, COUNT(*), SUM(psa_hours),
       {_per_currency("SUM(psa_amount)")}, NULL
FROM l WHERE class = 'approved_not_posted'
GROUP BY {_sets("aging_bucket")}
UNION ALL
SELECT {_LE}, {_CUR}, 'reason', rule_code, COUNT(*), SUM(psa_hours),
       {_per_currency("SUM(psa_amount)")}, NULL
FROM (SELECT legal_entity, currency, psa_hours, psa_amount,
             unnest(string_split(rule_codes, ',')) AS rule_code
      FROM l WHERE psa_state = 'quarantined' AND rule_codes IS NOT NULL) r
GROUP BY {_sets("rule_code")}
UNION ALL
SELECT {_LE}, {_CUR}, 'invoice_class', class, COUNT(*), NULL,
       {_per_currency("SUM(COALESCE(psa_amount, erp_amount, 0))")}, NULL
FROM rc_invoices GROUP BY {_sets("class")}
UNION ALL
SELECT {_LE}, {_CUR}, 'expense_class', class, COUNT(*), NULL,
       {_per_currency("SUM(COALESCE(psa_amount, erp_amount, 0))")}, NULL
FROM rc_expenses GROUP BY {_sets("class")}
UNION ALL  -- expense totals per currency: valid in staging, confirmed in the ledger, in the ERP
SELECT {_LE}, {_CUR}, 'expense_total', t.name, COUNT(*), NULL,
       {_per_currency("COALESCE(SUM(t.amount), 0)")}, NULL
FROM rc_expenses r, LATERAL (VALUES
    ('staging_valid', CASE WHEN r.psa_state = 'valid' THEN r.psa_amount END),
    ('ledger_confirmed', r.ledger_amount),
    ('erp', r.erp_amount),
    ('variance', COALESCE(CASE WHEN r.psa_state = 'valid' THEN r.psa_amount END, 0)
                 - COALESCE(r.erp_amount, 0)),
    ('rebill_staging_valid', CASE WHEN r.psa_state = 'valid' THEN r.psa_rebill_amount END),
    ('rebill_erp', r.erp_rebill_amount)) t(name, amount)
GROUP BY {_sets("t.name")}
UNION ALL
SELECT {_LE}, {_CUR}, 'kpi', 'invoice_ready_backlog_lines', COALESCE(SUM(lines), 0), NULL,
       {_per_currency("COALESCE(SUM(psa_amount), 0)")}, NULL
FROM rc_invoices WHERE backlog GROUP BY {_sets()}
UNION ALL
SELECT {_LE}, {_CUR}, 'kpi', 'invoice_ready_backlog_invoices', COUNT(*), NULL,
       {_per_currency("COALESCE(SUM(psa_amount), 0)")}, NULL
FROM rc_invoices WHERE backlog GROUP BY {_sets()}
"""


def _nets(erp_count: str) -> str:
    """Per document (invoice, expense), from its matched ledger and ERP lines `j`
    (`_matched`): the ledger's confirmed amount, the live posted version, its post's state and
    message, what the ledger confirmed but the ERP lacks, and the ERP's lines (`erp_count`),
    net amount and lines the ledger never sent."""
    return f"""SUM(l_amount) FILTER (WHERE l_state = 'confirmed') AS ledger_amount,
           MAX(l_version) FILTER (WHERE l_live) AS posted_version,
           arg_max(l_state, l_version) FILTER (WHERE l_kind = 'post') AS ledger_state,
           arg_max(erp_message, l_version) FILTER (WHERE l_kind = 'post') AS ledger_message,
           MAX(settled_at) FILTER (WHERE l_state = 'confirmed') AS settled_at,
           COUNT(*) FILTER (WHERE l_missing) AS led_missing,
           string_agg(l_id, ', ') FILTER (WHERE l_missing) AS missing_ids,
           COUNT(e_id) AS {erp_count}, SUM(e_amount) AS erp_amount,
           COUNT(*) FILTER (WHERE e_unknown) AS erp_unknown,
           string_agg(e_id, ', ') FILTER (WHERE e_unknown) AS unknown_ids"""


_INVOICES_MATCHED = _matched(
    "invoice_id",
    """l.external_id AS l_id, l.kind AS l_kind, l.invoice_version AS l_version,
           l.state AS l_state, l.erp_message, l.total_amount AS l_amount, l.settled_at,
           e.external_id AS e_id, e.invoice_version AS e_version, e.total_amount AS e_amount,
           e.status AS e_status, e.project_code AS e_project, e.customer_id AS e_customer,
           e.currency AS e_currency,
           COALESCE(l.legal_entity, e.legal_entity) AS x_legal_entity,
           COALESCE(l.project_code, e.project_code) AS x_project_code,
           COALESCE(l.customer_id, e.customer_id) AS x_customer_id,
           COALESCE(l.currency, e.currency) AS x_currency,
           COALESCE(l.issue_date, e.issue_date) AS x_issue_date""",
)

INVOICES = f"""
CREATE OR REPLACE TEMP TABLE rc_invoices AS
WITH p AS (
    SELECT invoice_id, CAST(SUM(version) AS BIGINT) AS psa_version, COUNT(*) AS lines,
           COUNT(*) FILTER (WHERE state = 'valid') AS valid_lines,
           COUNT(*) FILTER (WHERE state = 'quarantined') AS quarantined_lines,
           COUNT(*) FILTER (WHERE state = 'pending') AS pending_lines,
           COUNT(*) FILTER (WHERE state = 'not_postable') AS not_postable_lines,
           COUNT(*) FILTER (WHERE status = 'released') AS released_lines,
           COUNT(*) FILTER (WHERE status = 'draft') AS draft_lines,
           COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled_lines,
           min(legal_entity) AS legal_entity, min(project_code) AS project_code,
           min(customer_id) AS customer_id, min(currency) AS currency,
           min(issue_date) AS issue_date, SUM(COALESCE(v_amount, amount)) AS psa_amount,
           string_agg(DISTINCT rule_codes, ',') AS rule_codes,
           string_agg(q_messages, '; ') AS q_messages,
           max(landed_at) AS landed_at
    FROM r_inv_psa WHERE {{le}} GROUP BY invoice_id
),
l AS (SELECT * FROM r_inv_ledger WHERE {{le}}),
e AS (SELECT * FROM r_inv_erp WHERE {{le}}),
{_INVOICES_MATCHED},
x AS (
    SELECT invoice_id, any_value(x_legal_entity) AS x_legal_entity,
           any_value(x_project_code) AS x_project_code, any_value(x_customer_id) AS x_customer_id,
           any_value(x_currency) AS x_currency, any_value(x_issue_date) AS x_issue_date,
           {_nets("erp_documents")},
           bool_or(l_state = 'held' AND erp_message LIKE '{BILLING_HOLD_PREFIX}%')
               AS billing_held,
           arg_max(erp_message, l_version) FILTER (
               WHERE l_state = 'held' AND erp_message LIKE '{BILLING_HOLD_PREFIX}%')
               AS hold_message,
           arg_max(e_status, e_version) FILTER (WHERE e_live) AS erp_status,
           arg_max(e_project, e_version) FILTER (WHERE e_live) AS erp_project,
           arg_max(e_customer, e_version) FILTER (WHERE e_live) AS erp_customer,
           arg_max(e_currency, e_version) FILTER (WHERE e_live) AS erp_currency
    FROM j GROUP BY invoice_id
),
b AS (
    SELECT COALESCE(p.invoice_id, x.invoice_id) AS invoice_id, p.invoice_id IS NOT NULL AS in_psa,
           p.* EXCLUDE (invoice_id), x.* EXCLUDE (invoice_id),
           COALESCE(p.valid_lines = p.lines AND p.released_lines = p.lines, FALSE) AS ready,
           CASE WHEN COALESCE(x.erp_documents, 0) > 0 AND p.invoice_id IS NOT NULL THEN concat_ws(',',
               CASE WHEN x.erp_amount <> p.psa_amount THEN 'amount' END,
               CASE WHEN x.erp_project IS DISTINCT FROM p.project_code THEN 'project' END,
               CASE WHEN x.erp_customer IS DISTINCT FROM p.customer_id THEN 'customer' END,
               CASE WHEN x.erp_currency IS DISTINCT FROM p.currency THEN 'currency' END)
           ELSE '' END AS diff
    FROM p FULL JOIN x ON x.invoice_id = p.invoice_id
),
k AS (
    SELECT b.*, CASE
        WHEN COALESCE(erp_unknown, 0) > 0 THEN 'erp_unknown_to_staging'
        WHEN COALESCE(pending_lines, 0) > 0 THEN 'not_yet_staged'
        WHEN COALESCE(led_missing, 0) > 0 THEN 'posted_missing_in_erp'
        WHEN posted_version IS NOT NULL AND (NOT in_psa OR psa_version <> posted_version
             OR not_postable_lines > 0 OR cancelled_lines > 0)
            THEN 'changed_in_psa_since_posting'
        WHEN posted_version IS NOT NULL AND diff <> '' THEN 'value_mismatch'
        WHEN posted_version IS NOT NULL THEN 'in_sync'
        WHEN quarantined_lines > 0 THEN 'quarantined'
        WHEN not_postable_lines > 0 OR cancelled_lines > 0 THEN 'not_postable'
        WHEN COALESCE(billing_held, FALSE) THEN 'billing_hold'
        WHEN ready THEN 'ready_not_posted'
        WHEN draft_lines > 0 THEN 'draft'
        WHEN COALESCE(erp_amount, 0) = 0 THEN 'in_sync'
        ELSE 'value_mismatch' END AS class
    FROM b
)
SELECT invoice_id, class,
       COALESCE(legal_entity, x_legal_entity) AS legal_entity,
       COALESCE(project_code, x_project_code) AS project_code,
       COALESCE(customer_id, x_customer_id) AS customer_id,
       COALESCE(currency, x_currency) AS currency,
       COALESCE(issue_date, x_issue_date) AS issue_date,
       psa_version, COALESCE(lines, 0) AS lines, COALESCE(valid_lines, 0) AS valid_lines,
       COALESCE(quarantined_lines, 0) AS quarantined_lines,
       COALESCE(released_lines, 0) AS released_lines, psa_amount,
       posted_version, ledger_state, ledger_amount,
       COALESCE(erp_documents, 0) AS erp_documents, erp_amount, erp_status,
       COALESCE(psa_amount, 0) - COALESCE(erp_amount, 0) AS amount_variance,
       NULLIF(diff, '') AS differing_fields, rule_codes,
       NULLIF(concat_ws('; ',
           CASE WHEN erp_unknown > 0 THEN 'ERP documents the ledger does not know: '
                || unknown_ids END,
           CASE WHEN pending_lines > 0 THEN pending_lines || ' lines landed, not validated yet'
                END,
           CASE WHEN led_missing > 0 THEN 'confirmed in the ledger, missing in the ERP: '
                || missing_ids END,
           CASE WHEN NOT in_psa AND posted_version IS NOT NULL
                THEN 'no longer in the PSA data for this period' END,
           CASE WHEN posted_version IS NOT NULL AND psa_version <> posted_version
                THEN 'posted version ' || posted_version || ', PSA now at version ' || psa_version
                END,
           CASE WHEN cancelled_lines > 0 THEN cancelled_lines || ' lines cancelled in the PSA' END,
           q_messages,
           CASE WHEN ledger_state IN ('planned', 'sent', 'held', 'rejected', 'void')
                THEN 'ledger ' || ledger_state || COALESCE(': ' || ledger_message, '') END,
           CASE WHEN billing_held AND hold_message IS DISTINCT FROM ledger_message
                THEN 'ledger held: ' || hold_message END
       ), '') AS reasons,
       CASE class WHEN 'ready_not_posted' THEN {age_sql("CAST(issue_date AS TIMESTAMPTZ)")}
                  WHEN 'billing_hold' THEN {age_sql("CAST(issue_date AS TIMESTAMPTZ)")}
                  WHEN 'posted_missing_in_erp' THEN {age_sql("settled_at")}
                  WHEN 'changed_in_psa_since_posting' THEN {age_sql("landed_at")} END AS age_days,
       ready AND (posted_version IS NULL OR posted_version <> psa_version) AS backlog
FROM k
"""


_EXPENSES_MATCHED = _matched(
    "expense_id",
    """l.external_id AS l_id, l.kind AS l_kind, l.expense_version AS l_version,
           l.state AS l_state, l.erp_message, l.amount AS l_amount, l.settled_at,
           e.external_id AS e_id, e.expense_version AS e_version, e.amount AS e_amount,
           e.rebill_amount AS e_rebill, e.project_code AS e_project,
           e.employee_id AS e_employee, e.currency AS e_currency,
           e.expense_date AS e_date,
           COALESCE(l.legal_entity, e.legal_entity) AS x_legal_entity,
           COALESCE(l.employee_id, e.employee_id) AS x_employee_id,
           COALESCE(l.project_code, e.project_code) AS x_project_code,
           COALESCE(l.category, e.category) AS x_category,
           COALESCE(l.currency, e.currency) AS x_currency,
           COALESCE(l.expense_date, e.expense_date) AS x_expense_date""",
)

#: One row per expense of the period (its current version dated in it, or a ledger line), its
#: ledger lines and its lines in the ERP netted (a reversal cancels its line), with its class.
EXPENSES = f"""
CREATE OR REPLACE TEMP TABLE rc_expenses AS
WITH p AS (SELECT * FROM r_exp_psa WHERE {{le}}),
l AS (SELECT * FROM r_exp_ledger WHERE {{le}}),
e AS (SELECT * FROM r_exp_erp WHERE {{le}}),
{_EXPENSES_MATCHED},
x AS (
    SELECT expense_id, any_value(x_legal_entity) AS x_legal_entity,
           any_value(x_employee_id) AS x_employee_id,
           any_value(x_project_code) AS x_project_code, any_value(x_category) AS x_category,
           any_value(x_currency) AS x_currency, any_value(x_expense_date) AS x_expense_date,
           {_nets("erp_lines")}, SUM(e_rebill) AS erp_rebill_amount,
           arg_max(e_project, e_version) FILTER (WHERE e_live) AS erp_project,
           arg_max(e_employee, e_version) FILTER (WHERE e_live) AS erp_employee,
           arg_max(e_currency, e_version) FILTER (WHERE e_live) AS erp_currency,
           arg_max(e_date, e_version) FILTER (WHERE e_live) AS erp_date
    FROM j GROUP BY expense_id
),
b AS (
    SELECT COALESCE(p.expense_id, x.expense_id) AS expense_id, p.expense_id IS NOT NULL AS in_psa,
           p.* EXCLUDE (expense_id), x.* EXCLUDE (expense_id),
           CASE WHEN COALESCE(x.erp_lines, 0) > 0 AND p.expense_id IS NOT NULL THEN concat_ws(',',
               CASE WHEN x.erp_amount IS DISTINCT FROM p.psa_amount THEN 'amount' END,
               CASE WHEN x.erp_rebill_amount IS DISTINCT FROM p.psa_rebill_amount
                    THEN 'rebill_amount' END,
               CASE WHEN x.erp_project IS DISTINCT FROM p.project_code THEN 'project' END,
               CASE WHEN x.erp_employee IS DISTINCT FROM p.employee_id THEN 'employee' END,
               CASE WHEN x.erp_currency IS DISTINCT FROM p.currency THEN 'currency' END,
               CASE WHEN x.erp_date IS DISTINCT FROM p.expense_date THEN 'expense_date' END)
           ELSE '' END AS diff
    FROM p FULL JOIN x ON x.expense_id = p.expense_id
),
k AS (
    SELECT b.*, CASE
        WHEN COALESCE(erp_unknown, 0) > 0 THEN 'erp_unknown_to_staging'
        WHEN psa_state = 'pending' THEN 'not_yet_staged'
        WHEN COALESCE(led_missing, 0) > 0 THEN 'posted_missing_in_erp'
        WHEN posted_version IS NOT NULL AND (NOT in_psa OR psa_version <> posted_version
             OR psa_state = 'not_postable') THEN 'changed_in_psa_since_posting'
        WHEN posted_version IS NOT NULL AND diff <> '' THEN 'value_mismatch'
        WHEN posted_version IS NOT NULL THEN 'in_sync'
        WHEN psa_state = 'quarantined' THEN 'quarantined'
        WHEN psa_state = 'not_postable' THEN 'not_postable'
        WHEN psa_state = 'valid' THEN 'approved_not_posted'
        WHEN COALESCE(erp_amount, 0) = 0 THEN 'in_sync'
        ELSE 'value_mismatch' END AS class
    FROM b
)
SELECT expense_id, class,
       COALESCE(legal_entity, x_legal_entity) AS legal_entity,
       COALESCE(employee_id, x_employee_id) AS employee_id,
       COALESCE(project_code, x_project_code) AS project_code,
       COALESCE(category, x_category) AS category,
       COALESCE(currency, x_currency) AS currency,
       COALESCE(expense_date, x_expense_date) AS expense_date,
       psa_version, psa_state, approval_status, psa_amount, psa_rebill_amount, reimbursable,
       receipt_ref, posted_version, ledger_state, ledger_amount,
       COALESCE(erp_lines, 0) AS erp_lines, erp_amount, erp_rebill_amount,
       COALESCE(CASE WHEN psa_state = 'valid' THEN psa_amount END, 0)
           - COALESCE(erp_amount, 0) AS amount_variance,
       NULLIF(diff, '') AS differing_fields, rule_codes,
       NULLIF(concat_ws('; ',
           CASE WHEN erp_unknown > 0 THEN 'ERP lines the ledger does not know: '
                || unknown_ids END,
           CASE WHEN psa_state = 'pending' THEN 'landed, not validated yet' END,
           CASE WHEN led_missing > 0 THEN 'confirmed in the ledger, missing in the ERP: '
                || missing_ids END,
           CASE WHEN NOT in_psa AND posted_version IS NOT NULL
                THEN 'no longer in the PSA data for this period' END,
           CASE WHEN posted_version IS NOT NULL AND psa_version <> posted_version
                THEN 'posted version ' || posted_version || ', PSA now at version ' || psa_version
                END,
           CASE WHEN psa_state = 'not_postable' AND posted_version IS NOT NULL
                THEN 'deleted or no longer approved in the PSA: the next window reverses it' END,
           q_messages,
           CASE WHEN ledger_state IN ('planned', 'sent', 'held', 'rejected', 'void')
                THEN 'ledger ' || ledger_state || COALESCE(': ' || ledger_message, '') END
       ), '') AS reasons,
       CASE class WHEN 'approved_not_posted' THEN {age_sql("approved_at")}
                  WHEN 'posted_missing_in_erp' THEN {age_sql("settled_at")}
                  WHEN 'changed_in_psa_since_posting' THEN {age_sql("landed_at")} END AS age_days
FROM k
"""
