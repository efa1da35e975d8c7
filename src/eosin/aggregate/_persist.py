"""Saving and loading every aggregator, however simple: a folder with ``config.json`` (and the learned arrays).

``config.json`` holds the format, the registry name, the constructor parameters, the slide classes, the learned
values that fit in JSON (``fitted``: e.g. the per-class ``thresholds_`` of :class:`Thresholds`), the versions of
the software that wrote it and, when given, how it was trained (``training``), and the fields of every eosin
checkpoint (``format_version``, ``eosin_version``, ``weights_sha256``: :func:`eosin.io.write_checkpoint`). The learned state that does not fit
in JSON is beside it: ``weights.safetensors`` for the attention-MIL networks, ``estimator.skops`` for the
scikit-learn classifier of :class:`SummaryClassifier` (skops's format, loaded without unpickling arbitrary code:
only scikit-learn types are accepted). A folder is written aside and renamed into place, so a crash leaves the old
model or the new one. Loading needs PyTorch only for the MIL models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import StoreError

__all__ = ["FORMAT", "load_aggregator", "save_aggregator", "write_folder"]

FORMAT = "eosin.aggregate/1"
#: learned attributes kept in config.json, per registry name (classes_ always)
_FITTED = {"thresholds": ("thresholds_", "score_"), "summary": ("n_columns_",)}
_MIL = ("abmil", "clam_sb", "clam_mb", "transmil")
_ESTIMATOR = "estimator.skops"


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_folder(
    target: str | os.PathLike[str], config: dict[str, Any], extra: Callable[[Path], None] | None = None
) -> Path:
    """Write ``config.json`` (and whatever ``extra(folder)`` writes) into a folder beside ``target``, then rename it
    to ``target``, replacing any folder there (:func:`eosin.io.write_checkpoint` without tensors: the config also
    records ``format_version``, ``eosin_version`` and ``weights_sha256: null``)."""
    from eosin.io import write_checkpoint

    return write_checkpoint(target, None, config, extra=extra, replace_folder=True, json_default=_plain)


def base_config(agg: Any, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields every saved aggregator's ``config.json`` has."""
    from eosin._provenance import versions

    config = {
        "format": FORMAT,
        "aggregator": agg.name,
        "params": agg.get_params(),
        "classes": np.asarray(agg.classes_).tolist(),
        "fitted": {a: getattr(agg, a) for a in _FITTED.get(agg.name, ()) if hasattr(agg, a)},
        "versions": versions(),
    }
    if training:
        config["training"] = training
    return config


def save_aggregator(
    agg: Any, path: str | os.PathLike[str], *, training: dict[str, Any] | None = None
) -> Path:
    """Write a fitted rule or summary aggregator to the folder ``path`` (MIL models: their own ``save``)."""
    agg._check_fitted()
    extra = None
    if hasattr(agg, "estimator_"):

        def extra(folder: Path) -> None:
            import skops.io

            skops.io.dump(agg.estimator_, folder / _ESTIMATOR)

    return write_folder(path, base_config(agg, training), extra)


def load_aggregator(path: str | os.PathLike[str], *, device: str = "cpu") -> Any:
    """Read any aggregator written by ``save`` (or ``eosin train mil``'s ``model/`` folder), ready to predict.

    Parameters
    ----------
    path
        The folder.
    device
        Where an attention-MIL network goes (``cpu``, ``cuda``, ``auto``); ignored by the other aggregators.

    Raises
    ------
    StoreError
        When ``path`` is not such a folder, its format is unknown, or its learned state does not fit.
    """
    from eosin.aggregate import get_aggregator

    folder = Path(path)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise StoreError(
            "not an eosin aggregator (expected config.json).",
            path=folder,
            fix="pass the folder written by save() or the model/ folder of eosin train mil",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise StoreError(f"config.json is not JSON ({exc}).", path=config_path) from None
    name = config.get("aggregator")
    if config.get("format") != FORMAT or not isinstance(name, str):
        raise StoreError(
            f"unknown aggregator format {config.get('format')!r}.",
            path=folder,
            fix="save it again with eosin",
        )
    if name in _MIL:
        from eosin.aggregate._mil import load_mil

        return load_mil(folder, config, device=device)
    agg = get_aggregator(name, **config["params"])
    agg.classes_ = np.asarray(config["classes"])
    for attr, value in (config.get("fitted") or {}).items():
        setattr(agg, attr, np.asarray(value) if isinstance(value, list) else value)
    if name == "summary":
        agg.estimator_ = _load_estimator(folder / _ESTIMATOR)
    agg._check_fitted()
    return agg


def _load_estimator(path: Path) -> Any:
    import skops.io

    if not path.is_file():
        raise StoreError("the summary aggregator's estimator.skops is missing.", path=path)
    untrusted = skops.io.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith("sklearn.")]
    if foreign:
        raise StoreError(
            f"the estimator holds types that are not scikit-learn's ({', '.join(foreign)}); not loaded.",
            path=path,
            fix="only load models you trust; save it again with eosin",
        )
    return skops.io.load(path, trusted=untrusted)
