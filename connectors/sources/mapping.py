"""Vendor column mappings: a declarative TOML file that turns a PSA's own export into the
canonical format.

A mapping says, per canonical column, where its text comes from (a vendor column, several
columns joined, a constant, or a synthetic identity) and what to do with it (a transform,
a value map, a default). It is compiled into one DuckDB SQL expression per canonical column
of the `open_raw` view, so mapping costs no Python per row. It is validated when it is
loaded, against the canonical specs and against DuckDB itself (formats, time zones and
patterns are tried by the engine that will run them), so a typo fails at start-up with the
mapping file and the column named, not halfway through a load.

The file format is documented in docs/mappings.md; shipped mappings live in
`connectors/sources/mappings/`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from connectors.sources.canonical import DATASETS, Column, Dataset

MAPPINGS_DIR = Path(__file__).parent / "mappings"

Kind = Literal["source", "coalesce", "concat", "constant", "identity"]
TRANSFORMS = ("hours", "date", "timestamp", "extract", "upper", "lower")
UNMAPPED = ("keep", "null", "error")
_KINDS: tuple[Kind, ...] = ("source", "coalesce", "concat", "constant", "identity")
_KEYS = frozenset(
    {
        *_KINDS,
        "separator",
        "prefix",
        "transform",
        "format",
        "timezone",
        "pattern",
        "values",
        "unmapped",
        "default",
        "optional",
    }
)
#: Which canonical column types each transform may feed (None: any).
_TRANSFORM_TYPES: dict[str, frozenset[str] | None] = {
    "hours": frozenset({"hours", "qty"}),
    "date": frozenset({"date"}),
    "timestamp": frozenset({"timestamptz"}),
    "extract": None,
    "upper": None,
    "lower": None,
}
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


def _text(value: object) -> str:
    """A TOML scalar as canonical text (`true` → "true", 1.5 → "1.5")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(type(value).__name__)


@dataclass(frozen=True)
class ColumnRule:
    """How one canonical column is produced from a vendor row."""

    target: str
    kind: Kind
    sources: tuple[str, ...] = ()  # vendor columns
    parts: tuple[str, ...] = ()  # identity: the canonical columns that identify a row
    constant: str | None = None
    separator: str = " "
    prefix: str = ""
    transform: str | None = None
    formats: tuple[str, ...] = ()
    timezone: str | None = None
    pattern: str | None = None
    values: tuple[tuple[str, str], ...] = ()  # (lower-cased vendor value, canonical text)
    unmapped: str = "keep"
    default: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class ResolvedColumns:
    """A mapping's source columns resolved against one file's header."""

    by_source: dict[
        str, str | None
    ]  # mapping's source name -> header name in the file (None: absent)


@dataclass(frozen=True)
class DatasetMapping:
    """The rules of one dataset; canonical columns without a rule are NULL."""

    dataset: str
    rules: tuple[ColumnRule, ...]
    origin: str  # the mapping file's name, for messages

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
        cols = self.resolve(header, file_label)
        out = {
            r.target: _rule_sql(r, cols, file_label, self.origin, row_no)
            for r in self.rules
            if r.kind != "identity"
        }
        for r in self.rules:
            if r.kind == "identity":  # over the mapped values: CSV and XLSX give the same IDs
                quiet = {
                    q.target: _rule_sql(q, cols, file_label, self.origin, row_no, loud=False)
                    for q in self.rules
                    if q.target in r.parts
                }
                out[r.target] = _identity_sql(r, [quiet[p] for p in r.parts], row_no)
        return out


@dataclass(frozen=True)
class SourceMapping:
    """A vendor's mapping file: rules for some datasets (the others are read as canonical)."""

    name: str
    origin: str
    datasets: Mapping[str, DatasetMapping] = field(default_factory=dict, hash=False)

    def for_dataset(self, dataset: str) -> DatasetMapping | None:
        return self.datasets.get(dataset)


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


