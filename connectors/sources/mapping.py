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
- `ColumnRule`: one canonical column (or a `_helper` column other rules read). Its *kind* is
  the one key that says where the value comes from; one model per kind, registered in `KINDS`
  by that key: `SourceRule`, `CoalesceRule`, `ConcatRule` (vendor columns, all
  `VendorRule`s), `ConstantRule`, `IdentityRule`, `KeyRule` (a stable hash of columns),
  `ExprRule` (exact arithmetic, `mapping_expr`), `HeaderRule` (a value in a header label),
  `FileTimeRule`, `CopyRule`. Any rule may carry a `Condition` (`when`, `otherwise`).
- Sections besides the datasets: `FormatSection` (`[format]`, per mapping or dataset),
  `[headers]` aliases, a dataset's `files` globs, `ApprovalPolicy` (`[time_entries.approval]`,
  compiled into ordinary rules), `[derived.<dataset>]` (master data derived from the time
  export, `staging_models.derived`) and `ProjectDefault`s.
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

import fnmatch
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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

from connectors.sources import mapping_expr
from connectors.sources.archive import ArchiveSpec
from connectors.sources.canonical import DATASETS, DECIMALS, Dataset
from connectors.sql import quote_ident, sql_literal

MAPPINGS_DIR = Path(__file__).parent / "mappings"
#: Canonical column name -> its type (the scale an `expr` result is rounded to).
DATASETS_BY_TARGET: dict[str, str] = {
    c.name: c.type for d in reversed(list(DATASETS.values())) for c in d.columns
}

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


# -- SQL ---------------------------------------------------------------------------------


def _src_sql(name: str | None) -> str:
    """A vendor cell as trimmed text, empty as NULL (an absent optional column is NULL)."""
    if name is None:
        return "CAST(NULL AS VARCHAR)"
    return f"NULLIF(trim(CAST({quote_ident(name)} AS VARCHAR)), '')"


#: `1h 30m`, `1h`, `45m 10s` (Toggl, Clockify compact; spaces optional, case ignored).
_HMS = r"([0-9]+ *h)? *([0-9]+ *m(in)?)? *([0-9]+ *s)?"
#: ISO 8601 durations without days: `PT1H30M`, `PT45M10S` (APIs, Clockify, solidtime).
_ISO_DURATION = r"PT([0-9]+H)?([0-9]+M)?([0-9]+S)?"


def _seconds_sql(v: str) -> str:
    """Whole seconds of a duration spelled `H:MM`, `H:MM:SS`, `1h 30m`, `90m` or `PT1H30M`,
    else NULL (a BIGINT; set-based, no float)."""

    def part(pattern: str) -> str:
        return f"coalesce(TRY_CAST(NULLIF(regexp_extract(lower({v}), '{pattern}', 1), '') AS BIGINT), 0)"

    hmm = (
        f"(CAST(regexp_extract({v}, '^([0-9]+):', 1) AS BIGINT) * 3600"
        f" + CAST(regexp_extract({v}, '^[0-9]+:([0-9]{{2}})', 1) AS BIGINT) * 60"
        f" + coalesce(TRY_CAST(NULLIF(regexp_extract({v}, ':[0-9]{{2}}:([0-9]{{2}})$', 1), '')"
        " AS BIGINT), 0))"
    )
    words = f"({part('([0-9]+) *h')} * 3600 + {part('([0-9]+) *m')} * 60 + {part('([0-9]+) *s')})"
    return (
        f"CASE WHEN regexp_full_match({v}, '{_HMM}') THEN {hmm}"
        f" WHEN regexp_full_match(upper({v}), '{_ISO_DURATION}') AND length({v}) > 2"
        f" THEN {words}"
        f" WHEN regexp_full_match(lower({v}), '{_HMS}') AND regexp_matches({v}, '[0-9]')"
        f" THEN {words} END"
    )


def _hours_sql(v: str) -> str:
    """A duration (`H:MM`, `H:MM:SS`, `1h 30m`, `PT1H30M`, see `_seconds_sql`) → decimal
    hours, rounded half up to 4 places (the canonical scale), as text with at least 2
    decimals: "2:30" → "2.50", "0:20" → "0.3333". Other text (decimal hours) passes.

    Integer arithmetic in seconds: 10000 * s / 3600 = 25 s / 9, whose fraction is a ninth,
    never exactly one half, so rounding is unambiguous and no float is involved.
    """
    secs = _seconds_sql(v)
    units = f"(({secs} * 50 + 9) // 18)"
    text = f"CAST({units} // 10000 AS VARCHAR) || '.' || lpad(CAST({units} % 10000 AS VARCHAR), 4, '0')"
    tidy = f"regexp_replace({text}, '(\\.[0-9]{{2}}[0-9]*?)0+$', '\\1')"
    return f"CASE WHEN {secs} IS NOT NULL THEN {tidy} ELSE {v} END"


