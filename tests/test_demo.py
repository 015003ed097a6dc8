"""`./dev demo` (commands/demo.py) in a subprocess on a small sample: a short summary whose
figures add up, Dagster's log lines in a file it names, one clear line for a bad setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGEPOST_", "DAGSTER_"))}
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    env.update(
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        STAGEPOST_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def _demo(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "commands.demo", "--entries", "300", *args],
        cwd=ROOT,
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _table(out: str, heading: str) -> list[list[int]]:
    """The figures of the table under `heading` (one list per dataset row)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(heading)) + 2
    rows = []
    for line in lines[start:]:
        parts = line.split()
        if len(parts) < 2 or not re.fullmatch(r"[\d,]+", parts[1]):
            break
        rows.append([_int(p) for p in parts[1:]])
    assert rows, f"no table under {heading!r}"
    return rows


def _sum_line(out: str, lead: str) -> tuple[int, dict[str, int]]:
    """`lead N = name a + name b + ...`: N and the named parts."""
    line = next(line for line in out.splitlines() if line.strip().startswith(lead))
    total, _, rest = line.strip()[len(lead) :].partition(" = ")
    parts = {}
    for term in rest.split(" + "):
        name, _, n = term.strip().rpartition(" ")
        parts[name] = _int(n)
    return _int(total), parts


def _check_summary(out: str) -> None:
    read = _table(out, "Rows read")
    states = _table(out, "Row versions by state")
    for (_files, rows, new, unchanged, stale), (versions, *by_state) in zip(
        read, states, strict=True
    ):
        assert rows == new + unchanged + stale
        assert versions == new == sum(by_state)
    assert "every row accounted for: yes" in out
    total, parts = _sum_line(out, "time entries in the ERP")
    assert total == sum(parts.values())
    in_period = parts["work dates in the period"]
    period_total, classes = _sum_line(out, "time entries in the period")
    assert period_total == sum(classes.values())
    # The period is named, and what is in sync in it is what was posted into it.
    assert re.search(r"period: work dates \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d", out)
    assert classes["in sync"] == in_period


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, ...]:
    tmp = tmp_path_factory.mktemp("demo")
    first = _demo(tmp, "--fresh")
    second = _demo(tmp)
    return tmp, first, second


def test_demo_summary_adds_up_and_logs_go_to_a_file(two_runs) -> None:
    _, first, _ = two_runs
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "DEBUG" not in out and " - dagster - " not in out
    assert first.stderr == ""
    assert len(out.splitlines()) < 60
    _check_summary(out)
    # The sample's resource plans are held against its approved time (the demo's period).
    plans = next(line for line in out.splitlines() if "resource plans vs approved time" in line)
    assert re.search(r"planned [\d,.]+ h, actual [\d,.]+ h, utilization [\d.]+%", plans), plans
    line = next(line for line in out.splitlines() if "documents confirmed" in line)
    m = re.search(
        r"documents confirmed ([\d,]+) = time lines ([\d,]+) \(posts ([\d,]+) \+ reversals "
        r"([\d,]+), .* h net\) \+ invoices ([\d,]+) \+ expense lines ([\d,]+)",
        line,
    )
    docs, lines, posts, reversals, invoices, expense_lines = (_int(g) for g in m.groups())
    assert docs == lines + invoices + expense_lines and lines == posts + reversals and posts > 0
    # The valid expenses are what the first window posted as expense lines.
    states = out[out.index("Row versions by state") :].splitlines()
    expenses = next(line.split() for line in states if line.split()[:1] == ["expenses"])
    assert expense_lines == _int(expenses[2]) > 0  # dataset, versions, valid, ...
    # The valid time entries are what the first window posted.
    valid = _table(out, "Row versions by state")[-1][1]  # time_entries is the last row
    assert posts == valid
    log = Path(re.search(r"Dagster's log of these runs: (\S+)", out).group(1))
    assert log.exists() and "DEBUG" in log.read_text()


def test_second_run_says_nothing_new_happened(two_runs) -> None:
    _, first, second = two_runs
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert "nothing new: the inbox had no new files" in out
    assert "nothing new to post" in out
    assert "Nothing new happened in this run" in out
    _check_summary(out)
    assert "Nothing new happened" not in first.stdout


@pytest.mark.parametrize(
    "url", ["bogus://nowhere", "postgresql://nobody@127.0.0.1:1/none", "not a url"]
)
def test_bad_staging_url_is_one_line_naming_the_variable(tmp_path, url) -> None:
    result = _demo(tmp_path, STAGEPOST_STAGING_URL=url)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("stagepost demo: STAGEPOST_STAGING_URL=")
    assert "Traceback" not in line
