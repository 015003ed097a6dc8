"""Vendor column mappings: a declarative TOML file that turns a PSA's own export into the
canonical format.

A mapping says, per canonical column, where its text comes from (a vendor column, several
columns joined, a constant, or a synthetic identity) and what to do with it (a transform,
a value map, a default). It is compiled into one DuckDB SQL expression per canonical column
of the `open_raw` view, so mapping costs no Python per row. It is validated when it is
loaded, against the canonical specs and against DuckDB itself (formats, time zones and
patterns are tried by the engine that will run them), so a typo fails at start-up with the
mapping file, the dataset, the column and the offending key named, not halfway through a load.

Structure (pydantic models, validated once at load; each compiles its own SQL):

- `SourceMapping`: one mapping file, its `DatasetMapping` per `[dataset]` table.
- `DatasetMapping`: the column rules of one dataset; checks the dataset's key is filled and
  that identities name columns the mapping fills.
- `ColumnRule`: one canonical column. Its *kind* is the one key that says where the value
  comes from; one model per kind, registered in `KINDS` by that key: `SourceRule`,
  `CoalesceRule`, `ConcatRule` (vendor columns, all `VendorRule`s), `ConstantRule`,
  `IdentityRule`.
- `Transform`: what a `VendorRule` does to its value, one model per transform, registered in
  `TRANSFORMS` by name (the TOML's `transform = "..."`) and chosen by that name (a pydantic
  discriminated union). The TOML writes a transform's settings flat next to it (`format`,
  `timezone`, `pattern`); the rule gathers them into the transform's model, and a setting
  given to a transform that does not take it is refused naming the transforms that do.

To extend the language: a new transform is a `Transform` subclass with a `name` literal, its
settings as fields (a `description` is the hint shown when a required one is missing), the
column types it `feeds` and its `sql`, decorated with `@register_transform` (above the
`TransformSpec` union). A new kind is a `ColumnRule` subclass with a `kind` and its fields
(the TOML key as the alias), decorated with `@register_kind`. Validators raise `problem(...)`
or a plain `ValueError` (which is prefixed with the offending key); `_mapping_error` turns
pydantic's errors into `MappingError`s.

The file format is documented in docs/mappings.md; shipped mappings live in
`connectors/sources/mappings/`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args

import duckdb
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from connectors.sources.canonical import DATASETS, Dataset

MAPPINGS_DIR = Path(__file__).parent / "mappings"

Unmapped = Literal["keep", "null", "error"]
#: Naive timestamp layouts tried when a `timestamp` transform names no `format`.
_ISO_TIMESTAMPS = (
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)
#: A time of day followed by a UTC offset. The time is required: the `-23` that ends the
#: date-only `2023-01-23` is not an offset.
_HAS_OFFSET = r"[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)? ?(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"
_HMM = r"[0-9]+:[0-5][0-9](:[0-5][0-9])?"
#: Builds the SQL that refuses the file: (value SQL, what is wrong with it) -> error(...).
Refuse = Callable[[str, str], str]


class MappingError(ValueError):
    """An invalid mapping file; the message names the file, the dataset and the column."""


def normalise_header(name: str) -> str:
    """`" Billable? "` → `billable`: headers compare case-, space- and punctuation-insensitively."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lstrip("\ufeff").lower()).strip("_")


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- SQL ---------------------------------------------------------------------------------


def _src_sql(name: str | None) -> str:
    """A vendor cell as trimmed text, empty as NULL (an absent optional column is NULL)."""
    if name is None:
        return "CAST(NULL AS VARCHAR)"
    return f"NULLIF(trim(CAST({quote_ident(name)} AS VARCHAR)), '')"


def _hours_sql(v: str) -> str:
    """`H:MM` or `H:MM:SS` → decimal hours, rounded half up to 4 places (the canonical scale),
    as text with at least 2 decimals: "2:30" → "2.50", "0:20" → "0.3333". Other text passes.

    Integer arithmetic in seconds: 10000 * s / 3600 = 25 s / 9, whose fraction is a ninth,
    never exactly one half, so rounding is unambiguous and no float is involved.
    """
    secs = (
        f"(CAST(regexp_extract({v}, '^([0-9]+):', 1) AS BIGINT) * 3600"
        f" + CAST(regexp_extract({v}, '^[0-9]+:([0-9]{{2}})', 1) AS BIGINT) * 60"
        f" + coalesce(TRY_CAST(NULLIF(regexp_extract({v}, ':[0-9]{{2}}:([0-9]{{2}})$', 1), '')"
        " AS BIGINT), 0))"
    )
    units = f"(({secs} * 50 + 9) // 18)"
    text = f"CAST({units} // 10000 AS VARCHAR) || '.' || lpad(CAST({units} % 10000 AS VARCHAR), 4, '0')"
    tidy = f"regexp_replace({text}, '(\\.[0-9]{{2}}[0-9]*?)0+$', '\\1')"
    return f"CASE WHEN regexp_full_match({v}, '{_HMM}') THEN {tidy} ELSE {v} END"