def _list_sql(items: Sequence[str]) -> str:
    return "[" + ", ".join(sql_literal(i) for i in items) + "]"


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
        f"CASE WHEN {_P} IS NOT NULL THEN {_let(f'timezone({sql_literal(tz)}, {_P})', _I, text)}"
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
        f"CASE WHEN {all_null} THEN NULL ELSE {sql_literal(r.prefix)} || substr({hashed}, 1, 16)"
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


def _iana_zone(tz: object, info: ValidationInfo) -> str:
    if not isinstance(tz, str) or not tz:
        raise problem('timezone must be an IANA name like "America/New_York"')
    what = f"bad timezone {tz!r}"
    _check_with_duckdb(info, f"timezone({sql_literal(tz)}, TIMESTAMP '2000-01-01')", what)
    return tz


@register_transform
class TimestampTransform(Transform):
    feeds = frozenset({"timestamptz"})
    name: Literal["timestamp"]
    formats: Formats = Field((), alias="format")
    timezone: str = Field(alias="timezone", description='e.g. "Europe/Berlin"')

    @field_validator("timezone", mode="before")
    @classmethod
    def _iana_name(cls, tz: object, info: ValidationInfo) -> str:
        return _iana_zone(tz, info)

    def sql(self, v: str, refuse: Refuse) -> str:
        return _timestamp_sql(v, self.formats, self.timezone, refuse)


@register_transform
class ExtractTransform(Transform):
    name: Literal["extract"]
    pattern: StrictStr = Field(alias="pattern", description="a regex with one group")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, pattern: str, info: ValidationInfo) -> str:
        _check_with_duckdb(info, f"regexp_extract('', {sql_literal(pattern)}, 1)", "bad pattern")
        return pattern

    def sql(self, v: str, refuse: Refuse) -> str:
        return f"coalesce(NULLIF(regexp_extract({v}, {sql_literal(self.pattern)}, 1), ''), {v})"


@register_transform
class SecondsTransform(Transform):
    """A duration in any spelling `hours` reads, as whole seconds (Toggl's `Duration`,
    Clockify's `Duration (h)`): amounts are then computed from the exact duration."""

    feeds = frozenset({"int"})
    name: Literal["seconds"]

    def sql(self, v: str, refuse: Refuse) -> str:
        return f"coalesce(CAST({_seconds_sql(v)} AS VARCHAR), {v})"


@register_transform
class NumberTransform(Transform):
    """A number written with group separators: `1,200.0` (decimal = "."), `1.200,5` or
    `2.000,0` (decimal = ","), `1 200,5`. Group separators are dropped only where the digits
    really are grouped by three; other text passes for typing to report."""

    name: Literal["number"]
    decimal: Literal[".", ","] = Field(".", alias="decimal")

    def sql(self, v: str, refuse: Refuse) -> str:
        group = "," if self.decimal == "." else "."
        g, d = (r"\." if c == "." else c for c in (group, self.decimal))
        grouped = f"[+-]?[0-9]{{1,3}}(({g}|[ \u00a0\u202f])[0-9]{{3}})+({d}[0-9]*)?"
        plain = f"[+-]?[0-9]*({d}[0-9]*)?"
        strip = f"regexp_replace({v}, '({g}|[ \u00a0\u202f])', '', 'g')"
        out = strip if self.decimal == "." else f"replace({strip}, ',', '.')"
        simple = v if self.decimal == "." else f"replace({v}, ',', '.')"
        return (
            f"CASE WHEN regexp_full_match({v}, '{grouped}') THEN {out}"
            f" WHEN regexp_full_match({v}, '{plain}') THEN {simple} ELSE {v} END"
        )


@register_transform
class LocalDateTransform(Transform):
    """The local date of an instant in `timezone` (solidtime writes UTC `...Z`: an entry
    started at 23:30 UTC is worked on the next day in Berlin). A value without an offset is
    read in `source_timezone` (default UTC)."""

    feeds = frozenset({"date"})
    name: Literal["local_date"]
    timezone: str = Field(alias="timezone", description='e.g. "Europe/Berlin"')
    source_timezone: str = Field("UTC", alias="source_timezone")

    @field_validator("timezone", "source_timezone", mode="before")
    @classmethod
    def _iana(cls, tz: object, info: ValidationInfo) -> str:
        return _iana_zone(tz, info)

    def sql(self, v: str, refuse: Refuse) -> str:
        instant = (
            f"CASE WHEN regexp_matches({v}, '{_HAS_OFFSET}') THEN TRY_CAST({v} AS TIMESTAMPTZ)"
            f" ELSE timezone({sql_literal(self.source_timezone)},"
            f" try_strptime({v}, {_list_sql(_ISO_TIMESTAMPS)})) END"
        )
        local = f"strftime(timezone({sql_literal(self.timezone)}, {instant}), '%Y-%m-%d')"
        return f"coalesce({local}, {v})"


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


