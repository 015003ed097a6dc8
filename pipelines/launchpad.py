"""What a job's Launchpad lets its user decide: the ops' config, never the resources.

Dagster shows a resource configured in `Definitions` (plain values or `EnvVar`) as editable
`resources:` config in every Launchpad: finance could point a posting window at another ERP
URL or an ingestion run at another SFTP host. The resources are deployment settings
(`config/settings.py`), so each job here gets a `ConfigMapping` whose schema holds only the
`ops:` its user decides (the posting window's scope, note and operator, ...); the mapping
passes them through unchanged, so a saved run config or a schedule's `RunConfig(ops=...)`
still fits, and the resources keep the values the deployment gave them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Config, ConfigMapping, Field, Shape

_FIXED = "Set by the deployment (STAGEPOST_* settings, README), not at launch"


def _with_defaults(field: Field, defaults: Mapping[str, Any]) -> Field:
    """The config class's fields, with this job's own defaults (e.g. a nightly full pull)."""
    shape = field.config_type
    fields = dict(shape.fields)  # type: ignore[attr-defined]
    for name, value in defaults.items():
        old = fields[name]
        fields[name] = Field(old.config_type, default_value=value, description=old.description)
    return Field(Shape(fields), description=field.description)


def ops_only(
    ops: Mapping[str, type[Config]] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> ConfigMapping:
    """A job config that exposes `ops:` (each op's config class) and nothing else.

    `ops` maps an op (or asset) name to its `Config` class; `defaults` sets this job's
    defaults of some of their fields. A job without configurable ops gets an empty schema.
    """
    defaults = defaults or {}
    op_fields = {}
    for name, cls in (ops or {}).items():
        config = cls.to_config_schema().as_field()
        if name in defaults:
            config = _with_defaults(config, defaults[name])
        op_fields[name] = Field(Shape({"config": config}))
    # A `RunConfig` (schedules, tests) always names all four sections: the other three are
    # accepted empty, and any entry in them is refused.
    fixed = Field(Shape({}), is_required=False, description=_FIXED)
    schema = {
        "ops": Field(Shape(op_fields)),
        "resources": fixed,
        "execution": fixed,
        "loggers": fixed,
    }

    def config_fn(outer: Mapping[str, Any]) -> dict[str, Any]:
        return {"ops": dict(outer.get("ops") or {})}

    return ConfigMapping(
        config_fn=config_fn,
        config_schema=Shape(schema),
        # Strings in, strings out: the job's own schema validates and converts them.
        receive_processed_config_values=False,
    )
