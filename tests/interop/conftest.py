"""Deselect the tests a quick suite class (:func:`tests.interop.lc_suites.quick`) does not keep."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        wanted = getattr(getattr(item, "cls", None), "quick_tests", None)
        name = getattr(item, "originalname", item.name)
        if wanted is None or item.name in wanted or name in wanted:
            keep.append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