def _list_sql(items: Sequence[str]) -> str:
    return "[" + ", ".join(sql_str(i) for i in items) + "]"


def _swapped(formats: Sequence[str]) -> list[str]:
    """The declared formats with day and month exchanged (`%d/%m/%Y` → `%m/%d/%Y`), for those
    that hold both and whose swap is not itself declared."""
    out: list[str] = []
    for f in formats:
        s = re.sub(r"%(-?)([dm])", lambda m: f"%{m[1]}{'m' if m[2] == 'd' else 'd'}", f)
        if s != f and s not in formats and s not in out:
            out.append(s)
    return out


def _let(value: str, name: str, body: str) -> str:
    """`body` with `name` bound to `value`, computed once per row (a one-element list_transform:
    DuckDB does not share a sub-expression repeated inside CASE branches)."""
    return f"list_transform([{value}], lambda {name}: {body})[1]"


def _order_guard(v: str, formats: Sequence[str], refuse: Refuse) -> str:
    """`WHEN ... THEN error(...)`, after the declared formats failed, for a value their
    day/month swap reads: the file writes dates the other way round, so its ambiguous dates
    (`03/04/2024`) would be misread without any error. Empty when no format has a swap."""
    swapped = _swapped(formats)
    if not swapped:
        return ""
    problem = (
        f"which is not {' or '.join(formats)} but is {' or '.join(swapped)}: the file writes "
        "day and month the other way round, so its dates up to the 12th would be misread; "
        "the whole file is refused (fix the mapping's format or the export's date setting)"
    )
    return f"WHEN try_strptime({v}, {_list_sql(swapped)}) IS NOT NULL THEN {refuse(v, problem)}"


# Lambda parameter names: never a vendor column's SQL name, which they would shadow.
_P, _I = "__sp_parsed", "__sp_instant"


def _date_sql(v: str, formats: Sequence[str], refuse: Refuse) -> str:
    """Parse with the declared formats (ISO accepted too: XLSX dates arrive as ISO); unparsable
    text passes unchanged so typing reports it with the raw value kept; a value only the
    day/month swap reads refuses the file."""
    parsed = f"try_strptime({v}, {_list_sql([*formats, '%Y-%m-%d'])})"
    guard = _order_guard(v, formats, refuse)
    if not guard:
        return f"coalesce(strftime({parsed}, '%Y-%m-%d'), {v})"
    body = f"CASE WHEN {_P} IS NOT NULL THEN strftime({_P}, '%Y-%m-%d') {guard} ELSE {v} END"
    return _let(parsed, _P, body)


def _timestamp_sql(v: str, formats: Sequence[str], tz: str, refuse: Refuse) -> str:
    """Values that carry an offset are kept as they are; naive local times and date-only
    values (midnight) are read in the declared zone and written as that local time with the
    zone's offset at that instant (`2026-11-03T08:30:00+09:00`), never converted to UTC: the
    approval rule compares the approver's local date, which a UTC rendering would shift.
    Unparsable text passes unchanged (typing reports it); a value only the day/month swap
    reads refuses the file."""
    layouts = list(dict.fromkeys([*formats, *_ISO_TIMESTAMPS, "%Y-%m-%d"]))
    parsed = f"try_strptime({v}, {_list_sql(layouts)})"
    # The zone's offset at that instant. In a DST gap DuckDB takes the later offset; the text
    # keeps the wall-clock time as written, with the offset of that instant (same date).
    minutes = f"((epoch_ms({_P}) - epoch_ms({_I})) // 60000)"
    offset = (
        f"CASE WHEN {minutes} < 0 THEN '-' ELSE '+' END"
        f" || lpad(CAST(abs({minutes}) // 60 AS VARCHAR), 2, '0')"
        f" || ':' || lpad(CAST(abs({minutes}) % 60 AS VARCHAR), 2, '0')"
    )
    text = f"strftime({_P}, '%Y-%m-%dT%H:%M:%S') || {offset}"
    body = (
        f"CASE WHEN {_P} IS NOT NULL THEN {_let(f'timezone({sql_str(tz)}, {_P})', _I, text)}"
        f" {_order_guard(v, formats, refuse)} ELSE {v} END"
    )
    return (
        f"CASE WHEN regexp_matches({v}, '{_HAS_OFFSET}') THEN {v} ELSE {_let(parsed, _P, body)} END"
    )


