"""Training a slide-level aggregator on a cohort of slide stores (what ``eosin train mil`` runs).

A cohort CSV names each slide, its patient and label (``eosin.data.read_cohort``). Each slide's bag is read from its
store: the features group of an encoder (``features/<encoder>--<grid>``, written by ``eosin embed``) or, for the
rules on tile probabilities (``majority``, ``mean``, ``thresholds``), a predictions group (``predictions/<model>``,
written by ``eosin predict``). Slides are split by patient, the aggregator is trained on the training patients and
scored on the held-out ones; attention MIL models write per-tile attention back into every store
(``attention/<key>``) with a heatmap over the slide's thumbnail.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eosin._provenance import versions
from eosin.aggregate._attention import ATTENTION_KIND, write_attention
from eosin.errors import DataError, StoreError, UsageError
from eosin.io import param_digest, pick_key

__all__ = [
    "ATTENTION_KIND",
    "CohortBags",
    "bag_inputs",
    "cohort_splits",
    "load_cohort_bags",
    "model_key",
    "predictions_csv",
    "store_of",
    "train_cohort",
    "write_attention",
]

#: aggregators whose bags are tile class probabilities (from ``predictions/``), not features
PROBABILITY_AGGREGATORS = ("majority", "mean", "thresholds")
#: CLI aliases of registry names
ALIASES = {"vote": "majority", "clam-sb": "clam_sb", "clam-mb": "clam_mb"}


@dataclass
class CohortBags(Sequence):
    """The bags of a cohort's slides, read from their stores on access (one bag in memory at a time).

    ``bags[i]`` is slide ``i``'s ``(n_tiles, n_columns)`` float32 array, rows in the grid's tile order.
    """

    slide_ids: np.ndarray
    patient_ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray | None
    stores: list[Path]
    kind: str
    keys: list[str]
    array: str

    def __len__(self) -> int:
        return len(self.stores)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("index CohortBags with an integer (or use subset)")
        from eosin.io import SlideStore

        group = SlideStore.open(self.stores[i]).read_group(self.kind, self.keys[i])
        return np.asarray(group[self.array][...], dtype=np.float32)

    def subset(self, index: np.ndarray) -> CohortBags:
        """The slides at ``index`` (integer positions), in that order."""
        index = np.asarray(index, dtype=int)
        return CohortBags(
            self.slide_ids[index],
            self.patient_ids[index],
            self.labels[index],
            None if self.split is None else self.split[index],
            [self.stores[i] for i in index],
            self.kind,
            [self.keys[i] for i in index],
            self.array,
        )

    def attrs(self, i: int) -> dict[str, Any]:
        """Attributes of slide ``i``'s bag group (encoder, grid, classes ...)."""
        from eosin.io import SlideStore

        return dict(SlideStore.open(self.stores[i]).read_group(self.kind, self.keys[i]).attrs)


def store_of(slide_path: str | os.PathLike[str], stores: str | os.PathLike[str] | None) -> Path:
    """The store of a cohort row: the path itself when it is a store (or a folder holding ``store.zarr``), else
    ``<stores>/<slide stem>/store.zarr`` as ``eosin tile --out <stores>`` lays stores out."""
    from eosin.run import STORE_NAME, store_in

    path = Path(slide_path)
    found = store_in(path)
    if found is not None:
        return found
    base = Path(stores) if stores is not None else path.parent
    return base / path.stem / STORE_NAME


