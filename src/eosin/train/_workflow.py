"""The tile-classifier workflow of ``eosin train tiles`` as one Python call: labelled tiles in, a checkpoint out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["train_tiles"]


def train_tiles(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    encoder: str,
    weights: str | None = "hub",
    probe: str = "finetune",
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-4,
    val_fraction: float = 0.2,
    patient_column: str = "patient",
    label_from: str = "auto",
    balance: str = "weighted",
    tile_size: int | None = None,
    positive_fraction: float | None = None,
    positive_class: str | None = None,
    augment: bool = True,
    k: int = 5,
    input_size: int | None = None,
    mpp: float | None = None,
    patience: int = 3,
    device: str = "auto",
    precision: str = "auto",
    workers: int | None = None,
    seed: int = 0,
    tiny: bool = False,
    progress: bool = False,
    on_tiling: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a tile classifier on ``data`` and save it into ``out``; returns the summary ``eosin train tiles`` prints
    (the same defaults: a test holds the two together).

    ``data``: a folder with one sub-folder per class, or a CSV of ``path,label[,patient]``
    (:func:`eosin.data.load_tile_table`). Validation tiles are whole patients held out (``val_fraction``, stratified
    by label where possible; 0: none). ``probe``: ``finetune`` (:func:`fit_tiles`, early stopping on the
    validation patients), ``linear`` or ``knn`` (:func:`fit_probe_tiles` on frozen features). ``tile_size`` cuts the
    images into tiles first; ``balance="stride"`` cuts rare classes with a denser stride (DeepSlide), the others
    (``weighted``, ``oversample``, ``none``) balance the sampling; ``positive_fraction`` fixes the share of
    ``positive_class`` in every batch (Foucart). ``weights=None`` (or ``"none"``) starts from random weights.
    ``on_tiling`` receives the tile counts and strides when ``tile_size`` is given. The checkpoint records the
    split (patients), the tiling and the validation scores.
    """
    from eosin.data import load_tile_table, patient_split
    from eosin.errors import UsageError
    from eosin.train._checkpoint import save_classifier
    from eosin.train._fit import fit_probe_tiles, fit_tiles, validation_metrics

    table = load_tile_table(data, label_from=label_from, patient_column=patient_column)
    w = None if weights is None or str(weights).lower() == "none" else weights
    if val_fraction > 0:
        tr, va = patient_split(table.labels, table.patients, test_size=val_fraction, seed=seed)
        train_t, val_t = table.subset(tr), table.subset(va)
    else:
        train_t, val_t = table, None
    tiling: dict[str, Any] = {}
    if balance == "stride" and tile_size is None:
        raise UsageError(
            "--balance stride cuts the images of DATA with per-class strides: give --tile-size N."
        )
    if tile_size is not None:
        from eosin.data import cut_tiles, stride_balanced_tiles

        if balance == "stride":
            train_t, strides = stride_balanced_tiles(train_t, tile_size=tile_size)
            balance = "none"  # the tiling balanced the classes
            tiling = {"tile_size": tile_size, "strides": strides}
        else:
            train_t = cut_tiles(train_t, tile_size=tile_size)
            tiling = {"tile_size": tile_size, "strides": {c: tile_size for c in table.classes}}
        val_t = cut_tiles(val_t, tile_size=tile_size) if val_t is not None else None
        if on_tiling is not None:
            on_tiling({"tiles": train_t.counts(), **tiling})
    if probe == "finetune":
        model, history = fit_tiles(
            train_t,
            val_t,
            encoder=encoder,
            weights=w,
            tiny=tiny,
            input_size=input_size,
            mpp=mpp,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            balance=balance,
            positive_fraction=positive_fraction,
            positive_class=positive_class,
            augment=augment,
            patience=patience,
            device=device,
            precision=precision,
            workers=workers,
            seed=seed,
            progress=progress,
        )
        last = history[-1]
    else:
        model = fit_probe_tiles(
            train_t,
            encoder=encoder,
            weights=w,
            tiny=tiny,
            input_size=input_size,
            mpp=mpp,
            kind=probe,
            k=k,
            batch_size=batch_size,
            workers=workers,
            device=device,
        )
        last = {}
        if val_t is not None:
            last = validation_metrics(
                model, val_t, next(model.parameters()).device, batch_size=batch_size, workers=workers
            )
            model.meta["validation"] = last
    if tiling:
        model.meta["tiling"] = tiling
    model.meta["split"] = {
        "val_fraction": val_fraction,
        "train_patients": sorted(set(train_t.patients.tolist()))[:1000],
        "val_patients": sorted(set(val_t.patients.tolist()))[:1000] if val_t is not None else [],
    }
    save_classifier(model, out)
    summary: dict[str, Any] = {
        "checkpoint": str(Path(out)),
        "encoder": encoder,
        "probe": probe,
        "classes": list(table.classes),
        "n_train": len(train_t),
        "train_counts": train_t.counts(),
        "n_val": 0 if val_t is None else len(val_t),
        **{k_: round(v, 4) for k_, v in last.items() if k_.startswith("val_")},
    }
    if probe == "finetune":
        summary["precision"] = model.meta["training"]["precision"]
        summary["calibration"] = model.meta.get("calibration")
    return summary
