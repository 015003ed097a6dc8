"""The one settings model: every STAGEPOST_* variable typed, a bad value named at start-up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import EnvVar

from config.settings import (
    SECRETS,
    Settings,
    SettingsError,
    configuration_table,
    current,
    env_name,
    load,
)
from resources.settings import (
    erp_resource,
    outbound_delivery_resource,
    posting_policy_resource,
    psa_source_resource,
    report_upload_resource,
    staging_resource,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the defaults, whatever the shell running the tests exported."""
    for name in list(os.environ):
        if name.upper().startswith("STAGEPOST_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "STAGEPOST_DONE_MARKERS",
            "maybe",
            "STAGEPOST_DONE_MARKERS='maybe': not a boolean; expected true or false "
            "(also 1/0, yes/no)",
        ),
        (
            "STAGEPOST_SFTP_PORT",
            "abc",
            "STAGEPOST_SFTP_PORT='abc': expected a port number, 1-65535",
        ),
        ("STAGEPOST_SFTP_PORT", "0", "STAGEPOST_SFTP_PORT='0': expected a port number, 1-65535"),
        (
            "STAGEPOST_DESK_PORT",
            "70000",
            "STAGEPOST_DESK_PORT='70000': expected a port number, 1-65535",
        ),
        (
            "STAGEPOST_REPORTS_SFTP_PORT",
            "ssh",
            "STAGEPOST_REPORTS_SFTP_PORT='ssh': expected a port number, 1-65535",
        ),
        (
            "STAGEPOST_ERP_LEGAL_ENTITIES",
            "{US01: 1}",
            "STAGEPOST_ERP_LEGAL_ENTITIES='{US01: 1}': not JSON (Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)); expected a JSON object of "
            'legal entity to company id, e.g. {"US01": 1}',
        ),
        (
            "STAGEPOST_ERP_LEGAL_ENTITIES",
            '{"US01": "one"}',
            "STAGEPOST_ERP_LEGAL_ENTITIES='one': expected a JSON object of legal entity to "
            'company id, e.g. {"US01": 1}',
        ),
        (
            "STAGEPOST_SOURCE_KIND",
            "ftp",
            "STAGEPOST_SOURCE_KIND='ftp': expected local or sftp",
        ),
        ("STAGEPOST_ERP_KIND", "sap", "STAGEPOST_ERP_KIND='sap': expected sql or tryton"),
        (
            "STAGEPOST_CLOSED_PERIOD_POLICY",
            "skip",
            "STAGEPOST_CLOSED_PERIOD_POLICY='skip': expected next_open or hold",
        ),
        (
            "STAGEPOST_POSTING_LOCK_STALE_SECONDS",
            "0",
            "STAGEPOST_POSTING_LOCK_STALE_SECONDS='0': expected seconds, more than 0",
        ),
        (
            "STAGEPOST_STABLE_SECONDS",
            "-1",
            "STAGEPOST_STABLE_SECONDS='-1': expected seconds, 0 or more",
        ),
        (
            "STAGEPOST_SENSOR_INTERVAL",
            "1.5",
            "STAGEPOST_SENSOR_INTERVAL='1.5': expected whole seconds, 1 or more",
        ),
        (
            "STAGEPOST_MAX_FILE_ROWS",
            "-5",
            "STAGEPOST_MAX_FILE_ROWS='-5': expected a whole number, 1 or more",
        ),
        (
            "STAGEPOST_MAX_COMPRESSION_RATIO",
            "inf",
            "STAGEPOST_MAX_COMPRESSION_RATIO='inf': expected a number more than 0",
        ),
        (
            "STAGEPOST_FULL_EXPORT_MAX_DELETE_SHARE",
            "5%",
            "STAGEPOST_FULL_EXPORT_MAX_DELETE_SHARE='5%': not a number; expected a share "
            "from 0 to 1, e.g. 0.05",
        ),
        (
            "STAGEPOST_TIMEZONE",
            "CEST",
            "STAGEPOST_TIMEZONE='CEST': unknown timezone; expected an IANA timezone, "
            "e.g. Europe/Berlin",
        ),
        (
            "STAGEPOST_ENCODING",
            "windows-1252x",
            "STAGEPOST_ENCODING='windows-1252x': unknown encoding; expected an encoding "
            "Python knows",
        ),
        (
            "STAGEPOST_DUCKDB_MEMORY_LIMIT",
            "1000",
            "STAGEPOST_DUCKDB_MEMORY_LIMIT='1000': not an amount of memory; expected an "
            "amount such as 512MB, 1GB, 2GiB or 50%",
        ),
        (
            "STAGEPOST_STAGING_URL",
            "mysql://db/stage",
            "STAGEPOST_STAGING_URL='mysql://db/stage': expected a duckdb:/// or postgresql:// URL",
        ),
        (
            "STAGEPOST_RETENTION_LANDING_DAYS",
            "-1",
            "STAGEPOST_RETENTION_LANDING_DAYS='-1': expected days, 0 or more (0 keeps forever)",
        ),
        (
            "STAGEPOST_RETENTION_REPORT_DAYS",
            "a month",
            "STAGEPOST_RETENTION_REPORT_DAYS='a month': expected days, 0 or more (0 keeps forever)",
        ),
        (
            "STAGEPOST_HEALTH_MIN_FREE_MB",
            "0",
            "STAGEPOST_HEALTH_MIN_FREE_MB='0': expected a number of MB, more than 0",
        ),
        (
            "STAGEPOST_INTERCOMPANY_POLICY",
            "bill",
            "STAGEPOST_INTERCOMPANY_POLICY='bill': expected quarantine or intercompany",
        ),
        (
            "STAGEPOST_INTERCOMPANY_MARKUP_PERCENT",
            "10.12345",
            "STAGEPOST_INTERCOMPANY_MARKUP_PERCENT='10.12345': not a percentage from 0 to 1000 "
            "with at most 4 decimals; expected a number from 0 to 1000 with at most 4 decimals",
        ),
        (
            "STAGEPOST_FX_RATE_DATE",
            "invoice_date",
            "STAGEPOST_FX_RATE_DATE='invoice_date': expected work_date or month_end",
        ),
        (
            "STAGEPOST_GROUP_CURRENCY",
            "euro",
            "STAGEPOST_GROUP_CURRENCY='euro': not an ISO 4217 currency code; expected an ISO "
            "4217 currency code",
        ),
        (
            "STAGEPOST_DESK_QUIET",
            "quiet",
            "STAGEPOST_DESK_QUIET='quiet': not a boolean; expected true or false "
            "(also 1/0, yes/no)",
        ),
    ],
)
def test_a_bad_value_is_named_with_what_it_expects(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load()
    assert str(caught.value) == message


def test_posting_hours_and_full_export_range_are_checked_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STAGEPOST_POSTING_HOURS", "weekdays after five")
    monkeypatch.setenv("STAGEPOST_FULL_EXPORT_RANGE", "November")
    with pytest.raises(SettingsError) as caught:
        load()
    lines = str(caught.value).splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "STAGEPOST_FULL_EXPORT_RANGE",
        "STAGEPOST_POSTING_HOURS",
    ]
    assert "write FROM..TO, e.g. 2026-11-01..2026-11-30" in lines[0]


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEPOST_DONE_MARKERS", "maybe")
    monkeypatch.setenv("STAGEPOST_SFTP_PORT", "abc")
    monkeypatch.setenv("STAGEPOST_ERP_KIND", "tryton")
    monkeypatch.setenv("STAGEPOST_ERP_URL", "tryton.internal:8000")
    with pytest.raises(SettingsError) as caught:
        psa_source_resource()
    assert str(caught.value).splitlines() == [
        "STAGEPOST_DONE_MARKERS='maybe': not a boolean; expected true or false (also 1/0, yes/no)",
        "STAGEPOST_SFTP_PORT='abc': expected a port number, 1-65535",
    ]  # the URL's form is judged once the fields themselves are sound
    monkeypatch.delenv("STAGEPOST_DONE_MARKERS")
    monkeypatch.delenv("STAGEPOST_SFTP_PORT")
    with pytest.raises(SettingsError, match=r"^STAGEPOST_ERP_URL='tryton.internal:8000': "):
        erp_resource()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), (" Yes ", True)]
    + [("0", False), ("false", False), ("no", False), ("False", False)],
)
def test_booleans_read_as_written(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("STAGEPOST_DONE_MARKERS", value)
    monkeypatch.setenv("STAGEPOST_DECIMAL_COMMA", value)
    monkeypatch.setenv("STAGEPOST_DESK_QUIET", value)
    source = psa_source_resource()
    assert (source.done_markers, source.decimal_comma, current().desk_quiet) == (
        expected,
        expected,
        expected,
    )


def test_defaults_and_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load()
    assert (s.done_markers, s.sftp_port, s.stable_seconds, s.erp_legal_entities) == (
        False,
        22,
        5.0,
        {},
    )
    monkeypatch.setenv("STAGEPOST_ERP_LEGAL_ENTITIES", '{"US01": 1, "DE01": 2}')
    monkeypatch.setenv("STAGEPOST_DELIMITER", "tab")
    monkeypatch.setenv("STAGEPOST_SFTP_PORT", "2222")
    monkeypatch.setenv("STAGEPOST_SHEET", "")  # empty: unset
    assert erp_resource().legal_entities == {"US01": 1, "DE01": 2}
    source = psa_source_resource()
    assert (source.delimiter, source.port, source.sheet) == ("\t", 2222, None)


def test_secrets_reach_resources_as_env_vars_and_are_never_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert {env_name(f) for f in SECRETS} == {
        "STAGEPOST_STAGING_PASSWORD",
        "STAGEPOST_SFTP_KEY_PASSPHRASE",
        "STAGEPOST_ERP_PASSWORD",
        "STAGEPOST_REPORTS_SFTP_KEY_PASSPHRASE",
        "STAGEPOST_HARVEST_TOKEN",
        "STAGEPOST_TOGGL_TOKEN",
        "STAGEPOST_CLOCKIFY_TOKEN",
        "STAGEPOST_KIMAI_TOKEN",
        "STAGEPOST_DESK_SESSION_SECRET",
        "STAGEPOST_FEEDBACK_WEBHOOK_URL",
    }
    assert staging_resource().password is None  # unset: no EnvVar that would fail to resolve
    for name in map(env_name, SECRETS):
        monkeypatch.setenv(name, "hunter2")
    settings = load()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert staging_resource().password == EnvVar("STAGEPOST_STAGING_PASSWORD")
    assert psa_source_resource().key_passphrase == EnvVar("STAGEPOST_SFTP_KEY_PASSPHRASE")
    assert erp_resource().password == EnvVar("STAGEPOST_ERP_PASSWORD")
    assert report_upload_resource().key_passphrase == EnvVar(
        "STAGEPOST_REPORTS_SFTP_KEY_PASSPHRASE"
    )
    assert outbound_delivery_resource().webhook_url == EnvVar("STAGEPOST_FEEDBACK_WEBHOOK_URL")
    # A password written into a URL is masked in the error that names the URL.
    monkeypatch.setenv("STAGEPOST_ERP_KIND", "tryton")
    monkeypatch.setenv("STAGEPOST_ERP_URL", "ftp://admin:hunter2@erp")
    with pytest.raises(SettingsError) as caught:
        load()
    assert "hunter2" not in str(caught.value)
    assert "ftp://admin:***@erp" in str(caught.value)


def test_read_once_until_the_environment_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    first = current()
    assert current() is first
    monkeypatch.setenv("STAGEPOST_SFTP_PORT", "2222")
    assert current() is not first and current().sftp_port == 2222
    assert posting_policy_resource().lock_stale_seconds == 900.0


def _readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(
        r"<!-- configuration table: python -m config.settings -->\n(.*?)\n"
        r"<!-- end of configuration table -->",
        text,
        re.S,
    )
    assert m, "README lost the configuration table's markers"
    return m.group(1)


def test_readme_table_is_the_model() -> None:
    """Every variable the model reads is in the README's table, and nothing else is: the table
    is generated (`python -m config.settings`), so regenerate it after a change."""
    table = _readme_table()
    documented = re.findall(r"^\| `(STAGEPOST_[A-Z0-9_]+)` \|", table, re.M)
    assert documented == [env_name(f) for f in Settings.model_fields]
    assert table == configuration_table()


def test_readme_names_no_variable_the_model_does_not_read() -> None:
    text = (ROOT / "README.md").read_text()
    # whole names only: `STAGEPOST_SFTP_*` stands for the variables it abbreviates
    named = set(re.findall(r"STAGEPOST_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])", text))
    dev_only = {
        "STAGEPOST_VENV",
        "STAGEPOST_TEST_PG_URL",
        "STAGEPOST_TRYTON_CACHE",
        "STAGEPOST_UPDATE_SNAPSHOTS",
    }
    assert named - dev_only <= {env_name(f) for f in Settings.model_fields}


#: The only modules besides the model that may touch the environment, and why. None of these
#: is a stagepost setting, so none belongs in the model; a STAGEPOST_ name is never excused.
ENVIRONMENT_ALLOWED = {
    "commands/health.py": "DAGSTER_HOME, Dagster's own: whether to check its instance",
    "assets/maintenance.py": "DAGSTER_PG_*, Dagster's own: pg_dump of its instance database",
    "staging_models/backup.py": "pg_dump's subprocess environment (the parent's plus PGPASSWORD)",
}
_ENV_READ = re.compile(r"os\.environ|getenv\(")
#: A STAGEPOST_ variable looked up by name, through os.environ or any alias of it.
_STAGEPOST_LOOKUP = re.compile(
    r"""(?:\.get|getenv|\.pop|\.setdefault)\(\s*f?["']STAGEPOST_|\[\s*f?["']STAGEPOST_"""
)


def test_no_module_reads_the_environment_but_the_model() -> None:
    """Read once: a new `os.environ.get("STAGEPOST_...")` elsewhere would bypass validation.
    Outside the model, a STAGEPOST_ variable is never read, and the environment is touched
    only where `ENVIRONMENT_ALLOWED` says why."""
    offenders, used = [], set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"tests", "bench", ".venv", "dagster_home", "data"}:
            continue
        if rel == Path("config/settings.py"):
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            where = f"{rel}:{no}: {line.strip()}"
            if _STAGEPOST_LOOKUP.search(line) or (_ENV_READ.search(line) and "STAGEPOST_" in line):
                offenders.append(f"{where}  <- a STAGEPOST_ read: use current()")
            elif _ENV_READ.search(line):
                if rel.as_posix() in ENVIRONMENT_ALLOWED:
                    used.add(rel.as_posix())
                else:
                    offenders.append(f"{where}  <- not in ENVIRONMENT_ALLOWED")
    assert offenders == []
    assert used == set(ENVIRONMENT_ALLOWED), "an allowed module no longer reads the environment"


