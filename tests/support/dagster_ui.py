"""A real Dagster webserver and daemon (`dg dev`) for tests: start it, talk GraphQL, stop it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

REPO_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name location { name }
    schedules { name cronSchedule }
    assetNodes { assetKey { path } }
    pipelines { name isAssetJob }
} } } }
"""

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""

RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run {
    status startTime endTime tags { key value } } } }"""

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.loads(r.read())
    assert "errors" not in body, body
    return body["data"]


@dataclass
class DagsterUi:
    port: int
    log: Path
    repo: dict

    def launch(
        self, job: str, run_config: dict | None = None, tags: dict[str, str] | None = None
    ) -> str:
        params = {
            "selector": {
                "repositoryLocationName": self.repo["location"]["name"],
                "repositoryName": self.repo["name"],
                "jobName": job,
            },
            "runConfigData": run_config or {},
            "executionMetadata": {
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]
            },
        }
        launched = gql(self.port, LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def run(self, run_id: str) -> dict:
        return gql(self.port, RUN, {"id": run_id})["runOrError"]

    def wait(self, run_ids: list[str], timeout: float = 600) -> dict[str, dict]:
        """Poll until every run has finished; their last state (status, start and end times)."""
        deadline = time.monotonic() + timeout
        while True:
            runs = {r: self.run(r) for r in run_ids}
            if all(x["status"] in FINISHED for x in runs.values()):
                return runs
            assert time.monotonic() < deadline, (runs, self.log.read_text()[-3000:])
            time.sleep(1)


@contextmanager
def dagster_ui(
    home: Path, env: dict[str, str], log: Path, timeout: float = 180, cli: str = "dg"
) -> Iterator[DagsterUi]:
    """`dg dev` (webserver, daemon, code server) on the instance in `home`, as `./dev ui` runs it;
    `cli="dagster"` starts the older `dagster dev` the same way."""
    port = free_port()
    exe = Path(sys.executable).parent / cli
    out = open(log, "w")
    proc = subprocess.Popen(
        [
            str(exe),
            "dev",
            "-m",
            "pipelines.definitions",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # it ignores SIGTERM for a while: end its whole group
    )
    try:
        deadline = time.monotonic() + timeout
        repo = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                nodes = gql(port, REPO_QUERY)["repositoriesOrError"]["nodes"]
                if nodes:
                    repo = nodes[0]
                    break
            except (OSError, AssertionError, KeyError):
                pass
            time.sleep(1)
        assert repo, log.read_text()[-3000:]
        yield DagsterUi(port=port, log=log, repo=repo)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        out.close()
        _kill_run_workers(home)


def _kill_run_workers(home: Path) -> None:
    """Run workers outlive `dg dev` (they are not in its process group): end every process
    of this instance, found by its DAGSTER_HOME, so none holds staging locks after the test."""
    marker = f"DAGSTER_HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


LOGS = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
    events { __typename ... on MessageEvent { message } } } } }"""


def run_worker_pid(ui: DagsterUi, run_id: str) -> int | None:
    """The run worker's pid, from Dagster's own "Started process for run (pid: N)" event."""
    events = gql(ui.port, LOGS, {"id": run_id})["logsForRun"].get("events", [])
    for event in events:
        found = re.search(r"Started process for run \(pid: (\d+)\)", event.get("message") or "")
        if found:
            return int(found.group(1))
    return None