def _identity_sql(r: ColumnRule, parts: Sequence[str], row_no: str) -> str:
    """A synthetic row ID for exports without one: a hash of the identifying values, plus the
    row's occurrence among rows with the same values (two identical entries stay two rows).

    Stable across exports of the same rows; identical rows are numbered in file order.
    """
    hashed = f"md5(concat_ws(chr(31), {', '.join(f'coalesce({p}, chr(0))' for p in parts)}))"
    occurrence = f"row_number() OVER (PARTITION BY {', '.join(parts)} ORDER BY {row_no})"
    all_null = " AND ".join(f"({p}) IS NULL" for p in parts)
    return (
        f"CASE WHEN {all_null} THEN NULL ELSE {sql_str(r.prefix)} || substr({hashed}, 1, 16)"
        f" || '-' || CAST({occurrence} AS VARCHAR) END"
    )


# -- validation helpers ------------------------------------------------------------------


def problem(text: str, where: str | None = None) -> PydanticCustomError:
    """A validation failure reported as `text`, as written. `where` overrides the place it is
    reported under (`[dataset.column]`). A plain `ValueError` is prefixed with its key instead."""
    return PydanticCustomError("mapping", "{text}", {"text": text, "where": where})


@dataclass(frozen=True)
class Context:
    """What validators need besides the TOML: the canonical dataset and a DuckDB to try
    formats, zones and patterns on. Models built without it skip those checks."""

    dataset: Dataset
    con: duckdb.DuckDBPyConnection


def _context(info: ValidationInfo) -> Context | None:
    return (info.context or {}).get("mapping")


def _scalar_text(value: object) -> str:
    """A TOML scalar as canonical text (`true` → "true", 1.5 → "1.5")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError("must be a string, number or boolean")


def _names(what: str) -> Callable[[object], tuple[str, ...]]:
    def check(value: object) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if (
            not isinstance(items, list | tuple)
            or not items
            or not all(isinstance(i, str) and i.strip() for i in items)
        ):
            raise ValueError(f"must be {what} or a non-empty list of them")
        return tuple(items)

    return check


#: A TOML scalar kept as the canonical text it stands for.
Text = Annotated[str, BeforeValidator(_scalar_text)]
#: One vendor (or canonical) column name, or a non-empty list of them.
Columns = Annotated[tuple[str, ...], BeforeValidator(_names("a column name"))]


def _check_with_duckdb(info: ValidationInfo, sql: str, what: str) -> None:
    """Let the engine that will run the expression judge it (formats, zones, patterns)."""
    ctx = _context(info)
    if ctx is None:
        return
    try:
        ctx.con.execute(f"SELECT {sql}").fetchall()
    except duckdb.Error as e:
        raise problem(f"{what}: {str(e).splitlines()[0]}") from None


# -- transforms: one model per transform, registered by name -----------------------------


class Transform(BaseModel):
    """What a vendor rule does to its value. The TOML writes the settings flat next to
    `transform = "<name>"`; they are this model's fields (by alias)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    #: The canonical column types the result may feed (None: any).
    feeds: ClassVar[frozenset[str] | None] = None
    name: str

    def sql(self, v: str, refuse: Refuse) -> str:
        """The value expression `v` transformed; `refuse` builds an error that stops the load."""
        raise NotImplementedError


#: Transform name (the TOML's `transform = "..."`) -> its model.
TRANSFORMS: dict[str, type[Transform]] = {}


_T = TypeVar("_T", bound=type[Transform])


def register_transform(cls: _T) -> _T:
    for name in get_args(cls.model_fields["name"].annotation):
        TRANSFORMS[name] = cls
    return cls


