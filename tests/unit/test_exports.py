"""The public API: ``xensched.__all__`` is exactly what the package exposes."""

from __future__ import annotations
import __future__

import types

import xensched
import xensched.drivers
import xensched.schedulers

# `from __future__ import annotations` binds a compiler-directive object named
# `annotations` in every module that uses it; it is not part of any API.
_FUTURE_FEATURE = type(__future__.annotations)


def _public(mod: types.ModuleType) -> set[str]:
    return {
        name
        for name in dir(mod)
        if not name.startswith("_")
        and not isinstance(getattr(mod, name), types.ModuleType | _FUTURE_FEATURE)
    }


def test_all_is_exactly_the_public_names() -> None:
    assert set(xensched.__all__) == _public(xensched) | {"__version__"}


def test_all_has_no_duplicates() -> None:
    assert len(set(xensched.__all__)) == len(xensched.__all__)


def test_every_exported_name_resolves() -> None:
    for name in xensched.__all__:
        assert getattr(xensched, name) is not None


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert xensched.__version__ == version("xensched")


def test_subpackage_exports() -> None:
    assert set(xensched.schedulers.__all__) == _public(xensched.schedulers)
    assert set(xensched.drivers.__all__) == _public(xensched.drivers)


def test_errors_share_one_root() -> None:
    for name in ("AssertFailedError", "ConfigError", "DeadlockError", "XenError"):
        assert issubclass(getattr(xensched, name), xensched.XenschedError)
    assert issubclass(xensched.ConfigError, ValueError)