def load_cohort_bags(
    cohort: Any,
    source: str,
    *,
    stores: str | os.PathLike[str] | None = None,
    kind: str = "features",
) -> tuple[CohortBags, list[tuple[str, str]]]:
    """Find every slide's bag group in its store.

    Parameters
    ----------
    cohort
        A :class:`eosin.data.Cohort`.
    source
        ``kind="features"``: an encoder name (the group whose key starts with ``<encoder>--``) or a full features
        key; ``kind="predictions"``: a checkpoint key of ``eosin predict`` (or its prefix).
    stores
        Folder holding ``<slide stem>/store.zarr`` (default: beside each slide file).

    Returns
    -------
    (bags, failures)
        The slides whose group was found, and ``(slide_id, message)`` for those left out.
    """
    from eosin.io import SlideStore

    keep, paths, keys, failures = [], [], [], []
    for i, (path, sid) in enumerate(zip(cohort.paths, cohort.slide_ids, strict=True)):
        store_path = store_of(path, stores)
        try:
            if not store_path.exists():
                raise StoreError(
                    f"slide {sid}: no store at {store_path}.",
                    path=path,
                    fix=f"run eosin tile {path} --out {store_path.parent.parent} (or pass --stores)",
                )
            store = SlideStore.open(store_path)
            try:  # an encoder name picks its <encoder>--<grid> group; a longer prefix picks one grid
                keys.append(pick_key(store, kind, source))
            except StoreError as exc:
                raise StoreError(f"slide {sid}: {exc.message}", path=exc.path, fix=exc.fix) from None
        except (StoreError, UsageError) as exc:
            failures.append((str(sid), str(exc)))
            continue
        keep.append(i)
        paths.append(store_path)
    index = np.asarray(keep, dtype=int)
    bags = CohortBags(
        cohort.slide_ids[index],
        cohort.patient_ids[index],
        cohort.labels[index],
        None if cohort.split is None else cohort.split[index],
        paths,
        kind,
        keys,
        "features" if kind == "features" else "proba",
    )
    return bags, failures


def bag_inputs(cohort_path: str | os.PathLike[str], bags: CohortBags) -> dict[str, Any]:
    """What the bags were made from: the cohort file's SHA-256 and a SHA-256 over every slide's bag group (its
    key, the weights hash of the encoder that made it, its length), plus the distinct weights hashes."""
    from eosin._provenance import sha256_file

    rows, hashes = [], set()
    for i in range(len(bags)):
        attrs = bags.attrs(i)
        whash = attrs.get("weights_hash")
        hashes.add(whash)
        rows.append([str(bags.slide_ids[i]), f"{bags.kind}/{bags.keys[i]}", whash, attrs.get("n_tiles")])
    digest = hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()
    return {
        "cohort_sha256": sha256_file(cohort_path),
        "bags_sha256": digest,
        "weights_hashes": sorted(h for h in hashes if h),
    }


