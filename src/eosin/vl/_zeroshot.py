"""Zero-shot classification: tiles scored against class prompt ensembles, no training.

``zero_shot`` works on arrays (tiles or their embeddings); ``zero_shot_sources`` runs it over tile folders and
slide stores and writes the predictions CSV that ``eosin evaluate classification`` reads (``id``, ``label`` when
known, ``pred``, ``p_<class>``, then provenance: ``slide``, ``x``, ``y``, ``size``, ``mpp``, ``model``,
``weights_id``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import UsageError

__all__ = ["ZeroShotResult", "zero_shot", "zero_shot_sources"]


@dataclass(frozen=True)
class ZeroShotResult:
    """``classes`` (K,), ``logits`` and ``proba`` (n, K) float32 (softmax of ``logit_scale * cosine + bias``),
    ``pred`` (n,) str: the class with the highest similarity."""

    classes: tuple[str, ...]
    logits: np.ndarray
    proba: np.ndarray
    pred: np.ndarray


def scores(embeddings: np.ndarray, class_emb: np.ndarray, logit_scale: float, logit_bias: float = 0.0):
    """Logits and softmax probabilities of unit ``embeddings`` (n, d) against unit ``class_emb`` (K, d)."""
    logits = (
        np.asarray(embeddings, np.float32) @ np.asarray(class_emb, np.float32).T
    ) * logit_scale + logit_bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(shifted)
    proba /= proba.sum(axis=1, keepdims=True)
    return logits.astype(np.float32), proba.astype(np.float32)


def zero_shot(
    images: np.ndarray,
    prompts: Mapping[str, list[str]] | str | os.PathLike[str],
    *,
    model: Any,
    embeddings: bool = False,
    batch_size: int | None = None,
) -> ZeroShotResult:
    """Classify tiles by their similarity to each class's prompt ensemble.

    Parameters
    ----------
    images
        uint8 RGB tiles ``(n, rows, cols, 3)``, or unit embeddings ``(n, d)`` of ``model`` when ``embeddings``.
    prompts
        Class -> prompts (see :func:`eosin.vl.load_prompts`), or a prompt file.
    model
        A :class:`~eosin.vl.VLModel` or anything :func:`~eosin.vl.load_vl_model` accepts.

    Examples
    --------
    >>> result = zero_shot(tiles, {"tumour": ["an H&E image of tumour."], "fat": ["adipose tissue."]},
    ...                    model="plip")  # doctest: +SKIP
    """
    from eosin.vl._models import load_vl_model
    from eosin.vl._prompts import class_embeddings, load_prompts

    model = load_vl_model(model)
    if not isinstance(prompts, Mapping):
        prompts = load_prompts(prompts)
    classes = tuple(prompts)
    if len(classes) < 2:
        raise UsageError(
            "zero-shot classification needs at least two classes.", fix="add prompts for another class"
        )
    emb = np.asarray(images, np.float32) if embeddings else model.encode_images(images, batch_size=batch_size)
    if emb.ndim != 2 or emb.shape[1] != model.embedding_dim:
        raise UsageError(
            f"embeddings of shape {emb.shape} do not fit {model.name} (dimension {model.embedding_dim}).",
            fix="embed the tiles with the same model",
        )
    logits, proba = scores(emb, class_embeddings(model, prompts), model.logit_scale, model.logit_bias)
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    return ZeroShotResult(classes, logits, proba, pred)


def zero_shot_sources(
    inputs: Sequence[str | os.PathLike[str]],
    prompts: Mapping[str, list[str]] | str | os.PathLike[str],
    *,
    model: Any,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    grid_key: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Zero-shot over tile folders and slide stores; write the predictions CSV to ``out`` (atomically).

    Returns a summary: n tiles, classes, accuracy when labels are known, and what made it (model, weights,
    device, precision, versions).
    """
    from eosin.vl._models import load_vl_model
    from eosin.vl._prompts import class_embeddings, load_prompts
    from eosin.vl._sources import iter_sources

    model = load_vl_model(model)
    if not isinstance(prompts, Mapping):
        prompts = load_prompts(prompts)
    classes = tuple(prompts)
    if len(classes) < 2:
        raise UsageError(
            "zero-shot classification needs at least two classes.", fix="add prompts for another class"
        )
    class_emb = class_embeddings(model, prompts)
    rows: list[dict[str, Any]] = []
    for chunk in iter_sources(
        inputs,
        input_size=model.input_size,
        native_mpp=model.native_mpp,
        batch_size=batch_size,
        grid_key=grid_key,
        workers=workers,
        progress=progress,
    ):
        emb = model.encode_images(chunk.images, batch_size=batch_size)
        _, proba = scores(emb, class_emb, model.logit_scale, model.logit_bias)
        for i in range(len(chunk.ids)):
            rows.append(
                {
                    "id": chunk.ids[i],
                    "label": chunk.labels[i],
                    "pred": classes[int(proba[i].argmax())],
                    **{f"p_{c}": f"{proba[i, k]:.6f}" for k, c in enumerate(classes)},
                    "slide": chunk.slides[i],
                    "x": int(chunk.x[i]),
                    "y": int(chunk.y[i]),
                    "size": int(chunk.size[i]),
                    "mpp": "" if np.isnan(chunk.mpp[i]) else f"{chunk.mpp[i]:.4f}",
                }
            )
    labelled = any(r["label"] for r in rows)
    meta = model.describe()
    columns = ["id", *(["label"] if labelled else []), "pred", *(f"p_{c}" for c in classes)]
    columns += ["slide", "x", "y", "size", "mpp", "model", "weights_id", "precision"]
    if out is not None:
        from eosin.io import atomic_write_text

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {
                    **r,
                    "model": meta["model"],
                    "weights_id": meta["weights_id"],
                    "precision": meta["precision"],
                }
            )
        atomic_write_text(Path(out), buf.getvalue())
    summary: dict[str, Any] = {
        "n_tiles": len(rows),
        "classes": list(classes),
        "out": None if out is None else str(out),
    }
    if labelled:
        known = [r for r in rows if r["label"]]
        summary["accuracy"] = round(float(np.mean([r["label"] == r["pred"] for r in known])), 4)
        unknown = sorted({r["label"] for r in known} - set(classes))
        if unknown:
            summary["labels_without_prompts"] = unknown
    return {**summary, **meta}
