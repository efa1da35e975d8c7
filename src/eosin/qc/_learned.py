"""The learned artefact detector: a patch classifier (Foucart et al.) run over the QC image as a per-pixel map.

A classifier trained on small thumbnail patches labelled artefact or clean (``scripts/results_artefacts.py``)
scores overlapping patches of the QC image; each pixel gets the blended average of the patches that cover it
(:func:`eosin.segment.patch_probability_map`), so the map has the image's shape and follows thin artefacts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import UsageError

__all__ = ["ARTEFACT_CLASS", "artefact_map", "load_artefact_model", "patch_scorer"]

#: the class of a learned artefact detector that counts as artefact (the other classes are clean)
ARTEFACT_CLASS = "artefact"

_MODELS: dict[tuple[str, float], Any] = {}  # per-process cache: one checkpoint serves every slide of a worker


def load_artefact_model(path: str | os.PathLike[str]) -> Any:
    """The :class:`~eosin.train.TileClassifier` saved in the folder ``path``, checked to be an artefact detector.

    Raises :class:`~eosin.errors.UsageError` naming ``path`` when it does not exist or the classifier has no
    ``artefact`` class, :class:`~eosin.errors.EosinError` when it is not a classifier checkpoint. Loaded once per
    process (keyed by the path and its modification time).
    """
    from eosin.train import load_classifier

    path = Path(path)
    weights = path / "model.safetensors"
    key = (str(path.resolve()), weights.stat().st_mtime if weights.is_file() else 0.0)
    if key in _MODELS:
        return _MODELS[key]
    if not path.exists():
        raise UsageError(
            "no such artefact model (a folder with config.json and model.safetensors).",
            path=path,
            fix="give the folder scripts/results_artefacts.py or eosin train tiles wrote",
        )
    model = load_classifier(path)
    if ARTEFACT_CLASS not in model.classes:
        raise UsageError(
            f"the classifier's classes are {list(model.classes)}; an artefact model needs a class "
            f"{ARTEFACT_CLASS!r}.",
            path=path,
            fix="train it on tiles labelled artefact and clean",
        )
    _MODELS.clear()
    _MODELS[key] = model
    return model


def patch_scorer(model: Any, *, batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``(n, p, p, 3)`` uint8 patches → ``(n,)`` float32 artefact probability, from a classifier.

    ``model`` is a :class:`~eosin.train.TileClassifier` with an ``artefact`` class (or a checkpoint folder);
    patches are resized to its input size as in training (area when shrinking, cubic when enlarging).
    """
    import cv2
    import torch

    from eosin.data import to_input

    if isinstance(model, (str, os.PathLike)):
        model = load_artefact_model(model)
    if ARTEFACT_CLASS not in model.classes:
        raise UsageError(f"the classifier has no {ARTEFACT_CLASS!r} class (classes {list(model.classes)}).")
    column = list(model.classes).index(ARTEFACT_CLASS)
    size = model.input_size
    dev = next(model.parameters()).device
    model.eval()

    def score(patches: np.ndarray) -> np.ndarray:
        patches = np.asarray(patches, np.uint8)
        out = np.empty(len(patches), np.float32)
        for start in range(0, len(patches), batch_size):
            part = patches[start : start + batch_size]
            if part.shape[1:3] != (size, size):
                method = cv2.INTER_AREA if part.shape[1] > size else cv2.INTER_CUBIC
                part = np.stack([cv2.resize(p, (size, size), interpolation=method) for p in part])
            with torch.inference_mode():
                x = to_input(torch.from_numpy(np.ascontiguousarray(part)), model.mean, model.std, dev)
                out[start : start + len(part)] = model.predict_proba(x)[:, column].cpu().numpy()
        return out

    return score


def artefact_map(
    image: np.ndarray,
    model: Any,
    *,
    patch_size: int | None = None,
    stride: int | None = None,
    image_side: int | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Per-pixel artefact probability of ``image`` from a patch classifier on overlapping patches.

    Parameters
    ----------
    image
        ``(rows, cols, 3)`` uint8 RGB (e.g. the QC image, :func:`~eosin.qc.qc_image`).
    model
        A :class:`~eosin.train.TileClassifier` with an ``artefact`` class, its checkpoint folder, or any function
        ``(n, p, p, 3)`` uint8 → ``(n,)`` probabilities.
    patch_size
        Side of the patches in image pixels; default the ``patch_size`` the model was trained on (recorded in
        its checkpoint), else its input size.
    stride
        Step between patches (default half the patch); each pixel averages the patches covering it.
    image_side
        When given and the image's longer side exceeds it, the image is shrunk to that side first and the map
        enlarged back: the scale of the thumbnails the model learned from (``eosin qc`` passes the
        ``image_side`` a checkpoint records). Default: the image as it is.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` float32 in [0, 1] (an image smaller than a patch is padded by reflection).

    Examples
    --------
    >>> red = lambda p: (p[..., 0] > 200).mean(axis=(1, 2))  # a "model" scoring patches by their red share
    >>> img = np.zeros((64, 64, 3), np.uint8); img[:, 32:, 0] = 255
    >>> m = artefact_map(img, red, patch_size=16, stride=8)
    >>> bool(m[:, :24].max() < 0.05 and m[:, 40:].min() > 0.95)
    True
    """
    from eosin.segment import patch_probability_map

    if isinstance(model, (str, os.PathLike)):
        model = load_artefact_model(model)
    if callable(model) and not hasattr(model, "classes"):
        score, meta = model, {}
    else:
        score, meta = patch_scorer(model, batch_size=batch_size), getattr(model, "meta", {})
    patch = int(patch_size or meta.get("patch_size") or model.input_size)
    step = int(stride or max(1, patch // 2))
    image = np.asarray(image)[..., :3]
    if image.ndim != 3:
        raise UsageError(f"image must be (rows, cols, 3), got shape {np.shape(image)}.")
    rows, cols = image.shape[:2]
    k = max(rows, cols) / image_side if image_side else 1.0
    if k > 1:
        import cv2

        small = (max(1, round(cols / k)), max(1, round(rows / k)))
        image = cv2.resize(np.ascontiguousarray(image, np.uint8), small, interpolation=cv2.INTER_AREA)
    out = patch_probability_map(
        np.ascontiguousarray(image, np.uint8), score, patch_size=patch, stride=step, batch_size=batch_size
    )
    if k > 1:
        out = cv2.resize(out, (cols, rows), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