def _rule_sql(
    r: ColumnRule,
    cols: ResolvedColumns,
    file_label: str,
    origin: str,
    row_no: str,
    loud: bool = True,
) -> str:
    """The rule's expression. `loud=False` leaves out the checks that refuse the file (they
    return the value instead): DuckDB refuses a volatile `error()` in an identity's
    PARTITION BY, and a file they refuse fails through the loud copy of the column anyway."""
    if r.kind == "constant":
        return sql_str(r.constant or "")
    parts = [_src_sql(cols.by_source[s]) for s in r.sources]
    if r.kind == "source":
        v = parts[0]
    elif r.kind == "coalesce":  # the first non-empty of several columns
        v = f"coalesce({', '.join(parts)})"
    else:
        v = f"NULLIF(concat_ws({sql_str(r.separator)}, {', '.join(parts)}), '')"
    shown = ", ".join(r.sources) or r.target

    def refuse(value: str, problem: str) -> str:
        """An error that stops the load (one transaction: nothing of the file lands)."""
        if not loud:
            return value
        return (
            f"error({sql_str(f'{file_label}: column {shown!r} (for {r.target}) has the value ')}"
            f" || {value} || ' (row ' || CAST({row_no} AS VARCHAR) || '), ' || "
            f"{sql_str(f'{problem} [mapping {origin}]')})"
        )

    if r.transform == "hours":
        v = _hours_sql(v)
    elif r.transform == "date":
        v = _date_sql(v, r.formats, refuse)
    elif r.transform == "timestamp":
        v = _timestamp_sql(v, r.formats, r.timezone or "UTC", refuse)
    elif r.transform == "extract":
        v = f"coalesce(NULLIF(regexp_extract({v}, {sql_str(r.pattern or '')}, 1), ''), {v})"
    elif r.transform in ("upper", "lower"):
        v = f"{r.transform}({v})"
    if r.values:
        whens = " ".join(f"WHEN {sql_str(k)} THEN {sql_str(t)}" for k, t in r.values)
        if r.unmapped == "null":
            other = "CAST(NULL AS VARCHAR)"
        elif r.unmapped == "error" and loud:
            other = (
                f"error({sql_str(f'{file_label}: column {shown!r} has the value ')} || {v} || "
                f"{sql_str(f' that mapping {origin} does not map for {r.target} (row ')} || "
                f"CAST({row_no} AS VARCHAR) || ')')"
            )
        else:
            other = v
        v = f"CASE WHEN {v} IS NULL THEN NULL ELSE CASE lower({v}) {whens} ELSE {other} END END"
    if r.default is not None:
        v = f"coalesce(NULLIF({v}, ''), {sql_str(r.default)})"
    return v


# -- loading and validation ---------------------------------------------------------------


def _fail(origin: str, where: str, problem: str) -> MappingError:
    return MappingError(f"mapping {origin}: [{where}]: {problem}")


def _str_list(value: object, origin: str, where: str, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(i, str) and i.strip() for i in items)
    ):
        raise _fail(origin, where, f"{key} must be a column name or a non-empty list of them")
    return tuple(items)


def _check_with_duckdb(
    con: duckdb.DuckDBPyConnection, sql: str, origin: str, where: str, what: str
) -> None:
    """Let the engine that will run the expression judge it (formats, zones, patterns)."""
    try:
        con.execute(f"SELECT {sql}").fetchall()
    except duckdb.Error as e:
        first = str(e).splitlines()[0]
        raise _fail(origin, where, f"{what}: {first}") from None


