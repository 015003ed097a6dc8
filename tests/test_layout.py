"""Every top-level package is where the house says it is: in the README's Layout table, in the
wheel (setuptools include), in the image (Dockerfile COPY) and in the import layers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(
    p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"
)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_packages_are_found() -> None:
    assert {"pipelines", "assets", "resources", "posting", "staging_models", "connectors"} <= set(
        PACKAGES
    )


def test_every_package_is_in_the_readme_layout_table() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([\w.]+)/` \|", layout, re.M))
    assert not set(PACKAGES) - rows, "add these packages to the README's Layout table"


def test_every_package_is_in_the_wheel_and_the_image() -> None:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in PACKAGES:
        assert f"{name}*" in include, name
        assert f"COPY {name} ./{name}\n" in dockerfile, name


def test_every_package_is_in_one_import_layer() -> None:
    linter = PYPROJECT["tool"]["importlinter"]
    (contract,) = [c for c in linter["contracts"] if c["type"] == "layers"]
    layered = [p.strip() for layer in contract["layers"] for p in layer.split("|")]
    assert sorted(layered) == sorted(linter["root_packages"]) == PACKAGES
