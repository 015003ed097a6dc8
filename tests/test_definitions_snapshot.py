"""A snapshot of the code location: what the UI, the schedules and the sensors depend on.

Renaming an asset, a job, a group or a Launchpad field, or changing a cron or a default
status, breaks things that no unit test sees (a sensor watching a key nothing materializes,
a run config an operator saved, a schedule that no longer runs). This test writes the shape
of `pipelines.definitions.defs` as readable JSON and compares it with
`tests/snapshots/definitions.json`:

- assets: key, group, deps, pools, kinds;
- asset checks: name, asset, blocking (severity is set per result at run time, so a
  definition has none to record);
- jobs: name, the assets they select, tags, what their Launchpad may set (`ops` only: the
  resources are deployment settings, `pipelines/launchpad.py`), and each op's config fields
  (name, type, required, default), e.g. the posting window's Launchpad fields;
- schedules: cron, timezone, default status, job;
- sensors: name, target jobs, default status, and the asset key an asset sensor watches.

A change on purpose: regenerate the snapshot and review its diff in the commit,

    STAGEPOST_UPDATE_SNAPSHOTS=1 pytest tests/test_definitions_snapshot.py

A schedule in the configured zone is recorded as `$STAGEPOST_TIMEZONE`, so the snapshot
holds whatever the environment sets; sensor intervals (environment) are left out.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey
from dagster._config import ConfigType, ConfigTypeKind

from assets.posting import ENTITY_TAG
from pipelines.definitions import defs
from pipelines.posting_jobs import POSTING_TAGS, posting_window_job
from pipelines.schedules import TIMEZONE

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE_ENV = "STAGEPOST_UPDATE_SNAPSHOTS"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_STRING_LIST = re.compile(r'\[\s*(?:"(?:[^"\\]|\\.)*"\s*,?\s*)+\]')


def _type(t: ConfigType) -> Any:
    """A config type as text (scalars, lists, optionals) or a dict of fields (shapes)."""
    kind = t.kind
    if kind == ConfigTypeKind.NONEABLE:
        return _optional(_type(t.inner_type))  # type: ignore[attr-defined]
    if kind == ConfigTypeKind.ARRAY:
        inner = _type(t.inner_type)  # type: ignore[attr-defined]
        return f"[{inner}]" if isinstance(inner, str) else {"list of": inner}
    if kind == ConfigTypeKind.ENUM:
        return "enum(" + "|".join(v.config_value for v in t.enum_values) + ")"  # type: ignore[attr-defined]
    if kind == ConfigTypeKind.SCALAR_UNION:  # a Config field: the scalar or an EnvVar
        return _type(t.scalar_type)  # type: ignore[attr-defined]
    if ConfigTypeKind.has_fields(kind):
        return {"fields": _fields(t)}
    return t.given_name or kind.value


def _optional(inner: Any) -> Any:
    return f"{inner}?" if isinstance(inner, str) else {"optional": inner}


def _fields(t: ConfigType) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in sorted(t.fields.items()):  # type: ignore[attr-defined]
        entry: dict[str, Any] = {"type": _type(field.config_type), "required": field.is_required}
        if field.default_provided:
            entry["default"] = field.default_value
        out[name] = entry
    return out


def _op_config(job: Any) -> dict[str, Any]:
    """Each op's own `config` fields (what the Launchpad shows under ops:)."""
    ops = job.run_config_schema.config_type.fields.get("ops")
    if ops is None:
        return {}
    out: dict[str, Any] = {}
    for op_name, op_field in sorted(ops.config_type.fields.items()):
        config = getattr(op_field.config_type, "fields", {}).get("config")
        if config is None or config.config_type.kind == ConfigTypeKind.ANY:
            continue
        out[op_name] = _type(config.config_type)
    return out


def _launchpad(job: Any) -> list[str]:
    """The Launchpad's sections that take entries (an empty section takes none)."""
    fields = job.run_config_schema.config_type.fields
    return sorted(n for n, f in fields.items() if getattr(f.config_type, "fields", None))


def _key(k: AssetKey) -> str:
    return k.to_user_string()


