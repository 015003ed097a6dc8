"""Finance's Launchpad shows only what finance decides (#15): the resources (SFTP host,
staging URL, ERP URL, ...) are deployment settings, so no job of the code location offers
them as run config; the ops' own fields (the posting window's scope, note, operator, ...) stay."""

from __future__ import annotations

import pytest
from dagster import DagsterInvalidConfigError, validate_run_config

from pipelines.definitions import defs

JOBS = sorted(
    j.name for j in defs.get_repository_def().get_all_jobs() if not j.name.startswith("__")
)


def _fields(config_type) -> dict:
    return dict(getattr(config_type, "fields", {}))


@pytest.mark.parametrize("name", JOBS)
def test_the_launchpad_holds_ops_config_and_no_resources(name: str) -> None:
    job = defs.resolve_job_def(name)
    launchpad = _fields(job.run_config_schema.config_type)
    # resources, execution and loggers are there empty (a `RunConfig` names them): nothing in them.
    for section in ("resources", "execution", "loggers"):
        assert _fields(launchpad[section].config_type) == {}, (
            f"{name} lets its Launchpad set {section}"
        )
    assert set(launchpad) == {"ops", "resources", "execution", "loggers"}
    # Every op field the job itself takes is still the Launchpad's: nothing finance decides
    # was hidden with the resources.
    inner_ops = _fields(job.run_config_schema.run_config_schema_type).get("ops")
    inner = {
        op: sorted(_fields(_fields(f.config_type)["config"].config_type))
        for op, f in _fields(inner_ops.config_type).items()
        if "config" in _fields(f.config_type)
        and _fields(f.config_type)["config"].config_type.kind.value != "ANY"
    }
    outer = (
        {
            op: sorted(_fields(_fields(f.config_type)["config"].config_type))
            for op, f in _fields(launchpad["ops"].config_type).items()
        }
        if "ops" in launchpad
        else {}
    )
    assert outer == inner


@pytest.mark.parametrize(
    ("job", "resources"),
    [
        ("posting_window_job", {"erp": {"config": {"url": "http://elsewhere:8000/"}}}),
        ("ingest_time_entries_job", {"psa_source": {"config": {"host": "sftp.elsewhere"}}}),
        ("ingest_nightly_job", {"staging": {"config": {"url": "duckdb:////tmp/other.duckdb"}}}),
    ],
)
def test_a_run_config_setting_a_resource_is_refused(job: str, resources: dict) -> None:
    with pytest.raises(DagsterInvalidConfigError, match="resources"):
        validate_run_config(defs.resolve_job_def(job), {"resources": resources})


def test_the_posting_window_fields_pass_through_with_their_defaults() -> None:
    job = defs.resolve_job_def("posting_window_job")
    resolved = validate_run_config(
        job, {"ops": {"posting_window": {"config": {"note": "Nov", "operator": "ana"}}}}
    )
    config = resolved["ops"]["posting_window"]["config"]
    assert (config["note"], config["operator"], config["dry_run"]) == ("Nov", "ana", True)
    # The resources keep what the deployment gave them (not a Launchpad value).
    assert "erp" in resolved["resources"]


def test_a_nightly_full_pull_stays_full_by_default() -> None:
    job = defs.resolve_job_def("harvest_api_nightly_job")
    resolved = validate_run_config(job, {})
    assert resolved["ops"]["api_harvest_time_entries"]["config"]["full"] is True
    hourly = validate_run_config(defs.resolve_job_def("harvest_api_hourly_job"), {})
    assert hourly["ops"]["api_harvest_time_entries"]["config"]["full"] is False
