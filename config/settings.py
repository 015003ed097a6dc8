"""Every STAGEPOST_* environment variable, in one validated model, read once.

Before, ~50 variables were read by `os.environ.get` in eight modules at different times:
`STAGEPOST_DONE_MARKERS=1` silently read as false, and a bad port or JSON value stopped the
code location with a bare `ValueError` that did not say which variable. Here each variable is
a typed field; `current()` validates them all together and a bad value fails at start-up with
one line per variable, naming it, what was given and what it expects.

This module imports no Dagster and nothing of stagepost that could import it back (the
staging database and the report server read their settings here too). Secrets are `SecretStr`
so that the model never prints them; the resources still get them as Dagster `EnvVar`s
(`pipelines/settings.py`), resolved at run time and never shown in the UI.

The README's configuration table is generated from the field descriptions:
`python -m config.settings` prints it, and `tests/test_settings.py` checks that the
README holds exactly that table.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.full_export_range import FullExportError, parse_range
from config.posting_hours import PostingHoursError, parse_posting_hours
from connectors.sources.limits import FileLimits

PREFIX = "STAGEPOST_"


class SettingsError(ValueError):
    """One or more environment variables hold values stagepost cannot use; the message names
    each variable, the value given (never a secret's) and what it expects."""


# -- value types ------------------------------------------------------------------------------

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _flag(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def _json_object(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from None


def _delimiter(value: Any) -> Any:
    """`tab` or `\\t` for a tab (hard to type in a .env file)."""
    return "\t" if isinstance(value, str) and value.lower() in {"tab", "\\t"} else value


def _encoding(value: Any) -> Any:
    try:
        codecs.lookup(str(value))
    except LookupError:
        raise ValueError("unknown encoding") from None
    return value


def _timezone(value: Any) -> Any:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown timezone") from None
    return value


_MEMORY = re.compile(r"\s*\d+(\.\d+)?\s*(b|kb|mb|gb|tb|kib|mib|gib|tib|%)\s*", re.IGNORECASE)


def _memory(value: Any) -> Any:
    if not _MEMORY.fullmatch(str(value)):
        raise ValueError("not an amount of memory")
    return value


def _posting_hours(value: Any) -> Any:
    try:
        parse_posting_hours(str(value) or None)
    except PostingHoursError as e:
        raise ValueError(str(e)) from None
    return value


def _share(value: Any) -> Any:
    """Kept as text (an exact decimal, never a float); checked to be a share."""
    try:
        share = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not (share.is_finite() and 0 <= share <= 1):
        raise ValueError("not between 0 and 1")
    return str(value).strip()


def _amount(value: Any) -> Any:
    """Kept as text (an exact decimal, never a float): a non-negative amount to the cent."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not (amount.is_finite() and amount >= 0 and amount == amount.quantize(Decimal("0.01"))):
        raise ValueError("not an amount of 0 or more with at most 2 decimals")
    return str(value).strip()


def _names(value: Any) -> Any:
    """A comma-separated list of names, trimmed and lower-cased; none empty."""
    if isinstance(value, str):
        value = value.split(",")
    names = tuple(str(v).strip().lower() for v in value)
    if not names or any(not n for n in names):
        raise ValueError("an empty name")
    return names


def _percent(value: Any) -> Any:
    """Kept as text (an exact decimal): a percentage from 0 to 1000, at most 4 decimals."""
    try:
        pct = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not (pct.is_finite() and 0 <= pct <= 1000 and pct == pct.quantize(Decimal("0.0001"))):
        raise ValueError("not a percentage from 0 to 1000 with at most 4 decimals")
    return str(value).strip()


def _rate_card(value: Any) -> Any:
    """A JSON object of role to a rate (text, an exact decimal with at most 4 decimals)."""
    value = _json_object(value)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    out = {}
    for role, rate in value.items():
        try:
            r = Decimal(str(rate).strip())
        except InvalidOperation:
            raise ValueError(f"rate of {role!r} is not a number") from None
        if not (r.is_finite() and r >= 0 and r == r.quantize(Decimal("0.0001"))):
            raise ValueError(f"rate of {role!r} is not 0 or more with at most 4 decimals")
        out[str(role)] = str(rate).strip()
    return out


def _currency_code(value: Any) -> Any:
    text = str(value).strip().upper()
    if text and not re.fullmatch(r"[A-Z]{3}", text):
        raise ValueError("not an ISO 4217 currency code")
    return text


#: Expense categories known unless `STAGEPOST_EXPENSE_CATEGORIES` says otherwise.
EXPENSE_CATEGORIES = (
    "travel",
    "lodging",
    "meals",
    "mileage",
    "transport",
    "software",
    "supplies",
    "other",
)


def _date_range(value: Any) -> Any:
    if str(value).strip():
        try:
            parse_range(str(value))
        except FullExportError as e:
            raise ValueError(str(e)) from None
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]
Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(gt=0)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: A retention age; 0 (like unset) keeps forever, so a value can be switched off in place.
Days = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def setting(default: Any, meaning: str, expects: str, shown: str | None = None, **kw: Any) -> Any:
    """A field with what the README says about it: its meaning, what it expects (also in
    error messages) and its default as a reader should see it (`shown`, else the value)."""
    if shown is None:
        shown = f"`{str(default).lower() if isinstance(default, bool) else default}`"
    extra = {"expects": expects, "shown": shown}
    if "default_factory" in kw:
        return Field(description=meaning, json_schema_extra=extra, **kw)
    return Field(default, description=meaning, json_schema_extra=extra, **kw)


TEXT = "text"
FOLDER = "a folder path"
FILE = "a file path"
FLAG = "true or false (also 1/0, yes/no)"
PORT = "a port number, 1-65535"
DAYS = "days, 0 or more (0 keeps forever)"
KEEP = "keep forever"


class Settings(BaseSettings):
    """stagepost's deployment settings; field `x` is the variable `STAGEPOST_X`."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,  # VAR= (empty) means unset: its default
        extra="ignore",
        validate_default=False,
    )

    # -- where state lives --------------------------------------------------------------------
    data_dir: Path = setting(
        Path("data"), "local state: staging file, inbox, reports", FOLDER, "`./data`"
    )
    staging_url: str = setting(
        "",
        "staging database URL (`duckdb:///...` or `postgresql://user@host/db`)",
        "a duckdb:/// or postgresql:// URL",
        "`duckdb:///<data>/staging.duckdb`",
    )
    staging_password: SecretStr | None = setting(
        None, "staging database password (secret; kept out of the URL)", TEXT, "—"
    )
    duckdb_memory_limit: Annotated[str, BeforeValidator(_memory)] = setting(
        "1GB",
        "cap DuckDB's memory per process (it spills to the temp directory beyond): a run of "
        "5M entries stays under 2.5 GB peak RSS; `80%` is DuckDB's own default",
        "an amount such as 512MB, 1GB, 2GiB or 50%",
    )
    duckdb_temp_directory: str = setting(
        "",
        "where DuckDB spills what exceeds its memory limit (give it the disk space of the "
        "staging file)",
        FOLDER,
        "`<staging file>.tmp` beside the staging file",
    )

    # -- the PSA source -----------------------------------------------------------------------
    source_kind: Literal["local", "sftp"] = setting(
        "local", "where PSA exports arrive: a local folder or an SFTP folder", "local or sftp"
    )
    source_name: Annotated[str, Field(min_length=1)] = setting(
        "psa", "the source's name, recorded with every load", TEXT
    )
    inbox: str = setting(
        "",
        "folder the PSA drops files into (local, or remote with sftp)",
        FOLDER,
        "`<data>/inbox`",
    )
    archive: str = setting("", "folder landed files are moved to", FOLDER, "`<inbox>/archive`")
    rejected: str = setting(
        "",
        "where refused files are set aside, each with a `.reason.txt`",
        FOLDER,
        "`rejected` beside the archive",
    )
    done_markers: Flag = setting(False, "only take a file once `NAME.done` exists", FLAG)
    stable_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = setting(
        5.0,
        "otherwise: a file must be unchanged this long before it is taken (local: by its own "
        "timestamps, no wait for older files); `0` turns the wait off",
        "seconds, 0 or more",
        "`5` (local and sftp)",
    )
    sftp_host: str = setting("", "sftp source: the server", "a host name", "—")
    sftp_port: Port = setting(22, "sftp source: its port", PORT)
    sftp_user: str = setting("", "sftp source: the user", TEXT, "—")
    sftp_key: str = setting("", "sftp source: the private key file", FILE, "—")
    sftp_key_passphrase: SecretStr | None = setting(
        None, "sftp source: the key's passphrase (secret)", TEXT, "—"
    )
    sftp_known_hosts: str = setting(
        "", "sftp source: the known_hosts file holding the server's key", FILE, "—"
    )

    # -- how the PSA writes its files ---------------------------------------------------------
    encoding: Annotated[str, BeforeValidator(_encoding)] = setting(
        "utf-8", "CSV encoding, e.g. `cp1252`", "an encoding Python knows"
    )
    delimiter: Annotated[str, BeforeValidator(_delimiter), Field(min_length=1)] = setting(
        ",", "CSV delimiter, e.g. `;` or `tab`", "a character, or tab"
    )
    decimal_comma: Flag = setting(False, "CSV numbers are written `1.234,50`", FLAG)
    sheet: str | None = setting(None, "XLSX: the sheet name", TEXT, "the first sheet")
    header_row: Positive = setting(1, "XLSX: the header's row number", "a whole number, 1 or more")
    mapping: str = setting(
        "",
        "vendor mapping(s): a shipped name (`harvest`, `toggl`, `clockify`, `kimai`, "
        "`solidtime`) or a TOML path; several separated by `,` (each takes its own vendor "
        "file names; see docs/sources.md)",
        "mapping names or file paths, separated by commas",
        "none (canonical format)",
    )
    mapping_file: str = setting(
        "",
        "the older name of `STAGEPOST_MAPPING` (used when that is unset)",
        "a file path or mapping name",
        "none (canonical format)",
    )
    source_timezone: Annotated[str, BeforeValidator(_timezone)] = setting(
        "UTC",
        "the zone the source's people work in: a mapping's `timezone = \"source\"` (the local "
        "work date of solidtime's UTC start times)",
        "an IANA timezone, e.g. Europe/Berlin",
    )
    default_legal_entity: str | None = setting(
        None,
        "legal entity of projects and employees derived from a vendor export, or pulled from a "
        "vendor API, that does not say (after a mapping's `[[project_defaults]]`)",
        TEXT,
        "none (such rows are quarantined)",
    )
    default_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = setting(
        None,
        "currency of vendor-export or API entries and derived projects that neither the row, "
        "the header nor a mapping's `[[project_defaults]]` give (never assumed otherwise)",
        "an ISO 4217 code, e.g. EUR",
        "none (such rows are quarantined)",
    )
    max_file_rows: Positive = setting(
        FileLimits.max_rows,
        "a file with more records is refused whole (XLSX stops reading at the first one over)",
        "a whole number, 1 or more",
    )
    max_cell_bytes: Positive = setting(
        FileLimits.max_cell_bytes,
        "a file holding a longer value (UTF-8 bytes) is refused",
        "a whole number, 1 or more",
    )
    max_uncompressed_bytes: Positive = setting(
        FileLimits.max_uncompressed_bytes,
        "an XLSX (any part, or all parts), gzip file or ZIP export (a member, or all it "
        "unpacks) inflating past this is refused before it is read",
        "a whole number, 1 or more",
        f"`{FileLimits.max_uncompressed_bytes}` (1 GiB)",
    )
    max_compression_ratio: Seconds = setting(
        FileLimits.max_compression_ratio,
        "an XLSX part, gzip stream or ZIP export's member inflating more than this many times "
        "its compressed size (judged past 4 MiB inflated) is refused as a bomb",
        "a number more than 0",
        f"`{FileLimits.max_compression_ratio:g}`",
    )
    sensor_interval: Positive = setting(
        60, "seconds between polls of the inbox sensor", "whole seconds, 1 or more"
    )

    # -- full exports -------------------------------------------------------------------------
    full_export_pattern: str = setting(
        "",
        "file-name glob of full time-entry exports, whose missing entries become tombstones "
        "(see *Data contracts*)",
        "a file-name glob",
        "none",
    )
    full_export_range: Annotated[str, BeforeValidator(_date_range)] = setting(
        "",
        "work dates a full export covers, `2026-11-01..2026-11-30`, when its file name holds "
        "no dates",
        "FROM..TO dates",
        "the file's first to last work date",
    )
    full_export_max_delete_share: Annotated[str, BeforeValidator(_share)] = setting(
        "0.05",
        "a full export lacking more than this share of its range's entries is held for "
        "`confirm_full_export_job`",
        "a share from 0 to 1, e.g. 0.05",
    )

    # -- expenses (docs/expenses.md) -----------------------------------------------------------
    expense_receipt_required_above: Annotated[str, BeforeValidator(_amount)] = setting(
        "75.00",
        "an expense of more than this amount (in its own currency) needs a receipt reference, "
        "else it is quarantined (`EXP_RECEIPT_MISSING`)",
        "an amount with at most 2 decimals, 0 or more",
    )
    expense_categories: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_names)] = setting(
        EXPENSE_CATEGORIES,
        "the expense categories finance books (`EXP_CATEGORY_UNKNOWN` for any other; "
        "compared case-insensitively)",
        "names separated by commas",
        f"`{','.join(EXPENSE_CATEGORIES)}`",
    )

    # -- API sources (docs/sources_api.md) -------------------------------------------------------
    harvest_token: SecretStr | None = setting(
        None, "Harvest API v2: a personal access token (secret); set, Harvest is pulled", TEXT, "—"
    )
    harvest_account_id: str = setting(
        "", "Harvest: the account id (`Harvest-Account-Id`)", TEXT, "—"
    )
    harvest_url: str = setting(
        "https://api.harvestapp.com/v2", "Harvest: the API's base URL", "an http(s):// URL"
    )
    harvest_user_agent: str = setting(
        "stagepost",
        "Harvest: the `User-Agent` it requires, e.g. `stagepost (ops@example.com)`",
        TEXT,
    )
    toggl_token: SecretStr | None = setting(
        None, "Toggl Track API v9: the API token (secret); set, Toggl is pulled", TEXT, "—"
    )
    toggl_url: str = setting(
        "https://api.track.toggl.com/api/v9", "Toggl: the API's base URL", "an http(s):// URL"
    )
    toggl_workspace_id: str = setting(
        "",
        "Toggl: a workspace id; set, the workspace's entries of every member are pulled through "
        "the Reports API v3 with an admin's token (by work date; deletions found by the nightly "
        "full pull); unset, the token owner's own entries through `/me/time_entries`",
        TEXT,
        "—",
    )
    clockify_token: SecretStr | None = setting(
        None, "Clockify: the API key (secret); set, Clockify is pulled", TEXT, "—"
    )
    clockify_workspace_id: str = setting("", "Clockify: the workspace id", TEXT, "—")
    clockify_url: str = setting(
        "https://api.clockify.me/api/v1",
        "Clockify: the API's base URL (regional: e.g. `https://euc1.clockify.me/api/v1`)",
        "an http(s):// URL",
    )
    kimai_token: SecretStr | None = setting(
        None, "Kimai: an API token (secret); set with the URL, Kimai is pulled", TEXT, "—"
    )
    kimai_url: str = setting(
        "", "Kimai: the server, e.g. `https://kimai.example.com`", "an http(s):// URL", "—"
    )
    api_lookback_days: Days = setting(
        3.0,
        "API pulls ask again for this many days before the cursor (entries edited back-dated "
        "or synced late)",
        "days, 0 or more",
        "`3`",
    )
    api_initial_days: Annotated[float, Field(gt=0, allow_inf_nan=False)] = setting(
        30.0,
        "the first API pull of a source reaches this many days back",
        "days, more than 0",
        "`30`",
    )
    api_full_pull_days: Positive = setting(
        31,
        "the nightly full pull (APIs without deletions: Harvest, Clockify, Kimai) covers this "
        "many days of work dates; entries it lacks become tombstones",
        "whole days, 1 or more",
    )
    api_timezone: Annotated[str, BeforeValidator(_timezone)] = setting(
        "UTC",
        "the zone whose local date of an entry's start is its work date (Toggl, Clockify)",
        "an IANA timezone, e.g. Europe/Berlin",
    )
    api_approval: Literal["submitted", "approved"] = setting(
        "submitted",
        "entries of APIs without approval (Toggl, Kimai, Clockify without approvals) land as "
        "`submitted` (not postable) or `approved` (approved at their last change; "
        "`approved_at_source` says so)",
        "submitted or approved",
    )

    # -- schedules ----------------------------------------------------------------------------
    timezone: Annotated[str, BeforeValidator(_timezone)] = setting(
        "UTC", "timezone of the schedules", "an IANA timezone, e.g. Europe/Berlin"
    )

    # -- the ERP and posting ------------------------------------------------------------------
    erp_kind: Literal["sql", "tryton"] = setting(
        "sql",
        "posting target: SQL interface tables or a Tryton server (see *ERPs*)",
        "sql or tryton",
    )
    erp_url: str = setting(
        "",
        "sql: `duckdb:///...` or `postgresql://...`; tryton: `http://host:8000`",
        "a URL",
        "sql: `duckdb:///<data>/erp_interface.duckdb`",
    )
    erp_password: SecretStr | None = setting(
        None, "ERP password (secret; kept out of the URL)", TEXT, "—"
    )
    erp_database: str = setting("", "tryton: the database name", TEXT, "—")
    erp_user: str = setting("admin", "tryton: the user", TEXT)
    erp_legal_entities: Annotated[dict[str, int], NoDecode, BeforeValidator(_json_object)] = (
        setting(
            None,
            'tryton: company id per legal entity, JSON, e.g. `{"US01": 1, "DE01": 2}`',
            'a JSON object of legal entity to company id, e.g. {"US01": 1}',
            "by company name",
            default_factory=dict,
        )
    )
    erp_expense_clearing_account: Annotated[int, Field(gt=0)] | None = setting(
        None,
        "tryton: the account id company-paid (not reimbursable) expenses are credited to, e.g. "
        "the company card's clearing account",
        "a Tryton account id",
        "none (such expenses are rejected, naming this setting)",
    )
    posting_hours: Annotated[str, BeforeValidator(_posting_hours)] = setting(
        "",
        "allowed posting hours, e.g. `mon-fri 17:00-20:00 Europe/Berlin` (several separated by "
        "`;`)",
        "day ranges, hours and a timezone, e.g. mon-fri 17:00-20:00 Europe/Berlin",
        "any time",
    )
    closed_period_policy: Literal["next_open", "hold"] = setting(
        "next_open",
        "a line dated in a closed ERP period: `next_open` books it into the next open period, "
        "`hold` keeps it until the period reopens",
        "next_open or hold",
    )
    revenue_accounts: Annotated[
        dict[str, dict[str, str]], NoDecode, BeforeValidator(_json_object)
    ] = setting(
        None,
        "revenue journals' accounts per legal entity (`*`: every entity) and role (`wip`, "
        '`revenue`, `unbilled`, `deferred`), JSON, e.g. `{"DE01": {"revenue": "8400"}}`; '
        "see docs/revenue.md",
        "a JSON object of legal entity to an object of role to account code",
        '`{"*": {"wip": "1460", "revenue": "4000", "unbilled": "1450", "deferred": "2900"}}`',
        default_factory=dict,
    )
    # -- intercompany time and exchange rates (docs/intercompany.md) ------------------------------
    intercompany_policy: Literal["quarantine", "intercompany"] = setting(
        "quarantine",
        "an entry whose employee belongs to another legal entity than its project: "
        "`quarantine` (`TE_LEGAL_ENTITY_MISMATCH`), or `intercompany`: posted to the customer "
        "as usual plus an intercompany pair (payable in the project's entity, receivable in "
        "the employee's) at the transfer price",
        "quarantine or intercompany",
    )
    intercompany_transfer_price: Literal["cost_plus", "rate_card"] = setting(
        "cost_plus",
        "the intercompany transfer rate per hour: `cost_plus` the employee's `cost_rate` plus "
        "`STAGEPOST_INTERCOMPANY_MARKUP_PERCENT`, or `rate_card` the employee's role in "
        "`STAGEPOST_INTERCOMPANY_RATE_CARD`; in the employee's currency, rounded half up to 4 "
        "decimals",
        "cost_plus or rate_card",
    )
    intercompany_markup_percent: Annotated[str, BeforeValidator(_percent)] = setting(
        "0",
        "cost-plus markup on the employee's cost rate, in percent",
        "a number from 0 to 1000 with at most 4 decimals",
    )
    intercompany_rate_card: Annotated[dict[str, str], NoDecode, BeforeValidator(_rate_card)] = (
        setting(
            None,
            "the transfer rate card: the employee's role to a rate per hour in the employee's "
            'currency (`*`: any other role), JSON, e.g. `{"senior": "120.00", "*": "90.00"}`',
            "a JSON object of role to a rate with at most 4 decimals",
            "`{}`",
            default_factory=dict,
        )
    )
    intercompany_accounts: Annotated[
        dict[str, dict[str, str]], NoDecode, BeforeValidator(_json_object)
    ] = setting(
        None,
        "intercompany pairs' accounts per legal entity (`*`: every entity) and role "
        "(`ic_cost`, `ic_payable`, `ic_receivable`, `ic_revenue`), JSON",
        "a JSON object of legal entity to an object of role to account code",
        '`{"*": {"ic_cost": "5400", "ic_payable": "2400", "ic_receivable": "1400", '
        '"ic_revenue": "4400"}}`',
        default_factory=dict,
    )
    fx_rate_date: Literal["work_date", "month_end"] = setting(
        "work_date",
        "which date's exchange rate converts an entry: its work date, or the last day of its "
        "month (an entry then waits, quarantined by `TE_FX_RATE_MISSING`, until that rate lands)",
        "work_date or month_end",
    )
    fx_max_age_days: Annotated[int, Field(ge=0, le=366)] = setting(
        7,
        "the latest rate on or before that date is taken if it is at most this many days older "
        "(0: that date's rate only); the rate date used is recorded and shown",
        "days, 0 to 366",
    )
    group_currency: Annotated[str, BeforeValidator(_currency_code)] = setting(
        "",
        "the reconciliation workbook also totals in this currency where rates exist "
        "(each line's rate date shown; a line without a rate is shown as such, never "
        "converted at 1); empty: totals per transaction currency only",
        "an ISO 4217 currency code",
        "none",
    )
    billing_hold_time_and_expenses: Literal["post", "hold"] = setting(
        "post",
        "time lines (and expense lines) of a project on a billing hold (its invoices are "
        "always held): `post` posts them, `hold` holds them with the invoices until the hold "
        "is lifted",
        "post or hold",
    )
    preview_dir: str = setting("", "posting preview workbooks", FOLDER, "`<data>/previews`")
    posting_lock_stale_seconds: Seconds = setting(
        900.0,
        "a posting window's lock held by another host is taken over after this long without "
        "heartbeat (same host: at once when the holder's process is gone or a zombie)",
        "seconds, more than 0",
        "`900`",
    )

    deal_outbound_dir: Path | None = setting(
        None,
        "project set-up from won CRM deals: the PSA import files (canonical `projects` and "
        "`project_tasks` CSVs of the projects set up or changed) are written here",
        FOLDER,
        "`<data>/outbound/psa`",
    )

    # -- workbooks ----------------------------------------------------------------------------
    reports_dir: Path | None = setting(
        None,
        "where reconciliation workbooks are written and served from",
        FOLDER,
        "`<data>/reports`",
    )
    reports_sftp_folder: str = setting(
        "", "upload each workbook to this SFTP folder too", FOLDER, "none (no upload)"
    )
    reports_sftp_host: str | None = setting(
        None, "workbook upload: the server", "a host name", "`STAGEPOST_SFTP_HOST`"
    )
    reports_sftp_port: Port | None = setting(
        None, "workbook upload: its port", PORT, "`STAGEPOST_SFTP_PORT`"
    )
    reports_sftp_user: str | None = setting(
        None, "workbook upload: the user", TEXT, "`STAGEPOST_SFTP_USER`"
    )
    reports_sftp_key: str | None = setting(
        None, "workbook upload: the private key file", FILE, "`STAGEPOST_SFTP_KEY`"
    )
    reports_sftp_key_passphrase: SecretStr | None = setting(
        None,
        "workbook upload: the key's passphrase (secret)",
        TEXT,
        "`STAGEPOST_SFTP_KEY_PASSPHRASE`",
    )
    reports_sftp_known_hosts: str | None = setting(
        None, "workbook upload: the known_hosts file", FILE, "`STAGEPOST_SFTP_KNOWN_HOSTS`"
    )

    # -- status fed back to the PSA/CRM (docs/status_feedback.md) ------------------------------
    feedback_dir: Path | None = setting(
        None,
        "where status feedback files (CSV, JSON Lines, manifest) are written",
        FOLDER,
        "`<data>/feedback`",
    )
    feedback_sftp_folder: str = setting(
        "",
        "write the status feedback files into this SFTP folder instead, with the PSA source's "
        "`STAGEPOST_SFTP_*` server, key and known_hosts",
        FOLDER,
        "none (the local folder)",
    )
    feedback_webhook_url: SecretStr | None = setting(
        None,
        "push every status delivery to this HTTP endpoint too (secret: it may carry a token)",
        "an http:// or https:// URL",
        "none (no push)",
    )
    feedback_webhook_attempts: Positive = setting(
        5,
        "attempts per webhook push (backoff 0.5 s doubling, at most 30 s) before it goes to "
        "the dead-letter table",
        "a whole number, more than 0",
    )

    # -- resource plans (docs/resource_plans.md) -----------------------------------------------
    weekly_capacity_hours: Annotated[
        Decimal, Field(gt=0, le=168, decimal_places=4, allow_inf_nan=False)
    ] = setting(
        Decimal("40"),
        "plan vs actual: hours a week an employee can work, for utilization (billable actual "
        "hours over capacity), unless the employee's `weekly_capacity_hours` says otherwise",
        "hours, more than 0 and at most 168, at most 4 decimals",
    )

    # -- the finance desk (docs/desk.md) -------------------------------------------------------
    desk_host: str = setting(
        "127.0.0.1",
        "address the desk listens on (`0.0.0.0` only behind a TLS proxy)",
        "an IP address or host name",
    )
    desk_port: Port = setting(
        3001, "port of the desk (worklist, window history, downloads of workbooks)", PORT
    )
    desk_base_url: str = setting(
        "",
        "the desk's address as users reach it, behind a proxy (workbook links in Dagster)",
        "an http:// or https:// URL",
        "`http://127.0.0.1:<port>`",
    )
    desk_quiet: Flag = setting(False, "the desk logs no requests", FLAG)
    desk_session_secret: SecretStr | None = setting(
        None,
        "key signing the desk's session cookies (secret; every desk process needs the same)",
        "32 or more characters",
        "random, kept in `<data>/.desk_secret`",
    )
    desk_session_minutes: Positive = setting(
        480, "a desk session expires this long after sign-in", "minutes, more than 0"
    )
    desk_secure_cookies: Flag = setting(
        False, "session cookies only over HTTPS (set behind a TLS proxy)", FLAG
    )
    desk_proxy_user_header: str = setting(
        "",
        "trust this request header (e.g. `X-Forwarded-User`) as the signed-in user, set by a "
        "reverse proxy that authenticates; the user must exist in the desk (its role)",
        "a header name",
        "none (password sign-in)",
    )
    desk_routing: Annotated[dict[str, Any], NoDecode, BeforeValidator(_json_object)] = setting(
        {},
        "owners of exceptions: JSON with `rules` (rule code to team), `project_manager` (true: "
        "the project's manager from master data), `datasets` (dataset to team), `entities` "
        "(legal entity to team), `default`; first match in that order",
        "a JSON object",
        "every exception to `finance-ops`",
        default_factory=dict,
    )
    desk_service_days: Annotated[dict[str, Any], NoDecode, BeforeValidator(_json_object)] = setting(
        {},
        "business days to fix an exception, per rule class (`format`, `master_data`, "
        "`data`) as JSON; a row breaking several rules gets the shortest",
        "a JSON object of whole days",
        '`{"format": 1, "master_data": 2, "data": 3}`',
        default_factory=dict,
    )
    desk_dagster_url: str = setting(
        "http://127.0.0.1:3000",
        "the Dagster webserver the desk launches re-validation through (GraphQL)",
        "an http:// or https:// URL",
    )
    desk_smtp_host: str = setting("", "daily digest: SMTP server", "a host name", "none (no mail)")
    desk_smtp_port: Port = setting(25, "daily digest: SMTP port", PORT)
    desk_smtp_from: str = setting(
        "stagepost@localhost", "daily digest: the sender address", "an e-mail address"
    )
    desk_owner_emails: Annotated[dict[str, str], NoDecode, BeforeValidator(_json_object)] = setting(
        {},
        "daily digest: where each owner's digest goes, JSON (owner to address); an owner "
        "that is a desk user with an e-mail needs no entry",
        'a JSON object, e.g. {"finance-ops": "fo@example.com"}',
        "the desk user's e-mail",
        default_factory=dict,
    )

    # -- operations (docs/operations.md) ------------------------------------------------------
    backup_dir: Path | None = setting(
        None,
        "where `staging_backup_job` writes its backups (its `dest` config overrides)",
        FOLDER,
        "`<data>/backups`",
    )
    retention_report_days: Days | None = setting(
        None,
        "retention: reconciliation workbooks older than this many days are deleted",
        DAYS,
        KEEP,
    )
    retention_preview_days: Days | None = setting(
        None, "retention: posting previews older than this many days are deleted", DAYS, KEEP
    )
    retention_landing_days: Days | None = setting(
        None,
        "retention: landed raw rows (`land_*`) of settled loads older than this many days are "
        "deleted",
        DAYS,
        KEEP,
    )
    retention_api_pull_days: Days | None = setting(
        None,
        "retention: the Parquet files of landed API pulls (`<data>/api_pulls/<vendor>/`) older "
        "than this many days are deleted",
        DAYS,
        KEEP,
    )
    health_min_free_mb: Annotated[float, Field(gt=0, allow_inf_nan=False)] = setting(
        1024.0,
        "`stagepost-health` fails below this much free disk where the data folder lives "
        "(`--min-free-mb` overrides)",
        "a number of MB, more than 0",
        "`1024`",
    )

    @model_validator(mode="after")
    def _urls(self) -> Settings:
        """URLs whose form depends on another setting (the ERP's on its kind)."""
        problems = []
        if self.staging_url and not _sqlalchemy_url(self.staging_url, {"duckdb", "postgresql"}):
            problems.append(
                f"{env_name('staging_url')}={shown('staging_url', self.staging_url)}: "
                f"expected a duckdb:/// or postgresql:// URL"
            )
        if self.erp_url:
            ok = (
                _sqlalchemy_url(self.erp_url, None)
                if self.erp_kind == "sql"
                else re.match(r"https?://[^/\s]+", self.erp_url) is not None
            )
            if not ok:
                want = "a SQLAlchemy URL" if self.erp_kind == "sql" else "an http(s):// URL"
                problems.append(
                    f"{env_name('erp_url')}={shown('erp_url', self.erp_url)}: expected {want} "
                    f"with {env_name('erp_kind')}={self.erp_kind}"
                )
        for name in ("desk_base_url", "desk_dagster_url"):
            value = getattr(self, name)
            if value and not re.match(r"https?://\S+$", value):
                problems.append(f"{env_name(name)}={value!r}: expected an http:// or https:// URL")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _sqlalchemy_url(url: str, backends: set[str] | None) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        return False
    return backends is None or backend in backends


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


