"""The wheel holds every package: a regular (non-editable) install must work."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _listed() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["tool"]["setuptools"]["packages"])


def _on_disk(top: Path, name: str) -> set[str]:
    return {
        ".".join((name, *init.parent.relative_to(top).parts))
        for init in top.rglob("__init__.py")
    }


def test_every_xensched_package_is_listed() -> None:
    assert _on_disk(ROOT / "xensched", "xensched") <= _listed()


def test_every_stress_package_is_listed() -> None:
    top = ROOT / "stress" / "xensched_stress"
    assert _on_disk(top, "xensched_stress") <= _listed()


def test_every_report_schema_is_package_data() -> None:
    """A schema file that no package-data pattern names would be missing from the
    wheel, and a regular install could not validate that report."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]
    tops = {
        "xensched": ROOT / "xensched",
        "xensched_stress": ROOT / "stress/xensched_stress",
    }
    found = 0
    for pkg, top in tops.items():
        for f in (top / "schemas").glob("*.json"):
            # Named by the top package ("schemas/*.json") or by its schemas package.
            rel = f.relative_to(top).as_posix()
            named = any(fnmatch(rel, p) for p in patterns.get(pkg, ())) or any(
                fnmatch(f.name, p) for p in patterns.get(f"{pkg}.schemas", ())
            )
            assert named, rel
            found += 1
    assert found == 10
