"""The deployment files, checked as far as this machine allows (docs/deployment.md says what
was not run: no Docker engine, no docker compose, no helm, no cluster).

- Dockerfile: installs from a lock with hashes then the project without dependencies, runs as
  a non-root user with DAGSTER_HOME set, copies only files that exist, and every package the
  project declares; the wheel it builds offline carries the console scripts; the entry point
  script starts the three services.
- Compose: the services and how they fit together (env files, workspace, instance variables).
- Helm values: validated against the chart's own values.schema.json (vendored), plus a walk that
  rejects keys the chart does not know, and kept in step with deploy/dagster.postgres.yaml.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
VALUES = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
SCHEMA = json.loads((DEPLOY / "helm" / "dagster-chart-values.schema.json").read_text())
INSTANCE = yaml.safe_load((DEPLOY / "dagster.postgres.yaml").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _arg_default(name: str) -> str:
    return next(
        r.split("=", 1)[1]
        for i, r in _instructions(DOCKERFILE)
        if i == "ARG" and r.startswith(f"{name}=")
    )


# -- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_installs_from_the_lock_with_hashes_then_the_project_without_deps() -> None:
    runs = [r for i, r in _instructions(DOCKERFILE) if i == "RUN"]
    lock_install = next(r for r in runs if "-r requirements/${LOCK}.lock" in r)
    assert "--require-hashes" in lock_install and "--no-deps" in lock_install
    project = next(r for r in runs if re.search(r"pip install .*--no-deps.* \.(\s|$)", r))
    assert runs.index(project) > runs.index(lock_install)
    assert not [r for r in runs if "pip install" in r and r not in (lock_install, project)]
    assert _arg_default("LOCK") == "app"
    for lock in ("app", "k8s"):  # the default and the Kubernetes build both exist
        assert (ROOT / "requirements" / f"{lock}.lock").is_file()
    assert "dagster-k8s==" in (ROOT / "requirements" / "k8s.lock").read_text()


def test_dockerfile_user_home_and_entry_point() -> None:
    ins = _instructions(DOCKERFILE)
    user = [r for i, r in ins if i == "USER"][-1]
    assert user.split(":")[0] not in {"0", "root"}
    env = " ".join(r for i, r in ins if i == "ENV")
    home = re.search(r"DAGSTER_HOME=(\S+)", env).group(1)
    assert home == VALUES["global"]["dagsterHome"]
    copies = {r.split()[-1]: r.split()[:-1] for i, r in ins if i == "COPY"}
    assert copies["${DAGSTER_HOME}/dagster.yaml"] == ["deploy/dagster.postgres.yaml"]
    entry = json.loads(next(r for i, r in ins if i == "ENTRYPOINT"))
    assert any(dest.endswith("/" + entry[0]) for dest in copies)


def test_dockerfile_copies_files_that_exist_and_every_package() -> None:
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()]
    sources = []
    for i, r in _instructions(DOCKERFILE):
        if i == "COPY":
            sources += [s for s in r.split()[:-1] if not s.startswith("--")]
    for lock in ("app", "k8s"):
        for src in sources:
            path = ROOT / src.replace("${LOCK}", lock)
            assert path.exists(), f"Dockerfile copies {src}, which does not exist"
            assert src.split("/")[0] not in ignored, f"{src} is excluded by .dockerignore"
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {s.rstrip("/") for s in sources}
    assert {p.rstrip("*") for p in packages} <= copied
    assert PYPROJECT["project"]["readme"] in copied  # setuptools reads it while building


def _setuptools_builds_wheels() -> bool:
    """setuptools >= 70.1 builds wheels without the `wheel` package (the lock pins 84)."""
    try:
        from setuptools.command import bdist_wheel  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not _setuptools_builds_wheels(),
    reason="this environment's setuptools is older than the lock's and cannot build a wheel "
    "without `wheel`; ./dev test installs the locked setuptools, as the image does",
)
def test_project_wheel_builds_offline_with_the_console_scripts(tmp_path: Path) -> None:
    """What the image's `pip install --no-deps --no-build-isolation .` builds, from a copy."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "data",
            "dagster_home",
            "tests",
            "bench",
            "*.egg-info",
            "build",
            "__pycache__",
        ),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp_path / "w"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    wheel = next((tmp_path / "w").glob("stagepost-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"commands/ops.py", "pipelines/definitions.py", "staging_models/retention.py"} <= names
    for script in ("stagepost-health", "stagepost-backup", "stagepost-retention"):
        assert f"{script} = commands.ops:" in entry_points


def test_entrypoint_starts_each_service(tmp_path: Path) -> None:
    """The script run for real, with stand-ins for the Dagster binaries that print their argv."""
    script = DEPLOY / "docker-entrypoint.sh"
    assert os.access(script, os.X_OK)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (
        "dagster-webserver",
        "dagster-daemon",
        "dagster",
        "stagepost-health",
        "stagepost-desk",
    ):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    def run(*args: str) -> str:
        return subprocess.run(
            [str(script), *args], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0][
        "grpc_server"
    ]
    assert run() == "dagster-webserver -h 0.0.0.0 -p 3000 -w /opt/dagster/workspace.yaml"
    assert run("daemon") == "dagster-daemon run -w /opt/dagster/workspace.yaml"
    assert (
        run("code-server")
        == f"dagster code-server start -h 0.0.0.0 -p {workspace['port']} -m pipelines.definitions"
    )
    assert run("health", "--min-free-mb", "5") == "stagepost-health --min-free-mb 5"
    assert run("desk") == "stagepost-desk --host 0.0.0.0 --port 3001"
    assert run("echo", "as given") == "as given"


# -- docker compose -----------------------------------------------------------------------------


def test_compose_services_fit_together() -> None:
    services = COMPOSE["services"]
    assert {"postgres", "code-server", "webserver", "daemon", "ops", "desk", "desk-user"} == set(
        services
    )
    assert services["ops"]["profiles"] == services["desk-user"]["profiles"] == ["ops"]  # not `up`
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0][
        "grpc_server"
    ]
    assert workspace["host"] == "code-server"
    for name in ("code-server", "webserver", "daemon", "ops", "desk", "desk-user"):
        svc = services[name]
        assert svc["image"].startswith("${STAGEPOST_IMAGE")
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert any(v.endswith(":/var/lib/stagepost") for v in svc["volumes"])
        assert svc["env_file"] == ["stagepost.env", "secrets.env"]
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code-server"]["condition"] == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"]
    for mount in services["postgres"]["volumes"]:
        host = mount.split(":")[0]
        if host.startswith("./"):
            assert (COMPOSE_FILE.parent / host).is_dir()


