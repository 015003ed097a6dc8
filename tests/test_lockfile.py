"""The lock files pin every dependency pyproject.toml declares, at a version it allows.

`./dev` installs from `requirements/*.lock` only; a dependency added to pyproject.toml without
`./dev lock` would be missing on a fresh machine (or pinned outside its range): caught here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def _requirements(extra: str) -> list[Requirement]:
    """The requirements of an extra, following `stagepost[other]` self-references."""
    if extra == "app":
        return [Requirement(r) for r in PROJECT["dependencies"]]
    reqs: list[Requirement] = []
    for text in PROJECT["optional-dependencies"][extra]:
        req = Requirement(text)
        if canonicalize_name(req.name) == "stagepost":
            for inner in req.extras:
                reqs += _requirements(inner)
        else:
            reqs.append(req)
    return reqs + ([] if extra == "app" else _requirements("app"))


def _pins(lock: str) -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for name, version in PIN.findall((ROOT / "requirements" / lock).read_text()):
        pins.setdefault(canonicalize_name(name), []).append(version)
    return pins


@pytest.mark.parametrize("extra", ["app", "test", "bench", "k8s"])
def test_lock_pins_every_declared_dependency_within_its_range(extra: str) -> None:
    pins = _pins(f"{extra}.lock")
    problems = []
    for req in _requirements(extra):
        versions = pins.get(canonicalize_name(req.name))
        if not versions:
            problems.append(f"{req.name}: not in requirements/{extra}.lock")
        elif not any(req.specifier.contains(v, prereleases=True) for v in versions):
            problems.append(f"{req.name}: locked {versions}, pyproject wants {req.specifier}")
    assert not problems, "run ./dev lock:\n" + "\n".join(problems)


def test_lock_files_carry_hashes() -> None:
    for lock in ("app.lock", "test.lock", "bench.lock", "k8s.lock"):
        text = (ROOT / "requirements" / lock).read_text()
        assert len(PIN.findall(text)) > 50
        assert text.count("--hash=sha256:") >= len(PIN.findall(text))