def cohort_splits(
    bags: CohortBags, *, folds: int | None = None, test_size: float = 0.3, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Patient-level ``{"train", "val", "test"}`` index sets (one per fold; one set without ``folds``).

    The cohort's split column is used when present (``val`` may be empty); otherwise the test patients are drawn
    stratified by label (:func:`eosin.data.patient_split`), or every patient is tested once over ``folds``
    stratified folds (:func:`eosin.data.patient_kfold`). A patient on both sides raises
    :class:`~eosin.errors.PatientLeakError`.
    """
    from eosin.data import check_no_leak, patient_kfold, patient_split

    if bags.split is not None:
        if folds:
            raise UsageError(
                "the cohort has a split column; --folds would ignore it.",
                fix="drop the split column or --folds",
            )
        sets = {name: np.flatnonzero(bags.split == name) for name in ("train", "val", "test")}
        if sets["train"].size == 0 or sets["test"].size == 0:
            raise DataError(
                "the split column needs train and test slides (with features).",
                fix="mark some patients train and some test",
            )
        check_no_leak(bags.patient_ids, sets["train"], sets["test"])
        if sets["val"].size:
            check_no_leak(bags.patient_ids, sets["train"], sets["val"])
            check_no_leak(bags.patient_ids, sets["val"], sets["test"])
        return [sets]
    empty = np.zeros(0, dtype=int)
    if folds:
        return [
            {"train": tr, "val": empty, "test": te}
            for tr, te in patient_kfold(bags.labels, bags.patient_ids, k=folds, seed=seed)
        ]
    tr, te = patient_split(bags.labels, bags.patient_ids, test_size=test_size, seed=seed)
    return [{"train": tr, "val": empty, "test": te}]


def predictions_csv(
    slide_ids: Sequence[str],
    labels: Sequence[str],
    proba: np.ndarray,
    classes: Sequence[str],
    patients: Sequence[str],
    extra: dict[str, Sequence[Any]] | None = None,
) -> str:
    """The CSV ``eosin evaluate classification`` reads: ``id,label,pred,p_<class>...,patient`` (+ ``extra``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = extra or {}
    writer.writerow(["id", "label", "pred", *(f"p_{c}" for c in classes), "patient", *extra])
    for i, sid in enumerate(slide_ids):
        p = proba[i]
        writer.writerow(
            [
                sid,
                labels[i],
                classes[int(np.argmax(p))],
                *(f"{v:.6f}" for v in p),
                patients[i],
                *(str(col[i]) for col in extra.values()),
            ]
        )
    return buffer.getvalue()


def model_key(name: str, config: dict[str, Any]) -> str:
    """Store key of a trained aggregator's outputs: its name and 6 hex digits of SHA-1 of its configuration."""
    return f"{name}_{param_digest(config)}"


def train_cohort(
    cohort_path: str | os.PathLike[str],
    source: str,
    out: str | os.PathLike[str],
    *,
    stores: str | os.PathLike[str] | None = None,
    model: str = "abmil",
    params: dict[str, Any] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    folds: int | None = None,
    test_size: float = 0.3,
    seed: int = 0,
    device: str = "auto",
    n_bootstrap: int = 1000,
    progress: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """Train aggregator ``model`` on a cohort's stored bags, evaluate it on held-out patients, write the outputs.

    Parameters
    ----------
    cohort_path
        Cohort CSV (``path, slide_id, patient_id, label[, split]``); ``path`` is a slide file or its store.
    source
        Encoder name of the stored features (or, for ``majority``/``mean``/``thresholds``, the key of stored tile
        predictions).
    out
        Output folder: ``predictions.csv`` (held-out slides, the format of ``eosin evaluate classification``),
        ``metrics.json`` (slide level, bootstrap 95% CIs resampling patients), ``model/`` (every aggregator,
        :func:`eosin.aggregate.load_aggregator` reads it; ``fold<k>/model/`` with ``folds``), ``run.json`` (the
        values used: parameters, resolved device and precision, seed, versions, input hashes) and
        ``<slide_id>/attention.png`` (MIL).
    stores
        Folder of ``<slide stem>/store.zarr`` stores (default: beside each slide file).
    model, params
        Registry name (``vote`` = ``majority``; ``-`` and ``_`` alike) and its constructor parameters.
    epochs, lr, seed, device
        Training settings of the MIL models.
    folds
        Patient-level stratified k-fold cross-validation instead of one split: every slide is predicted (and its
        attention written) by the fold model that did not see its patient.
    test_size
        Share of patients held out when the cohort has no split column.
    log
        Called with one line of text per slide left out or heatmap not drawn.

    Returns
    -------
    dict
        A JSON-ready summary: slides used and left out, split sizes, metrics (value and CI), output paths.
    """
    from eosin.aggregate import get_aggregator
    from eosin.data import read_cohort
    from eosin.evaluate import classification_metrics
    from eosin.io import atomic_write_text

    log = log or (lambda line: None)
    out = Path(out)
    name = ALIASES.get(model.lower(), model.lower().replace("-", "_"))
    kind = "predictions" if name in PROBABILITY_AGGREGATORS else "features"
    params = dict(params or {})
    probe = get_aggregator(name, **params)  # refuses unknown names and parameters before any reading
    cohort = read_cohort(cohort_path, check_files=False)
    bags, failures = load_cohort_bags(cohort, source, stores=stores, kind=kind)
    for sid, message in failures:
        log(f"error: {message}")
    if len(bags) == 0:
        raise DataError(
            f"no slide of the cohort has {kind} {source!r}; {len(failures)} left out.",
            path=cohort_path,
            fix=f"run eosin embed --encoder {source} on the cohort's stores first"
            if kind == "features"
            else "run eosin predict on the cohort's stores first",
        )
    if kind == "predictions":
        params.setdefault("classes", list(bags.attrs(0).get("classes", [])) or None)
    elif name == "summary":
        params.setdefault("bag_kind", "features")
    is_mil = hasattr(probe, "attention")
    if is_mil:  # the values used become the model's parameters, so every record states them
        given = {"epochs": epochs, "lr": lr, "seed": seed, "device": device}
        params.update({k: v for k, v in given.items() if v is not None})
    splits = cohort_splits(bags, folds=folds, test_size=test_size, seed=seed)
    config = {"aggregator": name, "params": probe.set_params(**params).get_params(), "source": source}
    key = model_key(name, {**config, "out": str(out.resolve())})
    inputs = bag_inputs(cohort_path, bags)
    out.mkdir(parents=True, exist_ok=True)

    test_rows, test_proba, fold_of, attention_records = [], [], [], []
    classes, saved, resolved = None, [], {"device": "cpu", "precision": None}
    for k, sets in enumerate(splits):
        train, val, test = (bags.subset(sets[s]) for s in ("train", "val", "test"))
        agg = get_aggregator(name, **params)
        if is_mil:
            fit_val = (val, val.labels) if len(val) else None
            agg.fit(train, train.labels, val=fit_val)
            dev = agg.device_
            resolved = {"device": str(dev), "precision": agg.precision_}
        else:
            agg.fit(train, train.labels)
        classes = [str(c) for c in agg.classes_] if classes is None else classes
        test_proba.append(agg.predict_proba(test))
        test_rows.extend(sets["test"].tolist())
        fold_of.extend([k] * len(test))
        folder = out / "model" if folds is None else out / f"fold{k}" / "model"
        training = {"source": source, "fold": k if folds else None, "n_train": len(train), "n_val": len(val)}
        saved.append(str(agg.save(folder, training={**training, **resolved, "seed": seed, "inputs": inputs})))
        if not is_mil:
            continue
        roles = {int(i): r for r in ("train", "val", "test") for i in sets[r]}
        # with folds a slide's attention comes from the model that held it out; otherwise from the one model
        targets = sets["test"] if folds else np.array(sorted(roles))
        for i in _bar(targets, progress, f"attention fold {k}" if folds else "attention"):
            record = write_attention(
                bags,
                int(i),
                agg,
                key=key,
                role=roles[int(i)],
                heatmap_path=out / _safe(str(bags.slide_ids[i])) / "attention.png",
            )
            if record["note"]:
                log(f"note: slide {record['slide_id']}: {record['note']}")
            attention_records.append(record)

    rows = np.asarray(test_rows, dtype=int)
    proba = np.concatenate(test_proba)
    y_true = bags.labels[rows]
    y_pred = np.asarray(classes)[np.argmax(proba, axis=1)]
    csv_text = predictions_csv(
        bags.slide_ids[rows],
        y_true,
        proba,
        classes,
        bags.patient_ids[rows],
        extra={"fold": fold_of} if folds else None,
    )
    atomic_write_text(out / "predictions.csv", csv_text)
    report = classification_metrics(
        y_true,
        y_pred,
        proba,
        classes=classes,
        groups=bags.patient_ids[rows],
        level="slide",
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    atomic_write_text(out / "metrics.json", json.dumps(report.summary(), indent=2))
    summary = {
        "cohort": str(cohort_path),
        "aggregator": name,
        "source": source,
        "kind": kind,
        "key": key if is_mil else None,
        "classes": classes,
        "n_slides": len(bags),
        "left_out": [sid for sid, _ in failures],
        "folds": folds,
        "n_train": [len(s["train"]) for s in splits],
        "n_val": [len(s["val"]) for s in splits],
        "n_test": int(rows.size),
        "models": saved,
        "predictions": str(out / "predictions.csv"),
        "metrics": {
            m: report[m].to_json()
            for m in ("accuracy", "balanced_accuracy", "roc_auc")
            if m in report.metrics
        },
        "heatmaps": sum(1 for r in attention_records if r["heatmap"]),
        "params": config["params"],
        **resolved,
        "seed": seed,
        "inputs": inputs,
        "versions": versions(),
    }
    atomic_write_text(out / "run.json", json.dumps(summary, indent=2, default=str))
    return summary


def _bar(items, progress: bool, desc: str):
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._+=-]", "_", name)