def definitions_snapshot() -> dict[str, Any]:
    """The shape of the code location, as plain JSON-able data, sorted."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=_key):
        node = graph.get(key)
        assets[_key(key)] = {
            "group": node.group_name,
            "deps": sorted(_key(p) for p in node.parent_keys),
            "pools": sorted(node.pools),
            "kinds": sorted(node.kinds),
            "materializable": node.is_materializable,
        }
    checks = {}
    for ck in sorted(graph.asset_check_keys, key=lambda c: (_key(c.asset_key), c.name)):
        check = graph.get(ck)
        checks[f"{_key(ck.asset_key)}:{ck.name}"] = {
            "asset": _key(ck.asset_key),
            "name": ck.name,
            "blocking": check.blocking,
        }
    jobs = {}
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit asset job
            continue
        jobs[job.name] = {
            "assets": sorted(_key(k) for k in job.asset_layer.selected_asset_keys),
            "tags": dict(sorted(job.tags.items())),
            "launchpad": _launchpad(job),
            "op_config": _op_config(job),
        }
    schedules = {
        s.name: {
            "job": s.job_name,
            "cron": s.cron_schedule,
            # The configured zone (STAGEPOST_TIMEZONE) by name: the snapshot holds anywhere.
            "timezone": "$STAGEPOST_TIMEZONE"
            if s.execution_timezone == TIMEZONE
            else s.execution_timezone,
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {}
    for s in sorted(repo.sensor_defs, key=lambda s: s.name):
        entry: dict[str, Any] = {
            "jobs": sorted(t.job_name for t in s.targets),
            "default_status": s.default_status.value,
        }
        watched = getattr(s, "asset_key", None)
        if watched is not None:
            entry["asset_key"] = _key(watched)
        sensors[s.name] = entry
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
    }


def _text(snapshot: dict[str, Any]) -> str:
    text = json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False)
    # Lists of strings on one line: a rename shows as one changed line in the diff.
    return (
        _STRING_LIST.sub(lambda m: "[" + ", ".join(_STRING.findall(m.group(0))) + "]", text) + "\n"
    )


def test_definitions_match_the_snapshot() -> None:
    current = _text(definitions_snapshot())
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current, encoding="utf-8")
        pytest.skip(f"{UPDATE_ENV}=1: wrote {SNAPSHOT}; review its diff and commit it")
    assert SNAPSHOT.exists(), f"no snapshot yet: run with {UPDATE_ENV}=1 and commit {SNAPSHOT}"
    stored = SNAPSHOT.read_text(encoding="utf-8")
    if current != stored:
        diff = difflib.unified_diff(
            stored.splitlines(), current.splitlines(), "snapshot", "definitions", lineterm="", n=2
        )
        pytest.fail(
            f"the definitions differ from {SNAPSHOT.name}; if on purpose, re-run with "
            f"{UPDATE_ENV}=1 and commit the diff:\n" + "\n".join(list(diff)[:120])
        )


def test_every_watched_or_depended_on_key_is_defined() -> None:
    """An asset sensor watching, or an asset depending on, a key no asset defines would
    never fire or never wait: Dagster accepts both silently (as external assets)."""
    graph = defs.resolve_asset_graph()
    defined = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    for s in defs.get_repository_def().sensor_defs:
        watched = getattr(s, "asset_key", None)
        if watched is not None:
            assert watched in defined, f"sensor {s.name} watches {_key(watched)}: not an asset"
    for key in defined:
        missing = set(graph.get(key).parent_keys) - defined
        assert not missing, f"{_key(key)} depends on undefined {sorted(map(_key, missing))}"


@pytest.mark.parametrize("instance", ["dagster_home/dagster.yaml", "deploy/dagster.postgres.yaml"])
def test_every_instance_limits_the_posting_tag_to_one_run(instance: str) -> None:
    """Windows run one per legal entity at a time because the run queue limits the posting
    job's tag per value: a tag renamed in code but not in the instance files would silently
    lift the limit."""
    config = yaml.safe_load((ROOT / instance).read_text(encoding="utf-8"))
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    job = defs.resolve_job_def(posting_window_job.name)
    assert POSTING_TAGS == {ENTITY_TAG: "all"}
    for key, value in POSTING_TAGS.items():
        assert job.tags[key] == value
        assert any(
            lim["key"] == key
            and lim.get("value") == {"applyLimitPerUniqueValue": True}
            and lim["limit"] == 1
            for lim in limits
        ), f"{instance} does not limit runs tagged {key} to one per value"