def _settings(cls: type[BaseModel]) -> list[str]:
    """The TOML keys of a model (its aliased fields)."""
    return [f.alias for f in cls.model_fields.values() if f.alias]


@register_transform
class HoursTransform(Transform):
    feeds = frozenset({"hours", "qty"})
    name: Literal["hours"]

    def sql(self, v: str, refuse: Refuse) -> str:
        return _hours_sql(v)


def _no_offset(formats: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    if any("%z" in f or "%Z" in f for f in formats):
        raise problem(
            "format must not parse an offset (%z): values with offsets are kept as they are"
        )
    _check_with_duckdb(info, f"try_strptime('2000-01-01', {_list_sql(formats)})", "bad format")
    return formats


#: One strptime format, or a non-empty list of them (tried in order), judged by DuckDB.
Formats = Annotated[
    tuple[str, ...],
    BeforeValidator(_names('a strptime format ("%d/%m/%Y")')),
    AfterValidator(_no_offset),
]


@register_transform
class DateTransform(Transform):
    feeds = frozenset({"date"})
    name: Literal["date"]
    formats: Formats = Field(alias="format", description='e.g. "%m/%d/%Y"')

    def sql(self, v: str, refuse: Refuse) -> str:
        return _date_sql(v, self.formats, refuse)


@register_transform
class TimestampTransform(Transform):
    feeds = frozenset({"timestamptz"})
    name: Literal["timestamp"]
    formats: Formats = Field((), alias="format")
    timezone: str = Field(alias="timezone", description='e.g. "Europe/Berlin"')

    @field_validator("timezone", mode="before")
    @classmethod
    def _iana_name(cls, tz: object, info: ValidationInfo) -> str:
        if not isinstance(tz, str) or not tz:
            raise problem('timezone must be an IANA name like "America/New_York"')
        what = f"bad timezone {tz!r}"
        _check_with_duckdb(info, f"timezone({sql_str(tz)}, TIMESTAMP '2000-01-01')", what)
        return tz

    def sql(self, v: str, refuse: Refuse) -> str:
        return _timestamp_sql(v, self.formats, self.timezone, refuse)


@register_transform
class ExtractTransform(Transform):
    name: Literal["extract"]
    pattern: StrictStr = Field(alias="pattern", description="a regex with one group")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, pattern: str, info: ValidationInfo) -> str:
        _check_with_duckdb(info, f"regexp_extract('', {sql_str(pattern)}, 1)", "bad pattern")
        return pattern

    def sql(self, v: str, refuse: Refuse) -> str:
        return f"coalesce(NULLIF(regexp_extract({v}, {sql_str(self.pattern)}, 1), ''), {v})"


@register_transform
class CaseTransform(Transform):
    name: Literal["upper", "lower"]

    def sql(self, v: str, refuse: Refuse) -> str:
        return f"{self.name}({v})"


#: A transform as a rule holds it: the model its `name` picks.
TransformSpec = Annotated[
    Union[tuple(dict.fromkeys(TRANSFORMS.values()))],  # noqa: UP007 (built from the registry)
    Discriminator("name"),
]
#: Transform setting (TOML key) -> the transforms that take it, in registry order.
_SETTINGS: dict[str, list[str]] = {}
for _name, _cls in TRANSFORMS.items():
    for _key in _settings(_cls):
        _SETTINGS.setdefault(_key, []).append(_name)


# -- column rules: one model per kind, registered by its TOML key -------------------------