class Condition(BaseModel):
    """`when = { column = "Approved?", in = ["Yes"] }`: a rule applies only to rows whose
    vendor column holds one of the values (`in`), none of them (`not_in`), or any value
    (`set = true`) or none (`set = false`). Values compare trimmed and case-insensitively."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    column: StrictStr = Field(alias="column")
    is_in: tuple[Text, ...] | None = Field(None, alias="in")
    not_in: tuple[Text, ...] | None = Field(None, alias="not_in")
    is_set: StrictBool | None = Field(None, alias="set")

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [t for t in (self.is_in, self.not_in, self.is_set) if t is not None]
        if len(tests) != 1:
            raise problem("when takes a column and exactly one of in, not_in, set")
        return self

    def sql(self, v: str) -> str:
        """The test over the column's trimmed text `v` (NULL when empty)."""
        if self.is_set is not None:
            return f"({v} IS {'NOT ' if self.is_set else ''}NULL)"
        values = self.is_in if self.is_in is not None else self.not_in
        listed = ", ".join(sql_literal(x.strip().lower()) for x in values or ())
        test = f"lower({v}) IN ({listed})"
        return (
            f"coalesce({test}, FALSE)" if self.is_in is not None else f"NOT coalesce({test}, FALSE)"
        )


class ColumnRule(BaseModel):
    """How one canonical column (`target`) is produced from a vendor row. Fields with an
    alias are the rule's TOML keys; the kind's own key is `kind`. Any rule may hold a
    `when` condition: rows that fail it get `otherwise` (a constant) or nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    kind: ClassVar[str]
    target: str
    sources: tuple[str, ...] = ()  # vendor columns the file must hold (unless optional)
    parts: tuple[str, ...] = ()  # identity: the canonical columns that identify a row
    optional: bool = False
    when: Condition | None = Field(None, alias="when")
    otherwise: Text | None = Field(None, alias="otherwise")

    @model_validator(mode="after")
    def _otherwise_needs_when(self) -> ColumnRule:
        if self.otherwise is not None and self.when is None:
            raise problem("otherwise only applies with when")
        return self

    def columns(self) -> tuple[tuple[str, bool], ...]:
        """(vendor column, optional) the rule reads: its sources and its condition's column."""
        out = tuple((src, self.optional) for src in self.sources)
        if self.when is not None:
            out += ((self.when.column, False),)
        return out

    def refs(self) -> tuple[str, ...]:
        """Columns of the same mapping this rule reads (identity, key, expr)."""
        return self.parts

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

    def value(self, c: Compiled) -> str:
        """The value SQL, before the condition."""
        raise NotImplementedError

    def sql(self, c: Compiled) -> str:
        v = self.value(c)
        if self.when is None:
            return v
        test = self.when.sql(_src_sql(c.cols.by_source[self.when.column]))
        other = (
            sql_literal(self.otherwise) if self.otherwise is not None else "CAST(NULL AS VARCHAR)"
        )
        return f"CASE WHEN {test} THEN {v} ELSE {other} END"


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
    #: The file's header labels as written (for `header` rules).
    labels: tuple[str, ...] = ()
    #: When the file was exported: its modification time, UTC, as canonical text.
    file_time: str | None = None
    #: A column of the same mapping by name -> its value SQL (expr, key and identity parts).
    ref: Callable[[str], str] | None = None
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
        if ctx is None or t is None or t.feeds is None or self.target.startswith("_"):
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

    def columns(self) -> tuple[tuple[str, bool], ...]:
        return tuple((s, o) for s, o in super().columns() if not s.startswith("_"))

    def refs(self) -> tuple[str, ...]:
        """Sources named `_x` are helper columns of the mapping, not vendor columns."""
        return tuple(s for s in self.sources if s.startswith("_"))

    def value(self, c: Compiled) -> str:
        v = self.value_sql(
            [
                c.ref(s) if s.startswith("_") and c.ref else _src_sql(c.cols.by_source[s])
                for s in self.sources
            ]
        )
        shown = ", ".join(self.sources) or self.target

        def refuse(value: str, problem: str) -> str:
            """An error that stops the load (one transaction: nothing of the file lands)."""
            if not c.loud:
                return value
            return (
                f"error({sql_literal(f'{c.file_label}: column {shown!r} (for {self.target}) has the value ')}"
                f" || {value} || ' (row ' || CAST({c.row_no} AS VARCHAR) || '), ' || "
                f"{sql_literal(f'{problem} [mapping {c.origin}]')})"
            )

        if self.transform is not None:
            v = self.transform.sql(v, refuse)
        if self.values:
            v = self._values_sql(v, c, shown)
        if self.default is not None:
            v = f"coalesce(NULLIF({v}, ''), {sql_literal(self.default)})"
        return v

    def _values_sql(self, v: str, c: Compiled, shown: str) -> str:
        whens = " ".join(
            f"WHEN {sql_literal(k)} THEN {sql_literal(t)}" for k, t in self.values.items()
        )
        if self.unmapped == "null":
            other = "CAST(NULL AS VARCHAR)"
        elif self.unmapped == "error" and c.loud:
            other = (
                f"error({sql_literal(f'{c.file_label}: column {shown!r} has the value ')} || {v} || "
                f"{sql_literal(f' that mapping {c.origin} does not map for {self.target} (row ')} || "
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
        return f"NULLIF(concat_ws({sql_literal(self.separator)}, {', '.join(parts)}), '')"


@register_kind
class ConstantRule(ColumnRule):
    """The same text on every row (`false` is written `false`)."""

    kind = "constant"
    constant: Text = Field(alias="constant")

    @classmethod
    def extra_keys(cls, extra: list[str]) -> str:
        return f"a constant takes only when and otherwise (found {', '.join(extra)})"

    def value(self, c: Compiled) -> str:
        return sql_literal(self.constant)


@register_kind
class IdentityRule(ColumnRule):
    """A synthetic row ID from canonical columns this mapping fills (`_identity_sql`)."""

    kind = "identity"
    parts: Columns = Field(alias="identity")
    prefix: StrictStr = Field("", alias="prefix")

    @classmethod
    def extra_keys(cls, extra: list[str]) -> str:
        return f"identity takes only prefix (found {', '.join(extra)})"


@register_kind
class KeyRule(ColumnRule):
    """A stable row ID from columns this mapping fills (`key = ["employee_id", "_start"]`):
    a hash of their values and nothing else, so it does not depend on the row's place in
    the file. Deleting one entry and exporting again leaves every other entry's ID as it
    was (an `identity` numbers repeated values in file order: a deletion shifts them). Two
    rows with the same values are one entry: the same content lands once, a different one
    is quarantined as a duplicate conflict."""

    kind = "key"
    parts: Columns = Field(alias="key")
    prefix: StrictStr = Field("", alias="prefix")

    @classmethod
    def extra_keys(cls, extra: list[str]) -> str:
        return f"key takes only prefix (found {', '.join(extra)})"

    def value(self, c: Compiled) -> str:
        assert c.ref is not None
        values = [c.ref(p) for p in self.parts]
        hashed = f"md5(concat_ws(chr(31), {', '.join(f'coalesce({p}, chr(0))' for p in values)}))"
        all_null = " AND ".join(f"({p}) IS NULL" for p in values)
        return f"CASE WHEN {all_null} THEN NULL ELSE {sql_literal(self.prefix)} || substr({hashed}, 1, 20) END"


@register_kind
class ExprRule(ColumnRule):
    """Arithmetic over columns this mapping fills (`mapping_expr`): `duration = end - start`,
    `rate = amount / hours`, cents to units. Exact decimals, rounded once to the target's
    scale."""

    kind = "expr"
    expr: StrictStr = Field(alias="expr")

    @field_validator("expr")
    @classmethod
    def _valid(cls, text: str) -> str:
        try:
            mapping_expr.names(text)
        except mapping_expr.ExprError as e:
            raise problem(str(e)) from None
        return text

    def refs(self) -> tuple[str, ...]:
        return tuple(mapping_expr.names(self.expr))

    def value(self, c: Compiled) -> str:
        assert c.ref is not None
        exact = mapping_expr.compile_sql(self.expr, c.ref)
        spec = DATASETS_BY_TARGET.get(self.target)
        scale = DECIMALS[spec][1] if spec in DECIMALS else (0 if spec == "int" else 12)
        return mapping_expr.to_text_sql(exact, scale)


@register_kind
class HeaderRule(ColumnRule):
    """A value written in the file's header, not on its rows: the currency in Toggl's
    `Amount (EUR)` or Clockify's `Billable Rate (EUR)`. `header` is a glob over the labels
    (case ignored), `capture` a regex whose first group is the value; no matching label, or
    an empty group (`Amount ()`), gives nothing (then the default, else a quarantine)."""

    kind = "header"
    header: StrictStr = Field(alias="header")
    capture: StrictStr = Field(r"\((.*)\)", alias="capture")

    @field_validator("capture")
    @classmethod
    def _regex(cls, pattern: str, info: ValidationInfo) -> str:
        _check_with_duckdb(info, f"regexp_extract('', {sql_literal(pattern)}, 1)", "bad capture")
        return pattern

    def value(self, c: Compiled) -> str:
        for label in c.labels:
            if _glob_match(self.header, label):
                found = re.search(self.capture, label)
                if found and found.group(1).strip():
                    return sql_literal(found.group(1).strip())
        return "CAST(NULL AS VARCHAR)"


@register_kind
class FileTimeRule(ColumnRule):
    """When the file was exported (`file_time = "modified"`): its modification time in UTC,
    the same on every row. For exports with no time of their own (an approval policy)."""

    kind = "file_time"
    file_time: Literal["modified"] = Field(alias="file_time")

    def value(self, c: Compiled) -> str:
        if c.file_time is None:
            return "CAST(NULL AS VARCHAR)"
        return sql_literal(c.file_time)


def _glob_match(pattern: str, label: str) -> bool:
    """A header glob (`Amount (*)`) against a label as written (case and BOM ignored)."""
    return fnmatch.fnmatchcase(label.strip().lstrip("\ufeff").lower(), pattern.strip().lower())


def _all_keys() -> frozenset[str]:
    """Every key a column rule may have."""
    return frozenset(k for c in KINDS.values() for k in c.toml_keys())


def parse_rule(target: str, spec: object, context: Context) -> ColumnRule:
    """One `target = spec` line of a dataset table as its rule model (pydantic errors are
    turned into `MappingError`s by the caller)."""
    ds = context.dataset
    if target not in ds.column_names and not target.startswith("_"):
        raise problem(
            f"{target!r} is not a canonical {ds.name} column (one of: "
            f"{', '.join(ds.column_names)}), nor a helper column (a name starting with _)"
        )
    if isinstance(spec, str):
        if not spec.strip():
            raise problem("the source column name is empty")
        spec = {"source": spec}
    if not isinstance(spec, dict):
        raise problem("must be a vendor column name or a table (see docs/mappings.md)")
    keys = _all_keys()
    unknown = sorted(set(spec) - keys)
    if unknown:
        allowed = ", ".join(sorted(keys))
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


FORMAT_KEYS = ("delimiter", "decimal_comma", "encoding", "sheet", "header_row")


class FormatSection(BaseModel):
    """`[format]`: how the files this mapping takes are written, whatever the source's own
    settings say (a `;` vendor file beside comma-separated master data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    delimiter: StrictStr | None = None
    decimal_comma: StrictBool | None = None
    encoding: StrictStr | None = None
    sheet: StrictStr | None = None
    header_row: int | None = Field(None, ge=1)

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, d: str | None) -> str | None:
        d = "\t" if d in ("tab", "\\t") else d
        if d is not None and len(d) != 1:
            raise ValueError('must be one character, or "tab"')
        return d

    @field_validator("encoding")
    @classmethod
    def _known(cls, e: str | None) -> str | None:
        import codecs

        if e is not None:
            try:
                codecs.lookup(e)
            except LookupError:
                raise ValueError(f"{e!r} is not an encoding Python knows") from None
        return e

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ApprovalPolicy(BaseModel):
    """`[time_entries.approval]`: what approval means for a PSA whose export has no approval
    time. It becomes ordinary rules for approval_status, approved_at, approved_at_source and
    approved_by (so the audit trail says where each approval time came from):

    - `column` and `approved`: the vendor column and the values that mean approved (Harvest's
      `Approved?` = Yes); the other rows get `other` (default `submitted`). Without a column
      every exported entry counts as approved (the PSA has no approval step: say so here).
    - `approved_at`: where the time comes from: `export_time` (the file's modification time:
      when it was exported, or pulled), `updated_at` (the entry's own last change, as this
      mapping fills it), or `column` (a vendor column such as a lock or close time, read with
      `format` and `timezone`).
    - `approved_by`: who is recorded as the approver (a constant), if anyone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: StrictStr | None = None
    approved: tuple[Text, ...] = ()
    other: Literal["draft", "submitted", "rejected"] = "submitted"
    approved_at: Literal["export_time", "updated_at", "column"]
    approved_at_column: StrictStr | None = None
    format: tuple[str, ...] | StrictStr | None = None
    timezone: StrictStr = "UTC"
    approved_by: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ApprovalPolicy:
        if self.column is not None and not self.approved:
            raise problem("approval: column needs approved = [the values that mean approved]")
        if self.column is None and self.approved:
            raise problem("approval: approved needs the column that holds those values")
        if (self.approved_at == "column") != (self.approved_at_column is not None):
            raise problem(
                'approval: approved_at = "column" and approved_at_column go together '
                "(approved_at_column names the vendor column holding the approval time)"
            )
        return self

    TARGETS: ClassVar[tuple[str, ...]] = (
        "approval_status",
        "approved_at",
        "approved_at_source",
        "approved_by",
    )

    def specs(self) -> dict[str, dict[str, Any]]:
        """The rules it stands for, as TOML tables (validated like any rule)."""
        when: dict[str, Any] = {}
        if self.column is not None:
            when = {"when": {"column": self.column, "in": list(self.approved)}}
        out: dict[str, dict[str, Any]] = {
            "approval_status": {"constant": "approved", **when},
        }
        if when:
            out["approval_status"]["otherwise"] = self.other
        source: str = self.approved_at
        if self.approved_at == "export_time":
            out["approved_at"] = {"file_time": "modified", **when}
        elif self.approved_at == "updated_at":
            out["approved_at"] = {"expr_copy": "updated_at", **when}
        else:
            assert self.approved_at_column is not None
            rule: dict[str, Any] = {
                "source": self.approved_at_column,
                "transform": "timestamp",
                "timezone": self.timezone,
                **when,
            }
            if self.format is not None:
                rule["format"] = self.format
            out["approved_at"] = rule
            source = f"column:{self.approved_at_column}"
        out["approved_at_source"] = {"constant": source, **when}
        if self.approved_by is not None:
            out["approved_by"] = {"constant": self.approved_by, **when}
        return out


@register_kind
class CopyRule(ColumnRule):
    """The value of another column this mapping fills (`expr_copy = "updated_at"`), as text."""

    kind = "expr_copy"
    copy_of: StrictStr = Field(alias="expr_copy")

    def refs(self) -> tuple[str, ...]:
        return (self.copy_of,)

    def value(self, c: Compiled) -> str:
        assert c.ref is not None
        return c.ref(self.copy_of)


class DatasetMapping(BaseModel):
    """The rules of one dataset; canonical columns without a rule are NULL. Helper columns
    (`_name`) are computed for other rules to read and not kept."""

    model_config = ConfigDict(frozen=True)
    dataset: str
    rules: tuple[ColumnRule, ...]
    origin: str  # the mapping file's name, for messages
    #: File-name globs of the files this mapping takes for the dataset (vendor names, as
    #: exported: nothing needs renaming). Empty: files named `<dataset>*`.
    files: tuple[str, ...] = ()
    #: How those files are written (overrides the source's settings).
    fmt: FormatSection = FormatSection()
    #: Header labels in another language: normalised alias -> normalised label the rules use.
    aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _identities_and_key(self) -> DatasetMapping:
        key = self.dataset
        mapped = {r.target for r in self.rules}
        plain = {r.target for r in self.rules if r.kind != "identity"}
        for r in self.rules:
            wrong = [p for p in r.refs() if p not in plain]
            if wrong:
                raise problem(
                    f"{r.kind} lists {', '.join(map(repr, wrong))}: it takes canonical "
                    f"{key} columns (or _helper columns) that this mapping fills "
                    f"(mapped here: {', '.join(sorted(plain))})",
                    where=f"[{key}.{r.target}]:",
                )
        self._check_cycles()
        ds = self.spec
        unmapped_keys = [k for k in ds.key if k not in ds.key_nullable and k not in mapped]
        if unmapped_keys:
            raise problem(
                f"does not map key column(s) {', '.join(unmapped_keys)}: every row needs an "
                "identity (use key = [...] or identity = [...] if the export has no ID)"
            )
        return self

    def _check_cycles(self) -> None:
        deps = {r.target: r.refs() for r in self.rules}

        def visit(t: str, path: tuple[str, ...]) -> None:
            if t in path:
                raise problem(
                    f"columns refer to each other in a circle: {' -> '.join((*path, t))}",
                    where=f"[{self.dataset}]",
                )
            for d in deps.get(t, ()):
                visit(d, (*path, t))

        for t in deps:
            visit(t, ())

    @property
    def spec(self) -> Dataset:
        return DATASETS[self.dataset]

    def takes(self, file_name: str) -> bool:
        """Whether a file of this name is one this mapping reads (by its `files` globs)."""
        return any(fnmatch.fnmatch(file_name.lower(), g.lower()) for g in self.files)

    def source_types(self) -> dict[str, str]:
        """Normalised vendor column -> canonical type, for columns copied into one typed column.

        The XLSX reader uses it to write numbers in a date column (Excel serials) as dates.
        """
        out: dict[str, str] = {}
        for r in self.rules:
            if r.kind in ("source", "coalesce") and not r.target.startswith("_"):
                for s in r.sources:
                    out[normalise_header(s)] = self.spec.column(r.target).type
        return out

    def _hits(self, name: str, by_norm: dict[str, list[tuple[str, str]]], header) -> list:
        if "*" in name:
            return [(label, col) for label, col in header if _glob_match(name, label)]
        norm = normalise_header(name)
        hits = list(by_norm.get(norm, []))
        for alias, target in self.aliases.items():
            if target == norm:
                hits += by_norm.get(alias, [])
        return hits

    def resolve(self, header: Sequence[tuple[str, str]], file_label: str) -> ResolvedColumns:
        """Find each source column in the file (by name, a header alias, or a glob); refuse a
        file missing a required one, or holding it twice (`Notes` and `notes`: which one was
        meant is a guess)."""
        by_norm: dict[str, list[tuple[str, str]]] = {}
        for label, name in header:
            by_norm.setdefault(normalise_header(label), []).append((label, name))
        found: dict[str, str | None] = {}
        missing: list[str] = []
        for r in self.rules:
            for s, optional in r.columns():
                hits = self._hits(s, by_norm, header)
                if len(hits) > 1:
                    raise MappingError(
                        f"{file_label}: column {s!r} (for {r.target}) appears "
                        f"{len(hits)} times in the header "
                        f"({', '.join(repr(label) for label, _ in hits)})"
                    )
                if not hits and not optional:
                    missing.append(f"{s!r} (for {r.target})")
                found[s] = hits[0][1] if hits else None
        if missing:
            raise MappingError(
                f"{file_label}: missing column(s) {', '.join(dict.fromkeys(missing))} "
                f"required by mapping {self.origin} [{self.dataset}]"
            )
        return ResolvedColumns(found)

    def column_sql(
        self,
        header: Sequence[tuple[str, str]],
        file_label: str,
        row_no: str,
        *,
        file_time: str | None = None,
    ) -> dict[str, str]:
        """Canonical column -> DuckDB expression over the file's columns (text or NULL).

        `header` pairs each column's label as written in the file with its SQL name;
        `row_no` is the SQL of the record's row number (for identities and error messages);
        `file_time` is when the file was exported (its modification time, canonical text).
        """
        by_target = {r.target: r for r in self.rules}
        cache: dict[tuple[str, bool], str] = {}
        resolved = self.resolve(header, file_label)

        def compiled(loud: bool) -> Compiled:
            return Compiled(
                resolved,
                file_label,
                self.origin,
                row_no,
                loud=loud,
                labels=tuple(label for label, _ in header),
                file_time=file_time,
                ref=(lambda t: target_sql(t, loud)),
            )

        def target_sql(target: str, loud: bool) -> str:
            if (target, loud) not in cache:
                r = by_target[target]
                cache[(target, loud)] = r.sql(compiled(loud))
            return cache[(target, loud)]

        out = {
            r.target: target_sql(r.target, True)
            for r in self.rules
            if r.kind != "identity" and not r.target.startswith("_")
        }
        for r in self.rules:
            if r.kind == "identity":  # over the mapped values: CSV and XLSX give the same IDs
                # Quiet: DuckDB refuses a volatile error() in an identity's PARTITION BY.
                parts = [target_sql(p, False) for p in r.parts]
                out[r.target] = _identity_sql(r, parts, row_no)
        return out


class ProjectDefault(BaseModel):
    """`[[project_defaults]]`: what an export cannot know about the projects whose code
    matches `projects` (a glob): their legal entity, currency and customer. The first
    matching entry wins; the settings' defaults come after."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    projects: StrictStr
    legal_entity: StrictStr | None = None
    currency: StrictStr | None = None
    customer_id: StrictStr | None = None

    @field_validator("currency")
    @classmethod
    def _iso(cls, c: str | None) -> str | None:
        if c is not None and not re.fullmatch(r"[A-Z]{3}", c):
            raise ValueError(f"{c!r} is not an ISO 4217 code like EUR")
        return c


class SourceMapping(BaseModel):
    """A vendor's mapping file: rules for some datasets (the others are read as canonical),
    master data it derives from its time entries, and defaults for what the export lacks."""

    model_config = ConfigDict(frozen=True)
    name: StrictStr
    origin: str
    description: StrictStr | None = None
    datasets: dict[str, DatasetMapping] = Field(default_factory=dict)
    #: Master data derived from the time-entry file itself (`[derived.<dataset>]`).
    derived: dict[str, DatasetMapping] = Field(default_factory=dict)
    project_defaults: tuple[ProjectDefault, ...] = ()
    #: The ZIP exports it takes (`[archive]`): unpacked into the inbox, members by name.
    archive: ArchiveSpec | None = None

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

    def dataset_of(self, file_name: str) -> str | None:
        """The dataset whose `files` globs take this file name, if any (a ZIP export the
        mapping takes counts as time entries: that is what unpacks it)."""
        if self.archive is not None and self.archive.takes(file_name):
            return "time_entries"
        for name, d in self.datasets.items():
            if d.takes(file_name):
                return name
        return None


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


#: Top-level keys that are not datasets.
_TOP_KEYS = (
    "name",
    "description",
    "format",
    "headers",
    "project_defaults",
    "derived",
    "archive",
)


def _model(cls: type[BaseModel], value: object, origin: str, where: str) -> Any:
    if not isinstance(value, dict):
        raise MappingError(f"mapping {origin}: {where} must be a table")
    try:
        return cls.model_validate(value, context=None)
    except ValidationError as e:
        raise _mapping_error(e, origin, f"{where}:") from None
    except PydanticCustomError as e:
        raise _mapping_error(e, origin, f"{where}:") from None


def _files(value: object, origin: str, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise MappingError(
            f"mapping {origin}: [{key}.files] must be a file-name glob "
            '("harvest_time_report_*.csv") or a list of them'
        )
    return tuple(items)


def _parse_dataset(
    key: str,
    section: object,
    origin: str,
    con: duckdb.DuckDBPyConnection,
    *,
    fmt: FormatSection,
    aliases: dict[str, str],
    where: str = "",
) -> DatasetMapping:
    label = f"{where}{key}"
    if key not in DATASETS:
        raise MappingError(
            f"mapping {origin}: [{label}] is not a dataset (one of: {', '.join(DATASETS)})"
        )
    if not isinstance(section, dict) or not section:
        raise MappingError(f"mapping {origin}: [{label}] must be a table of column rules")
    section = dict(section)
    files = _files(section.pop("files"), origin, label) if "files" in section else ()
    if "format" in section:
        own = _model(FormatSection, section.pop("format"), origin, f"[{label}.format]")
        fmt = FormatSection(**{**fmt.overrides(), **own.overrides()})
    specs: dict[str, Any] = {}
    if "approval" in section:
        if key != "time_entries":
            raise MappingError(f"mapping {origin}: [{label}.approval] is for time_entries only")
        policy = _model(ApprovalPolicy, section.pop("approval"), origin, f"[{label}.approval]")
        both = [t for t in ApprovalPolicy.TARGETS if t in section]
        if both:
            raise MappingError(
                f"mapping {origin}: [{label}] maps {', '.join(both)} and has an approval "
                "policy that sets them: keep one"
            )
        specs.update(policy.specs())
    specs = {**section, **specs}
    context = Context(DATASETS[key], con)
    rules = []
    for target, spec in specs.items():
        try:
            rules.append(parse_rule(target, spec, context))
        except (ValidationError, PydanticCustomError) as e:
            raise _mapping_error(e, origin, f"[{label}.{target}]:") from None
    try:
        return DatasetMapping(
            dataset=key, rules=tuple(rules), origin=origin, files=files, fmt=fmt, aliases=aliases
        )
    except ValidationError as e:
        raise _mapping_error(e, origin, f"[{label}]") from None


def _aliases(value: object, origin: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in value.items()
    ):
        raise MappingError(
            f'mapping {origin}: [headers] must be a table of alias = "label the rules use" '
            '(e.g. Datum = "Date")'
        )
    return {normalise_header(k): normalise_header(v) for k, v in value.items()}


#: A `timezone` written so stands for the source's zone (`STAGEPOST_SOURCE_TIMEZONE`).
SOURCE_ZONE = "source"


def _with_zone(value: Any, zone: str) -> Any:
    """The TOML document with every `timezone`/`source_timezone` = "source" set to `zone`."""
    if isinstance(value, dict):
        return {
            k: zone
            if k in ("timezone", "source_timezone") and v == SOURCE_ZONE
            else _with_zone(v, zone)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_with_zone(v, zone) for v in value]
    return value


def parse_mapping(
    data: Mapping[str, Any], origin: str, *, source_timezone: str = "UTC"
) -> SourceMapping:
    """Validate a parsed TOML document and build the mapping (`origin` names it in errors).

    `source_timezone` is what `timezone = "source"` stands for: the zone the source's people
    work in, from the settings, so a shipped mapping needs no copy to change it."""
    data = _with_zone(dict(data), source_timezone)
    head = {k: data[k] for k in ("name", "description") if k in data}
    fmt = _model(FormatSection, data.get("format", {}), origin, "[format]")
    aliases = _aliases(data.get("headers", {}), origin)
    defaults = data.get("project_defaults", [])
    if not isinstance(defaults, list):
        raise MappingError(
            f"mapping {origin}: project_defaults must be [[project_defaults]] tables"
        )
    project_defaults = tuple(
        _model(ProjectDefault, d, origin, f"[[project_defaults]] #{i + 1}")
        for i, d in enumerate(defaults)
    )
    derived_section = data.get("derived", {})
    if not isinstance(derived_section, dict):
        raise MappingError(f"mapping {origin}: [derived] must hold [derived.<dataset>] tables")
    con = duckdb.connect()
    try:
        datasets = {
            key: _parse_dataset(key, section, origin, con, fmt=fmt, aliases=aliases)
            for key, section in data.items()
            if key not in _TOP_KEYS
        }
        derived = {
            key: _parse_dataset(
                key, section, origin, con, fmt=fmt, aliases=aliases, where="derived."
            )
            for key, section in derived_section.items()
        }
    finally:
        con.close()
    if derived and "time_entries" not in datasets:
        raise MappingError(
            f"mapping {origin}: [derived.*] derives master data from time entries: "
            "it needs a [time_entries] table"
        )
    wrong = [k for k in derived if k == "time_entries" or k == "invoices"]
    if wrong:
        raise MappingError(
            f"mapping {origin}: [derived.{wrong[0]}]: only master data is derived "
            "(employees, projects, project_tasks, rate_cards)"
        )
    archive = None
    if "archive" in data:
        archive = _model(ArchiveSpec, data["archive"], origin, "[archive]")
    try:
        return SourceMapping(
            **{"name": origin, **head},
            origin=origin,
            datasets=datasets,
            derived=derived,
            project_defaults=project_defaults,
            archive=archive,
        )
    except ValidationError as e:
        raise _mapping_error(e, origin, "") from None


#: Shipped mappings under an older name.
_RENAMED = {"harvest_detailed_time": "harvest"}


def resolve_mapping_path(ref: str | Path) -> Path:
    """A path as given, or the name of a shipped mapping (`harvest_detailed_time`)."""
    path = Path(ref)
    if path.exists() or path.suffix or "/" in str(ref) or "\\" in str(ref):
        return path
    return MAPPINGS_DIR / f"{_RENAMED.get(str(ref), str(ref))}.toml"


def load_mapping(ref: str | Path, *, source_timezone: str = "UTC") -> SourceMapping:
    """Read and validate a mapping file (stdlib tomllib); errors name the file and the column.
    `timezone = "source"` in it stands for `source_timezone`."""
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
    return parse_mapping(data, path.name, source_timezone=source_timezone)
