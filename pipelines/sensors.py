"""Sensor: one ingestion run per new complete file in the PSA inbox.

Polls the configured source (`psa_source` resource) and requests a run for every complete
data file it has not requested before, tagged `stagepost/file` so that only that file is
landed. Time entries go to `ingest_time_entries_job`, everything else to `ingest_nightly_job`;
the whole job runs (landing, then whatever the job does after landing), and only the landing
asset of the file's dataset lands anything.

Run key = name, size and mtime: a file rewritten in place (new size or mtime) is a new run;
the same bytes re-delivered under a new mtime land nothing twice anyway, because landing
skips a checksum it already landed. The cursor keeps the keys of the files still in the
inbox (so it stays as small as the inbox); a file that failed to land is not retried by the
sensor until it changes: the hourly and nightly schedules, which land everything, are the
safety net. Starts STOPPED: turn it on in the UI once the source is configured.
"""

from __future__ import annotations

import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from assets.deals import DATASETS as DEAL_DATASETS
from assets.ingestion import DATASET_TAG, FILE_TAG, HOURLY_DATASETS
from config.settings import current
from connectors.sources.base import RemoteFile, RetryableSourceError
from pipelines.deal_jobs import deal_setup_job
from pipelines.jobs import ingest_nightly_job, ingest_time_entries_job
from resources.psa_source import PsaSource

SENSOR_INTERVAL_SECONDS = current().sensor_interval
_CURSOR_VERSION = 1


def file_key(f: RemoteFile) -> str:
    """The run key of one delivery of a file: name (as safe text), size and mtime."""
    mtime = f"{int(f.mtime)}" if float(f.mtime).is_integer() else f"{f.mtime:.6f}"
    return f"{f.display}|{f.size}|{mtime}"


def job_name_for(dataset: str) -> str:
    if dataset in DEAL_DATASETS:  # CRM deals and templates land in the set-up's own job
        return deal_setup_job.name
    return ingest_time_entries_job.name if dataset in HOURLY_DATASETS else ingest_nightly_job.name


def _read_cursor(cursor: str | None) -> set[str]:
    if not cursor:
        return set()
    try:
        data = json.loads(cursor)
    except ValueError:
        return set()  # an unreadable cursor only costs duplicate run keys, which Dagster skips
    if not isinstance(data, dict) or data.get("v") != _CURSOR_VERSION:
        return set()
    return set(data.get("files", []))


def _write_cursor(keys: set[str]) -> str:
    return json.dumps({"v": _CURSOR_VERSION, "files": sorted(keys)})


@sensor(
    name="psa_inbox_sensor",
    jobs=[ingest_time_entries_job, ingest_nightly_job, deal_setup_job],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.STOPPED,
    description="Launches an ingestion run for each new complete file in the PSA inbox.",
)
def psa_inbox_sensor(context: SensorEvaluationContext, psa_source: PsaSource):
    try:
        with psa_source.open() as source:
            files = source.list_complete()
    except RetryableSourceError as e:  # server down or connection dropped: try next tick
        return SkipReason(f"PSA source not reachable, retrying next tick: {e}")
    requested = _read_cursor(context.cursor)
    present: set[str] = set()
    runs: list[RunRequest] = []
    for f in files:
        dataset = source.dataset_of(f.name)  # list_complete returns files of known datasets
        key = file_key(f)
        present.add(key)
        if key in requested:
            continue
        runs.append(
            RunRequest(
                run_key=key,
                job_name=job_name_for(dataset),
                tags={FILE_TAG: f.display, DATASET_TAG: dataset},
            )
        )
    # Keys of files gone from the inbox (archived) are dropped: the cursor stays small.
    context.update_cursor(_write_cursor(present))
    if not runs:
        return SkipReason(f"no new complete files in {source.describe()}")
    context.log.info(f"{len(runs)} new file(s) in {source.describe()}")
    return runs