def test_compose_env_examples_set_what_the_instance_and_staging_read() -> None:
    folder = COMPOSE_FILE.parent
    env: dict[str, str] = {}
    for name in ("stagepost.env", "secrets.env"):
        for line in (folder / f"{name}.example").read_text().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                env[k] = v
    instance_vars = set(re.findall(r"env: (\w+)", (DEPLOY / "dagster.postgres.yaml").read_text()))
    assert instance_vars <= set(env)
    assert env["STAGEPOST_STAGING_URL"].startswith("postgresql://")  # several writers
    assert "@postgres:" in env["STAGEPOST_STAGING_URL"] and env["DAGSTER_PG_HOST"] == "postgres"
    assert {"POSTGRES_PASSWORD", "STAGEPOST_STAGING_PASSWORD"} <= set(env)
    assert "PASSWORD" not in (folder / "stagepost.env.example").read_text()


def test_compose_serves_the_desk_on_localhost_only() -> None:
    desk = COMPOSE["services"]["desk"]
    assert desk["command"] == ["desk"] and desk["ports"] == ["127.0.0.1:3001:3001"]
    assert desk["environment"]["STAGEPOST_DESK_DAGSTER_URL"] == "http://webserver:3000"
    assert COMPOSE["services"]["desk-user"]["entrypoint"] == ["stagepost-desk-user"]
    secrets = (COMPOSE_FILE.parent / "secrets.env.example").read_text()
    assert "STAGEPOST_DESK_SESSION_SECRET=" in secrets


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="docker compose is not installed on this machine (only the docker client is)",
)
def test_docker_compose_config(tmp_path: Path) -> None:
    folder = tmp_path / "compose"
    shutil.copytree(COMPOSE_FILE.parent, folder)
    for name in ("stagepost.env", "secrets.env"):
        shutil.copy(folder / f"{name}.example", folder / name)
    done = subprocess.run(
        ["docker", "compose", "-f", str(folder / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


# -- Helm values --------------------------------------------------------------------------------


def _offline(schema: Any) -> Any:
    """The schema without its references to kubernetesjsonschema.dev (not reachable here):
    those Kubernetes objects (resources, volumes, ...) keep only their sibling `type`."""
    if isinstance(schema, dict):
        return {
            k: _offline(v) for k, v in schema.items() if not (k == "$ref" and v.startswith("http"))
        }
    if isinstance(schema, list):
        return [_offline(v) for v in schema]
    return schema


def _without_required(schema: Any) -> Any:
    """Helm validates the chart's defaults merged with these values; the defaults fill in what
    the schema requires, so a values file alone is checked for names, nesting and types."""
    if isinstance(schema, dict):
        return {k: _without_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_without_required(v) for v in schema]
    return schema


def _resolve(node: dict) -> dict:
    while "$ref" in node and node["$ref"].startswith("#/definitions/"):
        node = SCHEMA["definitions"][node["$ref"].split("/")[-1]]
    return node


def _unknown_keys(value: Any, node: dict, path: str = "") -> list[str]:
    """Keys the chart's schema does not declare (most of its objects allow extra keys, so a
    misspelt key would otherwise pass and be silently ignored by the templates)."""
    node = _resolve(node)
    if "$ref" in node:  # a Kubernetes object: not described offline
        return []
    if "anyOf" in node:
        branches = [_resolve(b) for b in node["anyOf"]]
        objects = [b for b in branches if "properties" in b or "$ref" in b]
        if isinstance(value, dict) and objects:
            return min((_unknown_keys(value, b, path) for b in objects), key=len)
        if isinstance(value, list) and "items" in node:
            return [
                u
                for i, v in enumerate(value)
                for u in _unknown_keys(v, node["items"], f"{path}[{i}]")
            ]
        return []
    if isinstance(value, dict) and "properties" in node:
        out = []
        for key, sub in value.items():
            if key in node["properties"]:
                out += _unknown_keys(sub, node["properties"][key], f"{path}.{key}")
            elif not isinstance(node.get("additionalProperties"), dict):
                out.append(f"{path}.{key}")
        return out
    if isinstance(value, list) and "items" in node:
        return [
            u for i, v in enumerate(value) for u in _unknown_keys(v, node["items"], f"{path}[{i}]")
        ]
    return []


#: Rendered by the chart's templates/helpers/instance/_concurrency.tpl (dagster-io/dagster
#: commit 99dc34fc), newer than the vendored schema, which has no `concurrency` key.
CONCURRENCY_KEYS = {
    "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
}


def _validate(values: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(_without_required(_offline(SCHEMA)))
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]
    rest = {k: v for k, v in values.items() if k != "concurrency"}
    errors += [f"unknown key {k}" for k in _unknown_keys(rest, SCHEMA)]
    for group, keys in values.get("concurrency", {}).items():
        if group not in CONCURRENCY_KEYS:
            errors.append(f"unknown key .concurrency.{group}")
        else:
            errors += [
                f"unknown key .concurrency.{group}.{k}" for k in set(keys) - CONCURRENCY_KEYS[group]
            ]
    return errors


def test_vendored_schema_is_the_chart_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["title"] == "DagsterHelmValues"
    assert {"dagsterWebserver", "dagster-user-deployments", "runLauncher"} <= set(
        SCHEMA["properties"]
    )


def test_helm_values_validate_against_the_chart_schema() -> None:
    assert _validate(VALUES) == []


def test_helm_validation_catches_misspelt_keys_and_wrong_types() -> None:
    bad = copy.deepcopy(VALUES)
    bad["dagsterWebserver"]["replicas"] = 2  # the chart's key is replicaCount
    bad["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = []  # envSecrets
    bad["dagster-user-deployments"]["deployments"][0]["port"] = "3030"
    bad["concurrency"]["pools"]["default_limit"] = 1  # the instance file's spelling
    errors = _validate(bad)
    assert any("replicas" in e for e in errors)
    assert any("envSecret" in e for e in errors)
    assert any("'3030' is not of type 'integer'" in e for e in errors)
    assert any("default_limit" in e for e in errors)
    bad = copy.deepcopy(VALUES)
    bad["runLauncher"]["type"] = "K8sLauncher"
    assert any("is not one of" in e for e in _validate(bad))


def test_helm_values_match_the_production_instance_and_image() -> None:
    v = VALUES
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert (
        v["postgresql"]["postgresqlScheme"]
        == INSTANCE["storage"]["postgres"]["postgres_db"]["scheme"]
    )
    pools, runs = INSTANCE["concurrency"]["pools"], INSTANCE["concurrency"]["runs"]
    assert v["concurrency"]["pools"] == {
        "granularity": pools["granularity"],
        "defaultLimit": pools["default_limit"],
    }
    assert v["concurrency"]["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert v["concurrency"]["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert v["dagsterDaemon"]["runMonitoring"]["enabled"] is INSTANCE["run_monitoring"]["enabled"]
    code = v["dagster-user-deployments"]["deployments"][0]
    images = {
        (x["image"]["repository"], x["image"]["tag"])
        for x in (code, v["dagsterWebserver"], v["dagsterDaemon"])
    }
    assert len(images) == 1 and next(iter(images))[1].endswith("-k8s")  # built with LOCK=k8s
    assert code["codeServerArgs"] == ["-m", PYPROJECT["tool"]["dagster"]["module_name"]]
    secrets = [s["name"] for s in code["envSecrets"]]
    assert secrets == [
        s["name"] for s in v["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    ]
    assert v["generatePostgresqlPasswordSecret"] is False and v["global"]["postgresqlSecretName"]
    assert v["ingress"]["dagsterWebserver"]["tls"]["enabled"] is True
