"""Stain normalization (Reinhard, Macenko, Vahadane) and HED stain augmentation, fit/transform on uint8 batches.

>>> from eosin.stain import get_normalizer
>>> norm = get_normalizer("macenko").fit(target)  # doctest: +SKIP
>>> tiles = norm.transform(tiles)  # (n, rows, cols, 3) uint8 in and out  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from eosin.errors import UnknownNameError, UsageError
from eosin.stain._common import StainNormalizer, glass_mask
from eosin.stain._hed import HEDJitter
from eosin.stain._macenko import MacenkoNormalizer, macenko_stains
from eosin.stain._reinhard import ReinhardNormalizer
from eosin.stain._vahadane import VahadaneNormalizer, nn_lasso2, vahadane_stains

__all__ = [
    "HEDJitter",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "StainNormalizer",
    "VahadaneNormalizer",
    "get_normalizer",
    "glass_mask",
    "list_normalizers",
    "macenko_stains",
    "nn_lasso2",
    "vahadane_stains",
]

_NORMALIZERS: dict[str, type[StainNormalizer]] = {
    cls.name: cls for cls in (ReinhardNormalizer, MacenkoNormalizer, VahadaneNormalizer)
}


def list_normalizers() -> list[str]:
    """Names of the stain normalization methods, sorted."""
    return sorted(_NORMALIZERS)


def get_normalizer(name: str | StainNormalizer, **params: Any) -> StainNormalizer:
    """A new, unfitted normalizer by name (``reinhard``, ``macenko``, ``vahadane``) with keyword parameters.

    A ready normalizer is returned as it is (with ``params`` set on it).

    Raises
    ------
    UnknownNameError
        For a name that is not a method, with close matches.
    UsageError
        For a parameter the method does not have.
    """
    if isinstance(name, StainNormalizer):
        return name.set_params(**params)
    key = name.lower()
    if key not in _NORMALIZERS:
        raise UnknownNameError("stain method", name, _NORMALIZERS, fix="see eosin.stain.list_normalizers()")
    cls = _NORMALIZERS[key]
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(
            f"{cls.__name__} has no parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}."
        )
    return cls(**params)