def _parse_rule(
    ds: Dataset, target: str, spec: object, origin: str, con: duckdb.DuckDBPyConnection
) -> ColumnRule:
    where = f"{ds.name}.{target}"
    if target not in ds.column_names:
        raise _fail(
            origin,
            where,
            f"{target!r} is not a canonical {ds.name} column (one of: {', '.join(ds.column_names)})",
        )
    col: Column = ds.column(target)
    if isinstance(spec, str):
        if not spec.strip():
            raise _fail(origin, where, "the source column name is empty")
        return ColumnRule(target, "source", sources=(spec,))
    if not isinstance(spec, dict):
        raise _fail(origin, where, "must be a vendor column name or a table (see docs/mappings.md)")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise _fail(
            origin,
            where,
            f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})",
        )
    kinds = [k for k in _KINDS if k in spec]
    if len(kinds) != 1:
        raise _fail(
            origin, where, "needs exactly one of source, coalesce, concat, constant, identity"
        )
    kind = kinds[0]
    kw: dict[str, Any] = {}
    if kind == "constant":
        extra = sorted(set(spec) - {"constant"})
        if extra:
            raise _fail(origin, where, f"a constant takes no other keys (found {', '.join(extra)})")
        try:
            return ColumnRule(target, "constant", constant=_text(spec["constant"]))
        except TypeError:
            raise _fail(origin, where, "constant must be a string, number or boolean") from None
    sources = _str_list(spec[kind], origin, where, kind)
    if kind == "identity":
        extra = sorted(set(spec) - {"identity", "prefix"})
        if extra:
            raise _fail(origin, where, f"identity takes only prefix (found {', '.join(extra)})")
        prefix = spec.get("prefix", "")
        if not isinstance(prefix, str):
            raise _fail(origin, where, "prefix must be a string")
        return ColumnRule(target, "identity", parts=sources, prefix=prefix)
    if kind == "source" and len(sources) != 1:
        raise _fail(origin, where, "source takes one column; use concat for several")
    if "separator" in spec:
        if kind != "concat":
            raise _fail(origin, where, "separator only applies to concat")
        if not isinstance(spec["separator"], str):
            raise _fail(origin, where, "separator must be a string")
        kw["separator"] = spec["separator"]
    if "prefix" in spec:
        raise _fail(origin, where, "prefix only applies to identity")
    if "optional" in spec:
        if not isinstance(spec["optional"], bool):
            raise _fail(origin, where, "optional must be true or false")
        kw["optional"] = spec["optional"]

    transform = spec.get("transform")
    if transform is not None:
        if transform not in TRANSFORMS:
            raise _fail(
                origin, where, f"unknown transform {transform!r} (one of: {', '.join(TRANSFORMS)})"
            )
        allowed = _TRANSFORM_TYPES[transform]
        if allowed is not None and col.type not in allowed:
            raise _fail(
                origin,
                where,
                f"transform {transform!r} cannot feed {target} (a {col.type} column; "
                f"it feeds {', '.join(sorted(allowed))} columns)",
            )
        kw["transform"] = transform
    for key, needs in (
        ("format", ("date", "timestamp")),
        ("timezone", ("timestamp",)),
        ("pattern", ("extract",)),
    ):
        if key in spec and transform not in needs:
            raise _fail(origin, where, f"{key} only applies to transform {' or '.join(needs)}")
    if transform == "date" and "format" not in spec:
        raise _fail(origin, where, "transform 'date' needs format (e.g. \"%m/%d/%Y\")")
    if transform == "timestamp" and "timezone" not in spec:
        raise _fail(origin, where, "transform 'timestamp' needs timezone (e.g. \"Europe/Berlin\")")
    if transform == "extract" and not isinstance(spec.get("pattern"), str):
        raise _fail(origin, where, "transform 'extract' needs pattern (a regex with one group)")
    if "format" in spec:
        formats = _str_list(spec["format"], origin, where, "format")
        if any("%z" in f or "%Z" in f for f in formats):
            raise _fail(
                origin,
                where,
                "format must not parse an offset (%z): values with offsets are kept as they are",
            )
        _check_with_duckdb(
            con, f"try_strptime('2000-01-01', {_list_sql(formats)})", origin, where, "bad format"
        )
        kw["formats"] = formats
    if transform == "timestamp":
        tz = spec["timezone"]
        if not isinstance(tz, str) or not tz:
            raise _fail(origin, where, 'timezone must be an IANA name like "America/New_York"')
        _check_with_duckdb(
            con,
            f"timezone({sql_str(tz)}, TIMESTAMP '2000-01-01')",
            origin,
            where,
            f"bad timezone {tz!r}",
        )
        kw["timezone"] = tz
    if transform == "extract":
        pattern = spec["pattern"]
        _check_with_duckdb(
            con, f"regexp_extract('', {sql_str(pattern)}, 1)", origin, where, "bad pattern"
        )
        kw["pattern"] = pattern

    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, dict) or not values:
            raise _fail(origin, where, "values must be a table of vendor value = canonical value")
        pairs: dict[str, str] = {}
        for k, t in values.items():
            key = k.strip().lower()
            if key in pairs:
                raise _fail(origin, where, f"values lists {k!r} twice (matching ignores case)")
            try:
                pairs[key] = _text(t)
            except TypeError:
                raise _fail(
                    origin, where, f"values.{k} must be a string, number or boolean"
                ) from None
        kw["values"] = tuple(pairs.items())
    if "unmapped" in spec:
        if "values" not in spec:
            raise _fail(origin, where, "unmapped only applies with values")
        if spec["unmapped"] not in UNMAPPED:
            raise _fail(origin, where, f"unmapped must be one of {', '.join(UNMAPPED)}")
        kw["unmapped"] = spec["unmapped"]
    if "default" in spec:
        try:
            kw["default"] = _text(spec["default"])
        except TypeError:
            raise _fail(origin, where, "default must be a string, number or boolean") from None
    return ColumnRule(target, kind, sources=sources, **kw)


def parse_mapping(data: Mapping[str, Any], origin: str) -> SourceMapping:
    """Validate a parsed TOML document and build the mapping (`origin` names it in errors)."""
    name = data.get("name", origin)
    if not isinstance(name, str):
        raise MappingError(f"mapping {origin}: name must be a string")
    datasets: dict[str, DatasetMapping] = {}
    con = duckdb.connect()
    try:
        for key, section in data.items():
            if key in ("name", "description"):
                continue
            if key not in DATASETS:
                raise MappingError(
                    f"mapping {origin}: [{key}] is not a dataset (one of: {', '.join(DATASETS)})"
                )
            if not isinstance(section, dict) or not section:
                raise MappingError(f"mapping {origin}: [{key}] must be a table of column rules")
            ds = DATASETS[key]
            rules = tuple(_parse_rule(ds, t, s, origin, con) for t, s in section.items())
            mapped = {r.target for r in rules}
            plain = {r.target for r in rules if r.kind != "identity"}
            for r in rules:
                wrong = [p for p in r.parts if p not in plain]
                if wrong:
                    raise _fail(
                        origin,
                        f"{key}.{r.target}",
                        f"identity lists {', '.join(map(repr, wrong))}: it takes canonical "
                        f"{key} columns that this mapping fills from the file "
                        f"(mapped here: {', '.join(sorted(plain))})",
                    )
            unmapped_keys = [k for k in ds.key if k not in ds.key_nullable and k not in mapped]
            if unmapped_keys:
                raise MappingError(
                    f"mapping {origin}: [{key}] does not map key column(s) "
                    f"{', '.join(unmapped_keys)}: every row needs an identity "
                    "(use identity = [...] if the export has no ID)"
                )
            datasets[key] = DatasetMapping(key, rules, origin)
    finally:
        con.close()
    if not datasets:
        raise MappingError(f"mapping {origin}: maps no dataset (add a [time_entries] table, ...)")
    return SourceMapping(name, origin, datasets)


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
