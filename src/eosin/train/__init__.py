"""Training: the one training loop (:func:`fit_loop`) every trainer runs on; tile classifiers (fine-tuning registry
encoders, linear/kNN probes) and their checkpoints; :func:`train_tiles` is ``eosin train tiles`` in one call.

>>> from eosin.data import load_tile_table, patient_split
>>> table = load_tile_table("tiles/")  # doctest: +SKIP
>>> tr, va = patient_split(table.labels, table.patients, test_size=0.2)  # doctest: +SKIP
>>> model, history = fit_tiles(table.subset(tr), table.subset(va), encoder="resnet18", epochs=5)  # doctest: +SKIP
>>> save_classifier(model, "ckpt/")  # doctest: +SKIP
>>> model = load_classifier("ckpt/")  # doctest: +SKIP

Everything here needs PyTorch; names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eosin._lazy import lazy_getattr

_LAZY = {
    "TileClassifier": "eosin.train._model",
    "fit_tiles": "eosin.train._fit",
    "fit_loop": "eosin.train._loop",
    "EpochStats": "eosin.train._loop",
    "LoopResult": "eosin.train._loop",
    "fit_probe": "eosin.train._fit",
    "fit_probe_tiles": "eosin.train._fit",
    "probe_head": "eosin.train._fit",
    "extract_features": "eosin.train._fit",
    "predict_tiles": "eosin.train._fit",
    "validation_metrics": "eosin.train._fit",
    "save_classifier": "eosin.train._checkpoint",
    "load_classifier": "eosin.train._checkpoint",
    "checkpoint_key": "eosin.train._checkpoint",
    "colour_texture_features": "eosin.train._handcrafted",
    "predict_store": "eosin.train._predict",
    "heatmap": "eosin.train._predict",
    "train_tiles": "eosin.train._workflow",
}

__all__ = [
    "EpochStats",
    "LoopResult",
    "TileClassifier",
    "checkpoint_key",
    "colour_texture_features",
    "extract_features",
    "fit_loop",
    "fit_probe",
    "fit_probe_tiles",
    "fit_tiles",
    "load_classifier",
    "predict_tiles",
    "probe_head",
    "save_classifier",
    "predict_store",
    "heatmap",
    "train_tiles",
    "validation_metrics",
]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(_LAZY)


if TYPE_CHECKING:  # pragma: no cover
    from eosin.train._checkpoint import checkpoint_key, load_classifier, save_classifier
    from eosin.train._fit import (
        extract_features,
        fit_probe,
        fit_probe_tiles,
        fit_tiles,
        predict_tiles,
        probe_head,
        validation_metrics,
    )
    from eosin.train._loop import EpochStats, LoopResult, fit_loop
    from eosin.train._workflow import train_tiles
    from eosin.train._handcrafted import colour_texture_features
    from eosin.train._model import TileClassifier
