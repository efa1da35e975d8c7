"""What every trainable eosin object shares, in scikit-learn's manner: parameters from the constructor's
keyword arguments (``get_params``/``set_params``, a readable ``repr``), and a clear error before ``fit``."""

from __future__ import annotations

import inspect
from typing import Any

from eosin.errors import NotFittedError, UsageError

__all__ = ["Params"]


class Params:
    """Mixin: ``get_params``, ``set_params``, ``__repr__`` and ``_check_fitted`` (attributes named in ``_fitted``)."""

    _fitted: tuple[str, ...] = ()
    #: how to fit, for the not-fitted message
    _fit_hint: str = "call fit(...) first"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their values (scikit-learn's convention)."""
        params = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p in params if p not in ("self", "args", "kwargs")}

    def set_params(self, **params: Any):
        """Set constructor parameters; returns ``self``."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise UsageError(f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}.")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        if not all(hasattr(self, attr) for attr in self._fitted):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet.", fix=self._fit_hint)
