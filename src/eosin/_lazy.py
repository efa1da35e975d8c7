"""Lazy public names for eosin's packages (PEP 562): ``import eosin.x`` loads no submodule until a name is used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing ``name`` from ``table[name]`` on first use and caching it.

    ``table`` maps public names to modules, absolute (``"eosin.data._table"``) or relative to ``package``
    (``"_table"``).
    """

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = table[name]
        module = importlib.import_module(f"{package}.{where}" if where.startswith("_") else where)
        value = getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
