"""Re-validate now: launch Dagster's `revalidate_job` through the webserver's GraphQL API.

The desk does not import Dagster (it may run apart from it): it finds the code location that
holds the job (`repositoriesOrError`) and sends the documented `launchRun` mutation, tagging
the run with the desk user, so the run's page in Dagster says who asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from config.settings import current

JOB = "revalidate_job"

REPOSITORIES = """
{ repositoriesOrError { __typename
  ... on RepositoryConnection { nodes { name location { name } pipelines { name } } }
  ... on PythonError { message } } }
"""

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on InvalidStepError { invalidStepKey }
  ... on InvalidOutputError { invalidOutputName }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on PipelineNotFoundError { message }
  ... on RunConflict { message }
  ... on UnauthorizedError { message }
  ... on PresetNotFoundError { message }
  ... on ConflictingExecutionParamsError { message }
  ... on NoModeProvidedError { message }
} }
"""


class LaunchFailed(RuntimeError):
    """Dagster did not launch the run; the message says what it answered."""


@dataclass(frozen=True)
class Launched:
    run_id: str
    url: str  # the run's page in the Dagster UI


def _post(client: httpx.Client, base: str, query: str, variables: dict | None = None) -> dict:
    try:
        resp = client.post(f"{base}/graphql", json={"query": query, "variables": variables or {}})
    except httpx.HTTPError as e:
        raise LaunchFailed(f"Dagster at {base} does not answer ({e.__class__.__name__})") from None
    if resp.status_code != 200:
        raise LaunchFailed(f"Dagster at {base} answered HTTP {resp.status_code}")
    body = resp.json()
    if body.get("errors"):
        raise LaunchFailed("; ".join(e.get("message", "?") for e in body["errors"]))
    return body["data"]


def launch(username: str, *, base_url: str | None = None, timeout: float = 15.0) -> Launched:
    """Launch the re-validation run as `username`; its run id and page."""
    base = (base_url or current().desk_dagster_url).rstrip("/")
    with httpx.Client(timeout=timeout) as client:
        repos = _post(client, base, REPOSITORIES)["repositoriesOrError"]
        if repos.get("__typename") != "RepositoryConnection":
            raise LaunchFailed(repos.get("message", "Dagster lists no code location"))
        repo = next(
            (r for r in repos["nodes"] if any(p["name"] == JOB for p in r["pipelines"])), None
        )
        if repo is None:
            raise LaunchFailed(f"no code location in Dagster at {base} has {JOB}")
        params = {
            "selector": {
                "repositoryLocationName": repo["location"]["name"],
                "repositoryName": repo["name"],
                "jobName": JOB,
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "stagepost/desk_user", "value": username}]},
        }
        out = _post(client, base, LAUNCH, {"params": params})["launchRun"]
    if out.get("__typename") != "LaunchRunSuccess":
        detail = out.get("message") or out.get("errors") or out.get("__typename")
        raise LaunchFailed(f"Dagster refused the run: {detail}")
    run_id = out["run"]["runId"]
    return Launched(run_id, f"{base}/runs/{run_id}")
