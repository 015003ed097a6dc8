"""Arithmetic in a mapping: `expr = "source_amount * 3600 / duration_seconds"`.

Real exports need a little arithmetic: duration = end - start (solidtime), rate = amount /
hours (Toggl has no rate column), cents to units (solidtime rates are cents). An expression
names columns the same dataset mapping fills (canonical columns, or helper columns whose name
starts with `_`), decimal literals, `+ - * /`, parentheses and a few functions:

- `seconds_between(start, end)`, `hours_between(start, end)`: the exact time between two
  timestamps (texts with a UTC offset, as the `timestamp` transform writes them);
- `round(x, n)`; `coalesce(a, b, ...)`.

It is parsed with Python's `ast` (only those node types are accepted, so nothing else can
run) and compiled into one DuckDB expression: set-based, no Python per row. Every value is
an exact `DECIMAL(38,12)`, never a binary float: DuckDB divides decimals as DOUBLE, so
division is done on 128-bit integers and rounded half away from zero. A division by zero or
an operand that is not a number gives NULL (typing then reports the empty column). The
result is rounded once, half away from zero, to the target column's scale.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

#: Decimal places every intermediate value keeps.
SCALE = 12
_DEC = f"DECIMAL(38,{SCALE})"
_UNIT = 10**SCALE
FUNCTIONS = ("seconds_between", "hours_between", "round", "coalesce")


class ExprError(ValueError):
    """An expression the mapping language does not accept; the message says why."""


def names(text: str) -> list[str]:
    """The column names an expression reads (validated: raises `ExprError` when invalid)."""
    tree = _parse(text)
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in funcs and node.id not in out:
            out.append(node.id)
    return out


def _parse(text: str) -> ast.expr:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"expr {text!r} is not an expression ({e.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ExprError(f"expr {text!r}: functions are {', '.join(FUNCTIONS)}")
            if node.keywords:
                raise ExprError(f"expr {text!r}: functions take no keyword arguments")
            want = {"seconds_between": 2, "hours_between": 2, "round": 2}.get(node.func.id)
            if want is not None and len(node.args) != want:
                raise ExprError(f"expr {text!r}: {node.func.id} takes {want} arguments")
            if node.func.id == "round" and not (
                isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, int)
            ):
                raise ExprError(f"expr {text!r}: round's places must be a whole number")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ExprError(f"expr {text!r}: only numbers may be written as literals")
        elif isinstance(node, ast.BinOp):
            if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
                raise ExprError(f"expr {text!r}: operators are + - * /")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                raise ExprError(f"expr {text!r}: the only unary operator is -")
        elif not isinstance(
            node, ast.Expression | ast.Name | ast.Load | ast.operator | ast.unaryop
        ):
            raise ExprError(f"expr {text!r}: {type(node).__name__} is not allowed")
    return tree.body


def _num(sql: str) -> str:
    return f"TRY_CAST({sql} AS {_DEC})"


def _ts(sql: str) -> str:
    return f"TRY_CAST({sql} AS TIMESTAMPTZ)"


def divide_sql(a: str, b: str) -> str:
    """a / b, exact to `SCALE` places, half away from zero, on 128-bit integers (NULL for b=0)."""
    big_a = f"CAST({a} * {_UNIT} AS HUGEINT)"
    big_b = f"CAST({b} * {_UNIT} AS HUGEINT)"
    q = f"((abs({big_a}) * {_UNIT} * 2 + abs({big_b})) // (2 * abs({big_b})))"
    signed = f"(CASE WHEN ({a} < 0) <> ({b} < 0) THEN -{q} ELSE {q} END)"
    units = f"CAST({signed} AS DECIMAL(38,0)) * CAST('{1 / _UNIT:.{SCALE}f}' AS DECIMAL({SCALE + 1},{SCALE}))"
    return f"(CASE WHEN {b} = 0 THEN NULL ELSE CAST({units} AS {_DEC}) END)"


def compile_sql(text: str, ref: Callable[[str], str]) -> str:
    """DuckDB SQL of the expression as an exact `DECIMAL(38,12)`; `ref(name)` is the text
    value SQL of a column the mapping fills."""

    def walk(node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return f"CAST('{node.value}' AS {_DEC})"
        if isinstance(node, ast.Name):
            return _num(ref(node.id))
        if isinstance(node, ast.UnaryOp):
            return f"(-{walk(node.operand)})"
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div):
                return divide_sql(a, b)
            op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}[type(node.op)]
            return f"CAST({a} {op} {b} AS {_DEC})"
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        fn, args = node.func.id, node.args
        if fn in ("seconds_between", "hours_between"):
            start, end = (ref(a.id) if isinstance(a, ast.Name) else None for a in args)
            if start is None or end is None:
                raise ExprError(f"{fn} takes two column names")
            ms = f"date_diff('millisecond', {_ts(start)}, {_ts(end)})"
            seconds = f"CAST(CAST({ms} AS DECIMAL(38,0)) * CAST('0.001' AS DECIMAL(4,3)) AS {_DEC})"
            if fn == "seconds_between":
                return seconds
            return divide_sql(seconds, f"CAST('3600' AS {_DEC})")
        if fn == "round":
            places = args[1].value  # type: ignore[attr-defined]
            return f"CAST(round({walk(args[0])}, {int(places)}) AS {_DEC})"
        return f"coalesce({', '.join(walk(a) for a in args)})"

    return walk(_parse(text))


def to_text_sql(value: str, scale: int) -> str:
    """The exact result rounded once (half away from zero) to `scale` places, as text."""
    return f"CAST(CAST(round({value}, {scale}) AS DECIMAL(38,{scale})) AS VARCHAR)"
