"""Slide-level inference: a trained aggregator (``eosin train mil``) applied to new slides' stored bags.

Each slide's bag is read from its store (the features of the encoder the model was trained on, or for the rules on
tile probabilities the tile predictions it was trained on); the slide's class probabilities go into one CSV that
``eosin evaluate classification`` reads, and attention models write ``attention/<key>`` into each store with a
heatmap over the slide's thumbnail.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["is_aggregator", "predict_slides", "read_labels"]

#: aggregators whose bags are tile class probabilities (``predictions/``), not features
_PROBABILITY = ("majority", "mean", "thresholds")


def is_aggregator(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a model folder written by an aggregator's ``save`` (``eosin train mil``'s ``model/``)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(config.get("format", "")).startswith("eosin.aggregate/")


def read_labels(path: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """``slide_id -> (label, patient)`` from a CSV with columns slide_id (or slide), label[, patient_id]."""
    from eosin.errors import DataError

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        id_col = next((c for c in ("slide_id", "slide") if c in cols), None)
        if id_col is None or "label" not in cols:
            raise DataError(
                f"needs columns slide_id (or slide) and label; columns seen: {cols}.",
                path=path,
                fix="add a header line slide_id,label[,patient_id]",
            )
        pat_col = next((c for c in ("patient_id", "patient") if c in cols), None)
        return {r[id_col]: (r["label"], r[pat_col] if pat_col else r[id_col]) for r in reader}


def _model_key(folder: Path, name: str) -> str:
    """Store key of a model's outputs: its registry name and 8 hex of SHA-1 over its config and weight files."""
    digest = hashlib.sha1()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            digest.update(p.name.encode())
            digest.update(p.read_bytes())
    return f"{name}-{digest.hexdigest()[:8]}"


def _slide_id(store_path: Path) -> str:
    from eosin.run import store_name

    return store_name(store_path)


def predict_slides(
    stores: Sequence[str | os.PathLike[str]],
    model: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    labels: str | os.PathLike[str] | dict[str, tuple[str, str]] | None = None,
    grid: str | None = None,
    device: str = "cpu",
    csv_name: str = "predictions.csv",
    heatmap_dirs: Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Apply the aggregator saved in ``model`` to each store's bag; write the slide predictions CSV and heatmaps.

    Parameters
    ----------
    stores
        Slide stores holding the bags the model was trained on (``features/<encoder>--<grid>``).
    model
        A folder written by ``eosin train mil`` (its ``model/``), read by :func:`eosin.aggregate.load_aggregator`.
    out
        Output folder: ``csv_name`` (``id,label,pred,p_<class>...,patient``: ``eosin evaluate classification``
        reads it when ``labels`` gave the truth) and ``<slide>/attention.png`` for attention models.
    labels
        CSV (or mapping) ``slide_id -> (label, patient)``; slides without one get an empty label.
    grid
        Part of the bag's key that picks one grid when a store holds several.
    heatmap_dirs
        Per store, the folder its ``attention.png`` goes to (default ``out/<slide>``).

    Returns
    -------
    dict
        key, classes, csv path, one record per slide (slide_id, store, pred, proba, heatmap) and the failures
        ``(store, message)``; every store gets ``attention/<key>`` for attention models.
    """
    from eosin.aggregate import CohortBags, load_aggregator, predictions_csv, write_attention
    from eosin.errors import EosinError, UsageError
    from eosin.io import SlideStore, atomic_write_text, pick_key

    folder = Path(model)
    if not is_aggregator(folder):
        raise UsageError(
            "not a slide-level model folder (no config.json of eosin.aggregate).",
            path=folder,
            fix="pass the model/ folder written by eosin train mil",
        )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    agg = load_aggregator(folder, device=device)
    name = str(config.get("aggregator") or agg.name)
    source = (config.get("training") or {}).get("source")
    if not source:
        raise UsageError("the model records no bag source (training.source).", path=folder / "config.json")
    kind = "predictions" if name in _PROBABILITY else "features"
    truth = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else dict(labels or {})
    key = _model_key(folder, name)
    out = Path(out)
    good, keys, failures = [], [], []
    for s in stores:
        path = Path(s)
        try:
            keys.append(pick_key(SlideStore.open(path), kind, source, grid=grid))
            good.append(path)
        except EosinError as exc:
            failures.append((str(path), str(exc)))
    ids = np.array([_slide_id(p) for p in good], dtype=object)
    lab = np.array([truth.get(i, ("", i))[0] for i in ids], dtype=object)
    pat = np.array([truth.get(i, ("", i))[1] for i in ids], dtype=object)
    bags = CohortBags(ids, pat, lab, None, good, kind, keys, "features" if kind == "features" else "proba")
    classes = [str(c) for c in agg.classes_]
    proba = np.zeros((len(good), len(classes)), dtype=np.float64)
    slides = []
    where_of = {Path(s): Path(d) for s, d in zip(stores, heatmap_dirs, strict=True)} if heatmap_dirs else {}
    for i in range(len(good)):
        proba[i] = agg.predict_proba([bags[i]])[0]
        record = {
            "slide_id": str(ids[i]),
            "store": str(good[i]),
            "pred": classes[int(np.argmax(proba[i]))],
            "proba": [round(float(v), 6) for v in proba[i]],
            "heatmap": None,
        }
        if hasattr(agg, "attention"):
            where = where_of.get(good[i], out / _safe(ids[i]))
            written = write_attention(
                bags, i, agg, key=key, role="predict", heatmap_path=where / "attention.png"
            )
            record["heatmap"], record["note"] = written["heatmap"], written["note"]
        slides.append(record)
    csv_path = out / csv_name
    if good:
        atomic_write_text(csv_path, predictions_csv(ids, lab, proba, classes, pat))
    return {
        "model": str(folder),
        "aggregator": name,
        "key": key,
        "source": f"{kind}/{source}",
        "classes": classes,
        "csv": str(csv_path) if good else None,
        "slides": slides,
        "failures": failures,
    }


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", str(name))