def test_the_environment_rule_catches_stagepost_reads() -> None:
    """The patterns above find what they are for (and leave Dagster's variables alone)."""
    caught = [
        'os.environ.get("STAGEPOST_BACKUP_DIR")',
        "e.get('STAGEPOST_ERP_KIND', 'sql')",
        'env["STAGEPOST_STAGING_PASSWORD"]',
        'os.getenv("STAGEPOST_PREVIEW_DIR")',
    ]
    assert all(_STAGEPOST_LOOKUP.search(line) for line in caught)
    assert not _STAGEPOST_LOOKUP.search('os.environ.get("DAGSTER_HOME")')
    assert not _STAGEPOST_LOOKUP.search('f"{env_name(field)} not set"')


def test_code_location_stops_at_load_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STAGEPOST_")}
    env |= {
        "STAGEPOST_DATA_DIR": str(tmp_path),
        "STAGEPOST_DONE_MARKERS": "maybe",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import pipelines.definitions"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert (
        "SettingsError: STAGEPOST_DONE_MARKERS='maybe': not a boolean; "
        "expected true or false (also 1/0, yes/no)"
    ) in result.stderr


def test_duckdb_staging_is_capped_and_spills_where_told(tmp_path, monkeypatch) -> None:
    """DuckDB staging takes 1GB by default (not 80% of RAM), spilling beyond it into the
    temp directory the settings name."""
    from staging_models.db import StagingDB

    monkeypatch.delenv("STAGEPOST_DUCKDB_MEMORY_LIMIT", raising=False)
    monkeypatch.setenv("STAGEPOST_DUCKDB_TEMP_DIRECTORY", str(tmp_path / "spill"))
    db = StagingDB(f"duckdb:///{tmp_path / 'staging.duckdb'}")
    try:
        with db.engine.connect() as conn:
            limit, temp = conn.exec_driver_sql(
                "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
            ).one()
    finally:
        db.engine.dispose()
    assert limit in ("953.6 MiB", "1.0 GB", "1000.0 MB") and temp == str(tmp_path / "spill")