class ColumnRule(BaseModel):
    """How one canonical column (`target`) is produced from a vendor row. Fields with an
    alias are the rule's TOML keys; the kind's own key is `kind`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    kind: ClassVar[str]
    target: str
    sources: tuple[str, ...] = ()  # vendor columns the file must hold (unless optional)
    parts: tuple[str, ...] = ()  # identity: the canonical columns that identify a row
    optional: bool = False

    @classmethod
    def toml_keys(cls) -> list[str]:
        return _settings(cls)

    @classmethod
    def extra_keys(cls, extra: list[str]) -> str:
        """The message for keys this kind does not take (other kinds do)."""
        takers = [k for k, c in KINDS.items() if extra[0] in c.toml_keys()]
        return f"{extra[0]} only applies to {' or '.join(takers)}"

    @model_validator(mode="before")
    @classmethod
    def _only_own_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            extra = sorted(set(data) - {"target", *cls.toml_keys()})
            if extra:
                raise problem(cls.extra_keys(extra))
        return data

    def sql(self, c: Compiled) -> str:
        raise NotImplementedError


#: Kind (the TOML key saying where the value comes from) -> its model.
KINDS: dict[str, type[ColumnRule]] = {}


_R = TypeVar("_R", bound=type[ColumnRule])


def register_kind(cls: _R) -> _R:
    KINDS[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Compiled:
    """What a rule's SQL is compiled against: one file's resolved columns."""

    cols: ResolvedColumns
    file_label: str
    origin: str
    row_no: str
    #: False leaves out the checks that refuse the file (they return the value instead):
    #: DuckDB refuses a volatile `error()` in an identity's PARTITION BY, and a file they
    #: refuse fails through the loud copy of the column anyway.
    loud: bool = True


class VendorRule(ColumnRule):
    """A value read from vendor columns, then transformed, value-mapped and defaulted, in
    that order."""

    optional: StrictBool = Field(False, alias="optional")
    transform: TransformSpec | None = Field(None, alias="transform")
    values: dict[str, Text] | None = Field(None, alias="values")
    unmapped: Unmapped = Field("keep", alias="unmapped")
    default: Text | None = Field(None, alias="default")

    @classmethod
    def toml_keys(cls) -> list[str]:
        return [*_settings(cls), *_SETTINGS]

    @model_validator(mode="before")
    @classmethod
    def _gather_transform(cls, data: Any) -> Any:
        """`transform = "date", format = "..."` -> `transform = {name = "date", format = ...}`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = data.pop("transform", None)
        settings = {k: data.pop(k) for k in _SETTINGS if k in data}
        if name is not None:
            if isinstance(name, Transform):
                data["transform"] = name
                return data
            if not isinstance(name, str) or name not in TRANSFORMS:
                known = ", ".join(TRANSFORMS)
                raise problem(f"unknown transform {name!r} (one of: {known})")
            data["transform"] = {"name": name, **settings}
        for key in settings:
            if name is None or key not in _settings(TRANSFORMS[name]):
                raise problem(f"{key} only applies to transform {' or '.join(_SETTINGS[key])}")
        if "unmapped" in data and "values" not in data:
            raise problem("unmapped only applies with values")
        return data

    @field_validator("values", mode="before")
    @classmethod
    def _a_table(cls, values: object) -> object:
        if not isinstance(values, dict) or not values:
            raise problem("values must be a table of vendor value = canonical value")
        return values

    @field_validator("values")
    @classmethod
    def _lower_keys(cls, values: dict[str, str] | None) -> dict[str, str] | None:
        """Matching ignores case: keys are kept lower-cased and must stay distinct."""
        if values is None:
            return None
        pairs: dict[str, str] = {}
        for k, t in values.items():
            key = k.strip().lower()
            if key in pairs:
                raise problem(f"values lists {k!r} twice (matching ignores case)")
            pairs[key] = t
        return pairs

    @model_validator(mode="after")
    def _transform_feeds_target(self, info: ValidationInfo) -> VendorRule:
        ctx, t = _context(info), self.transform
        if ctx is None or t is None or t.feeds is None:
            return self
        col_type = ctx.dataset.column(self.target).type
        if col_type not in t.feeds:
            raise problem(
                f"transform {t.name!r} cannot feed {self.target} (a {col_type} column; "
                f"it feeds {', '.join(sorted(t.feeds))} columns)"
            )
        return self

    def value_sql(self, parts: list[str]) -> str:
        """The raw value from the vendor cells (each trimmed text or NULL)."""
        raise NotImplementedError

    def sql(self, c: Compiled) -> str:
        v = self.value_sql([_src_sql(c.cols.by_source[s]) for s in self.sources])
        shown = ", ".join(self.sources) or self.target

        def refuse(value: str, problem: str) -> str:
            """An error that stops the load (one transaction: nothing of the file lands)."""
            if not c.loud:
                return value
            return (
                f"error({sql_str(f'{c.file_label}: column {shown!r} (for {self.target}) has the value ')}"
                f" || {value} || ' (row ' || CAST({c.row_no} AS VARCHAR) || '), ' || "
                f"{sql_str(f'{problem} [mapping {c.origin}]')})"
            )

        if self.transform is not None:
            v = self.transform.sql(v, refuse)
        if self.values:
            v = self._values_sql(v, c, shown)
        if self.default is not None:
            v = f"coalesce(NULLIF({v}, ''), {sql_str(self.default)})"
        return v

    def _values_sql(self, v: str, c: Compiled, shown: str) -> str:
        whens = " ".join(f"WHEN {sql_str(k)} THEN {sql_str(t)}" for k, t in self.values.items())
        if self.unmapped == "null":
            other = "CAST(NULL AS VARCHAR)"
        elif self.unmapped == "error" and c.loud:
            other = (
                f"error({sql_str(f'{c.file_label}: column {shown!r} has the value ')} || {v} || "
                f"{sql_str(f' that mapping {c.origin} does not map for {self.target} (row ')} || "
                f"CAST({c.row_no} AS VARCHAR) || ')')"
            )
        else:
            other = v
        return f"CASE WHEN {v} IS NULL THEN NULL ELSE CASE lower({v}) {whens} ELSE {other} END END"