#: Fields never printed (the resources get them as Dagster `EnvVar`s).
SECRETS = frozenset(n for n, f in Settings.model_fields.items() if _is_secret(f.annotation))


def env_name(field: str) -> str:
    """The environment variable of a field: `done_markers` -> `STAGEPOST_DONE_MARKERS`."""
    return f"{PREFIX}{field.upper()}"


def shown(field: str, value: Any) -> str:
    """A value as it may be printed: never a secret, a URL with its password masked."""
    if field in SECRETS:
        return "(secret)"
    text = str(value)
    if field.endswith("_url") and "@" in text:
        text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return repr(text)


def _explain(err: ValidationError) -> SettingsError:
    lines = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if not e["loc"]:  # a model-level check: its message names its variables
            lines.append(msg)
            continue
        field = str(e["loc"][0])
        info = Settings.model_fields.get(field)
        expects = (info.json_schema_extra or {}).get("expects") if info else None  # type: ignore[union-attr]
        # Our own checks say what is wrong; pydantic's type errors only restate the type.
        problem = (
            f"{msg}; expected {expects}" if e["type"] == "value_error" else f"expected {expects}"
        )
        lines.append(f"{env_name(field)}={shown(field, e['input'])}: {problem}")
    return SettingsError("\n".join(lines))


def load() -> Settings:
    """Read and validate every STAGEPOST_* variable now."""
    try:
        return Settings()
    except ValidationError as e:
        raise _explain(e) from None


_CACHE: tuple[tuple[tuple[str, str], ...], Settings] | None = None
_LOCK = threading.Lock()


def current() -> Settings:
    """The settings of this process: validated once, read again only when a STAGEPOST_*
    variable changes (tests change them; a deployment does not)."""
    global _CACHE
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(PREFIX)))
    cached = _CACHE
    if cached is not None and cached[0] == key:
        return cached[1]
    with _LOCK:
        settings = load()
        _CACHE = (key, settings)
    return settings


def configuration_table() -> str:
    """The README's configuration table, one row per variable, from the field descriptions."""
    rows = ["| variable | meaning | accepts | default |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        extra: dict[str, Any] = info.json_schema_extra or {}  # type: ignore[assignment]
        cells = (f"`{env_name(name)}`", info.description, extra["expects"], extra["shown"])
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(configuration_table())
