"""`./dev` without arguments prints its help (not its own shell lines); `./dev bench` without
a name lists the benchmarks. Neither installs anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dev(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "dev"), *args], capture_output=True, text=True, timeout=60
    )


def test_dev_without_arguments_prints_its_help() -> None:
    result = _dev()
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    for command in ("demo", "ui", "test", "upgrade", "lint", "bench", "lock", "help"):
        assert any(line.strip().startswith(f"./dev {command}") for line in lines), command
    assert not any(
        line.lstrip().startswith(("set ", "#", "cd ", "ROOT=", "export ")) for line in lines
    )
    assert _dev("help").stdout == result.stdout


def test_unknown_command_prints_help_and_fails() -> None:
    result = _dev("frobnicate")
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr


def test_dev_bench_without_a_name_lists_the_benchmarks() -> None:
    result = _dev("bench")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:]}
    assert listed == {p.stem for p in (ROOT / "bench").glob("*.py")}
    assert "Posting speed" in result.stdout


def test_dev_bench_with_an_unknown_name_says_so() -> None:
    result = _dev("bench", "nope")
    assert result.returncode == 2 and "no benchmark 'nope'" in result.stderr