@register_kind
class SourceRule(VendorRule):
    """One vendor column's text."""

    kind = "source"
    sources: Columns = Field(alias="source")

    @field_validator("sources")
    @classmethod
    def _one(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        if len(sources) != 1:
            raise problem("source takes one column; use concat for several")
        return sources

    def value_sql(self, parts: list[str]) -> str:
        return parts[0]


@register_kind
class CoalesceRule(VendorRule):
    """The first non-empty of several vendor columns."""

    kind = "coalesce"
    sources: Columns = Field(alias="coalesce")

    def value_sql(self, parts: list[str]) -> str:
        return f"coalesce({', '.join(parts)})"


@register_kind
class ConcatRule(VendorRule):
    """The non-empty vendor columns joined by `separator`."""

    kind = "concat"
    sources: Columns = Field(alias="concat")
    separator: StrictStr = Field(" ", alias="separator")

    def value_sql(self, parts: list[str]) -> str:
        return f"NULLIF(concat_ws({sql_str(self.separator)}, {', '.join(parts)}), '')"


@register_kind
class ConstantRule(ColumnRule):
    """The same text on every row (`false` is written `false`)."""

    kind = "constant"
    constant: Text = Field(alias="constant")

    @classmethod
    def extra_keys(cls, extra: list[str]) -> str:
        return f"a constant takes no other keys (found {', '.join(extra)})"

    def sql(self, c: Compiled) -> str:
        return sql_str(self.constant)


@register_kind
class IdentityRule(ColumnRule):
    """A synthetic row ID from canonical columns this mapping fills (`_identity_sql`)."""

    kind = "identity"
    parts: Columns = Field(alias="identity")
    prefix: StrictStr = Field("", alias="prefix")

    @classmethod
    def extra_keys(cls, extra: list[str]) -> str:
        return f"identity takes only prefix (found {', '.join(extra)})"


#: Every key a column rule may have.
_KEYS = frozenset(k for c in KINDS.values() for k in c.toml_keys())


def parse_rule(target: str, spec: object, context: Context) -> ColumnRule:
    """One `target = spec` line of a dataset table as its rule model (pydantic errors are
    turned into `MappingError`s by the caller)."""
    ds = context.dataset
    if target not in ds.column_names:
        raise problem(
            f"{target!r} is not a canonical {ds.name} column (one of: {', '.join(ds.column_names)})"
        )
    if isinstance(spec, str):
        if not spec.strip():
            raise problem("the source column name is empty")
        spec = {"source": spec}
    if not isinstance(spec, dict):
        raise problem("must be a vendor column name or a table (see docs/mappings.md)")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        allowed = ", ".join(sorted(_KEYS))
        raise problem(f"unknown key(s) {', '.join(unknown)} (allowed: {allowed})")
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise problem(f"needs exactly one of {', '.join(KINDS)}")
    return KINDS[kinds[0]].model_validate({**spec, "target": target}, context={"mapping": context})


# -- a dataset's rules and a mapping file ------------------------------------------------


@dataclass(frozen=True)
class ResolvedColumns:
    """A mapping's source columns resolved against one file's header."""

    by_source: dict[
        str, str | None
    ]  # mapping's source name -> header name in the file (None: absent)


class DatasetMapping(BaseModel):
    """The rules of one dataset; canonical columns without a rule are NULL."""

    model_config = ConfigDict(frozen=True)
    dataset: str
    rules: tuple[ColumnRule, ...]
    origin: str  # the mapping file's name, for messages

    @model_validator(mode="after")
    def _identities_and_key(self) -> DatasetMapping:
        key = self.dataset
        mapped = {r.target for r in self.rules}
        plain = {r.target for r in self.rules if r.kind != "identity"}
        for r in self.rules:
            wrong = [p for p in r.parts if p not in plain]
            if wrong:
                raise problem(
                    f"identity lists {', '.join(map(repr, wrong))}: it takes canonical "
                    f"{key} columns that this mapping fills from the file "
                    f"(mapped here: {', '.join(sorted(plain))})",
                    where=f"[{key}.{r.target}]:",
                )
        ds = self.spec
        unmapped_keys = [k for k in ds.key if k not in ds.key_nullable and k not in mapped]
        if unmapped_keys:
            raise problem(
                f"does not map key column(s) {', '.join(unmapped_keys)}: every row needs an "
                "identity (use identity = [...] if the export has no ID)"
            )
        return self

    @property
    def spec(self) -> Dataset:
        return DATASETS[self.dataset]

    def source_types(self) -> dict[str, str]:
        """Normalised vendor column -> canonical type, for columns copied into one typed column.

        The XLSX reader uses it to write numbers in a date column (Excel serials) as dates.
        """
        out: dict[str, str] = {}
        for r in self.rules:
            if r.kind in ("source", "coalesce"):
                for s in r.sources:
                    out[normalise_header(s)] = self.spec.column(r.target).type
        return out

    def resolve(self, header: Sequence[tuple[str, str]], file_label: str) -> ResolvedColumns:
        """Find each source column in the file; refuse a file missing a required one, or
        holding it twice (`Notes` and `notes`: which one was meant is a guess)."""
        by_norm: dict[str, list[tuple[str, str]]] = {}
        for label, name in header:
            by_norm.setdefault(normalise_header(label), []).append((label, name))
        found: dict[str, str | None] = {}
        missing: list[str] = []
        for r in self.rules:
            for s in r.sources:
                hits = by_norm.get(normalise_header(s), [])
                if len(hits) > 1:
                    raise MappingError(
                        f"{file_label}: column {s!r} (for {r.target}) appears "
                        f"{len(hits)} times in the header "
                        f"({', '.join(repr(label) for label, _ in hits)})"
                    )
                if not hits and not r.optional:
                    missing.append(f"{s!r} (for {r.target})")
                found[s] = hits[0][1] if hits else None
        if missing:
            raise MappingError(
                f"{file_label}: missing column(s) {', '.join(dict.fromkeys(missing))} "
                f"required by mapping {self.origin} [{self.dataset}]"
            )
        return ResolvedColumns(found)

    def column_sql(
        self, header: Sequence[tuple[str, str]], file_label: str, row_no: str
    ) -> dict[str, str]:
        """Canonical column -> DuckDB expression over the file's columns (text or NULL).

        `header` pairs each column's label as written in the file with its SQL name;
        `row_no` is the SQL of the record's row number (for identities and error messages).
        """
        loud = Compiled(self.resolve(header, file_label), file_label, self.origin, row_no)
        out = {r.target: r.sql(loud) for r in self.rules if r.kind != "identity"}
        quiet = replace(loud, loud=False)
        for r in self.rules:
            if r.kind == "identity":  # over the mapped values: CSV and XLSX give the same IDs
                by_target = {q.target: q.sql(quiet) for q in self.rules if q.target in r.parts}
                out[r.target] = _identity_sql(r, [by_target[p] for p in r.parts], row_no)
        return out


class SourceMapping(BaseModel):
    """A vendor's mapping file: rules for some datasets (the others are read as canonical)."""

    model_config = ConfigDict(frozen=True)
    name: StrictStr
    origin: str
    description: StrictStr | None = None
    datasets: dict[str, DatasetMapping] = Field(default_factory=dict)

    @field_validator("datasets")
    @classmethod
    def _some(cls, datasets: dict[str, DatasetMapping]) -> dict[str, DatasetMapping]:
        if not datasets:
            raise problem("maps no dataset (add a [time_entries] table, ...)")
        return datasets

    def __hash__(self) -> int:  # FileFormat is a frozen dataclass that holds one
        return hash((self.name, self.origin))

    def for_dataset(self, dataset: str) -> DatasetMapping | None:
        return self.datasets.get(dataset)


# -- loading -----------------------------------------------------------------------------


def _describe(err: Mapping[str, Any]) -> tuple[str | None, str]:
    """(where it is reported, if not the default; the problem, naming the offending key)."""
    ctx = err.get("ctx") or {}
    if err["type"] == "mapping":
        return ctx.get("where"), ctx["text"]
    loc = [str(p) for p in err["loc"]]
    tag = None
    if loc[:1] == ["transform"] and len(loc) > 1:  # (transform, <name>, <setting>)
        tag, loc = loc[1], loc[2:]
    key = ".".join(loc)
    hint = None
    if tag in TRANSFORMS:  # a setting's description is the hint (e.g. "%m/%d/%Y")
        fields = TRANSFORMS[tag].model_fields.values()
        hint = next((f.description for f in fields if f.alias == key), None)
    t = err["type"]
    if t == "value_error":
        text = str(ctx["error"])
    elif t == "missing" and tag is not None:
        return None, f"transform {tag!r} needs {key}" + (f" ({hint})" if hint else "")
    elif t == "string_type":
        text = "must be a string" + (f" ({hint})" if hint else "")
    elif t == "bool_type":
        text = "must be true or false"
    elif t == "literal_error":
        text = f"must be one of {ctx['expected']}"
    else:
        text = f"is invalid: {err['msg']}"
    return None, f"{key} {text}" if key else text


def _mapping_error(
    e: ValidationError | PydanticCustomError, origin: str, where: str
) -> MappingError:
    """The first problem pydantic found, as `mapping <file>: [<dataset>.<column>]: <problem>`."""
    if isinstance(e, PydanticCustomError):
        err: Mapping[str, Any] = {"type": e.type, "loc": (), "msg": e.message(), "ctx": e.context}
    else:
        err = e.errors()[0]
    place, text = _describe(err)
    place = place if place is not None else where
    return MappingError(
        f"mapping {origin}: {place} {text}" if place else f"mapping {origin}: {text}"
    )


def _parse_dataset(
    key: str, section: object, origin: str, con: duckdb.DuckDBPyConnection
) -> DatasetMapping:
    if key not in DATASETS:
        raise MappingError(
            f"mapping {origin}: [{key}] is not a dataset (one of: {', '.join(DATASETS)})"
        )
    if not isinstance(section, dict) or not section:
        raise MappingError(f"mapping {origin}: [{key}] must be a table of column rules")
    context = Context(DATASETS[key], con)
    rules = []
    for target, spec in section.items():
        try:
            rules.append(parse_rule(target, spec, context))
        except (ValidationError, PydanticCustomError) as e:
            raise _mapping_error(e, origin, f"[{key}.{target}]:") from None
    try:
        return DatasetMapping(dataset=key, rules=tuple(rules), origin=origin)
    except ValidationError as e:
        raise _mapping_error(e, origin, f"[{key}]") from None


def parse_mapping(data: Mapping[str, Any], origin: str) -> SourceMapping:
    """Validate a parsed TOML document and build the mapping (`origin` names it in errors)."""
    head = {k: data[k] for k in ("name", "description") if k in data}
    con = duckdb.connect()
    try:
        datasets = {
            key: _parse_dataset(key, section, origin, con)
            for key, section in data.items()
            if key not in head
        }
    finally:
        con.close()
    try:
        return SourceMapping(**{"name": origin, **head}, origin=origin, datasets=datasets)
    except ValidationError as e:
        raise _mapping_error(e, origin, "") from None


def resolve_mapping_path(ref: str | Path) -> Path:
    """A path as given, or the name of a shipped mapping (`harvest_detailed_time`)."""
    path = Path(ref)
    if path.exists() or path.suffix or "/" in str(ref) or "\\" in str(ref):
        return path
    return MAPPINGS_DIR / f"{ref}.toml"


def load_mapping(ref: str | Path) -> SourceMapping:
    """Read and validate a mapping file (stdlib tomllib); errors name the file and the column."""
    path = resolve_mapping_path(ref)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        shipped = ", ".join(sorted(p.stem for p in MAPPINGS_DIR.glob("*.toml")))
        raise MappingError(
            f"mapping file {path} does not exist (shipped mappings: {shipped})"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"mapping {path.name}: not valid TOML: {e}") from None
    return parse_mapping(data, path.name)
