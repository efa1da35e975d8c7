"""Training tile classifiers: fine-tuning an encoder with a linear head, or probes on frozen features."""

from __future__ import annotations

import json
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from eosin.data import TileTable, make_loader, to_input
from eosin.errors import UsageError
from eosin.train._loop import fit_loop
from eosin.train._model import KNNHead, LinearHead, TileClassifier

__all__ = [
    "PROBES",
    "extract_features",
    "fit_probe",
    "fit_probe_tiles",
    "fit_tiles",
    "predict_tiles",
    "probe_head",
]

PROBES = ("finetune", "linear", "knn")


def _encoder(encoder: Any, weights: Any, tiny: bool, input_size: int | None, seed: int = 0):
    from eosin.models import Encoder, create_encoder

    if isinstance(encoder, Encoder):
        model = encoder
    else:  # random weights (weights=None) are drawn from the training seed
        model = create_encoder(encoder, weights=weights, tiny=tiny, seed=seed)
    if input_size is not None:
        model.input_size = int(input_size)
    return model


def _meta(encoder, table: TileTable, params: dict[str, Any], mpp: float | None, tiny: bool) -> dict[str, Any]:
    from eosin._provenance import versions

    return {
        "input_size": encoder.input_size,
        "mpp": mpp,
        "tiny": tiny,
        "weights": None if params.get("weights") is None else str(params["weights"]),
        # the starting weights: a file and its SHA-256, or the seed of a random initialisation
        "initial_weights": {
            "file": encoder.weights_file,
            "sha256": encoder.weights_sha256,
            "seed": encoder.seed,
            "pretrained": encoder.weights_sha256 is not None,
            "source": getattr(encoder, "weights_source", None),
        },
        "training": {**{k: v for k, v in params.items() if k != "weights"}, "n_tiles": len(table)},
        "class_counts": table.counts(),
        "versions": versions(),
    }


def fit_tiles(
    train: TileTable,
    val: TileTable | None = None,
    *,
    encoder: Any = "resnet18",
    weights: Any = None,
    tiny: bool = False,
    input_size: int | None = None,
    mpp: float | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-4,
    weight_decay: float = 0.05,
    balance: str = "weighted",
    positive_fraction: float | None = None,
    positive_class: str | None = None,
    augment: bool = True,
    patience: int = 3,
    monitor: str = "val_loss",
    device: str = "auto",
    precision: str = "auto",
    workers: int | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[TileClassifier, list[dict[str, Any]]]:
    """Fine-tune a registry encoder with a linear head on labelled tiles.

    AdamW with a cosine learning-rate schedule over all steps; decoding and augmentation run in DataLoader
    worker processes while the model computes; weights and inputs are channels_last; mixed precision where the
    hardware runs it natively (``precision="auto"``: fp16 autocast with a gradient scaler on CUDA, bf16
    autocast on CPUs with bfloat16 instructions, see :mod:`eosin._device`). After every epoch the validation
    tiles are scored and the best epoch (lowest ``val_loss`` or highest ``val_balanced_accuracy``, per
    ``monitor``) is kept; training stops after ``patience`` epochs without improvement.

    Parameters
    ----------
    train, val
        Tile tables (the same classes); without ``val`` the last epoch is kept.
    encoder, weights, tiny
        Registry name and weights (``None``: random, ``"hub"``, a path), or a built :class:`eosin.models.Encoder`.
    input_size
        Side the tiles are resized to (default the encoder's).
    mpp
        Microns per pixel of the training tiles, recorded in the checkpoint (``eosin predict`` reads slides at it).
    device, precision
        Where to train (``auto``: CUDA, MPS, CPU) and the autocast precision (``auto``, ``fp32``, ``bf16``,
        ``fp16`` on CUDA); weights, optimizer state and loss stay float32 in every case.
    balance, positive_fraction, positive_class
        Class balance of the training batches (:func:`eosin.data.make_loader`): ``"weighted"``, ``"oversample"``
        or ``"none"``; or a fixed share ``positive_fraction`` of ``positive_class`` tiles in every batch
        (default the rarest class; Foucart et al.).
    max_steps
        Stop after this many optimizer steps (benchmarks, tests).

    Returns
    -------
    (TileClassifier, history)
        The model in eval mode on the CPU device it trained on, and one record per epoch (train_loss, tiles_per_s,
        val_loss, val_balanced_accuracy, lr).
    """
    from eosin._device import precision_candidates, select_device

    if monitor not in ("val_loss", "val_balanced_accuracy"):
        raise UsageError(f"monitor must be val_loss or val_balanced_accuracy, not {monitor!r}.")
    if len(train.classes) < 2:
        raise UsageError(f"training needs at least two classes; the tiles have {list(train.classes)}.")
    torch.manual_seed(seed)
    dev = select_device(device)
    precision_candidates(dev, precision)  # refuses impossible combinations before any work
    enc = _encoder(encoder, weights, tiny, input_size, seed)
    model = TileClassifier(enc, LinearHead(enc.embedding_dim, len(train.classes)), train.classes)
    model = model.to(dev).to(memory_format=torch.channels_last)
    # a fresh random draw: the speed of a path does not depend on which, so it needs no hash
    random_init = weights is None and isinstance(encoder, str)
    decision = _choose_precision(
        model, train, dev, precision, batch_size=batch_size, random=random_init, measure=workers is None
    )
    precision = decision.precision
    val_workers = workers
    threads, plan = _loader_plan(train, enc.input_size, augment, seed, dev, decision, workers)
    workers = plan["workers"]
    model.meta = _meta(
        enc,
        train,
        {
            "encoder": enc.spec.name,
            "weights": weights,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "balance": balance if positive_fraction is None else "positive-fraction",
            "positive_fraction": positive_fraction,
            "positive_class": positive_class,
            "augment": augment,
            "patience": patience,
            "monitor": monitor,
            "seed": seed,
            "precision": precision,
            "device": str(dev),
            "probe": "finetune",
        },
        mpp,
        tiny,
    )
    model.meta["calibration"] = decision.record()
    model.meta["loader"] = plan
    loader = make_loader(
        train,
        size=enc.input_size,
        batch_size=batch_size,
        balance=balance,
        positive_fraction=positive_fraction,
        positive_class=positive_class,
        augment=augment,
        workers=workers,
        seed=seed,
        drop_last=len(train) > batch_size,
        pin_memory=dev.type == "cuda",
    )
    steps_per_epoch = len(loader) if max_steps is None else min(len(loader), max_steps)
    total = max(1, steps_per_epoch * epochs if max_steps is None else min(max_steps, len(loader) * epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    loss_fn = nn.CrossEntropyLoss()

    def forward(batch):
        images, targets = batch
        return loss_fn(model(to_input(images, model.mean, model.std, dev)).float(), targets.to(dev))

    def record(stats, val_record):
        return {
            "epoch": stats.epoch,
            "train_loss": stats.train_loss,
            "tiles": stats.seen,
            "tiles_per_s": stats.seen / max(stats.seconds, 1e-9),
            "lr": schedule.get_last_lr()[0],
            **(val_record or {}),
        }

    def show(record):
        line = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
        print(json.dumps(line), file=sys.stderr, flush=True)

    validating = val is not None and len(val)
    history = fit_loop(
        forward,
        loader,
        optimizer=optimizer,
        scheduler=schedule,
        epochs=epochs,
        max_steps=max_steps,
        device=dev,
        precision=precision,
        model=model,
        size=lambda batch: len(batch[1]),
        validate=(lambda: validation_metrics(model, val, dev, batch_size=batch_size, workers=val_workers))
        if validating
        else None,
        monitor=monitor,
        mode="max" if monitor == "val_balanced_accuracy" else "min",
        patience=patience,
        mark_best=True,
        record=record,
        on_epoch=show if progress else None,
    ).history
    model.meta["history"] = history
    if threads is not None:
        torch.set_num_threads(threads)
    return model.eval(), history


def _loader_plan(table, size, augment, seed, dev, decision, workers):
    """DataLoader workers (and PyTorch threads) by measurement: decoding and augmenting a few tiles here against
    the calibrated training step per tile (:func:`eosin.data.choose_loader_workers`). Returns the thread count to
    restore afterwards (None: unchanged) and the plan recorded in the checkpoint."""
    from eosin.data import Augment, TileDataset, apply_loader_plan

    step_ms = decision.timings_ms.get(decision.choice.name) if workers is None else None
    if step_ms is None:
        from eosin.data import default_loader_workers

        n = default_loader_workers() if workers is None else workers
        return None, {"workers": n, "how": "given" if workers is not None else "default"}
    data = TileDataset(table, size=size, augment=Augment(seed=seed + 1) if augment else None)
    rows = min(len(table), 8)
    data[0]  # warm-up: imports, first-use allocations
    t0 = time.perf_counter()
    for i in range(rows):
        data[i]
    input_ms = 1000 * (time.perf_counter() - t0) / max(rows, 1)
    return apply_loader_plan(input_ms, step_ms, device_type=dev.type, unit="tile")


def _choose_precision(
    model: TileClassifier,
    table: TileTable,
    dev,
    precision: str,
    *,
    batch_size: int,
    random: bool,
    measure: bool = False,
):
    """``precision``, or for ``auto`` the fastest training step that agrees with float32, measured on the first
    few tiles of ``table`` (not augmented; cached per machine and model: :mod:`eosin._calibrate`)."""
    from eosin._calibrate import choose_training_precision
    from eosin.data import TileDataset

    rows = min(batch_size, len(table), 8 if dev.type == "cpu" else batch_size)
    data = TileDataset(table, size=model.input_size)
    images = torch.stack([data[i][0] for i in range(rows)]) if precision == "auto" or measure else None
    x = None if images is None else to_input(images, model.mean, model.std, dev)
    y = torch.as_tensor(table.label_index[:rows], device=dev)

    def forward(net, x):
        return nn.functional.cross_entropy(net(x).float(), y)

    return choose_training_precision(
        model,
        forward,
        x,
        dev,
        precision,
        task="train",
        name=model.encoder.spec.name,
        batch_size=batch_size,
        weights_id="random" if random else None,
        measure=measure,
    )


def validation_metrics(
    model: TileClassifier, val: TileTable, dev, *, batch_size: int, workers
) -> dict[str, float]:
    """``val_loss`` (mean cross-entropy) and ``val_balanced_accuracy`` of ``model`` on the labelled tiles ``val``,
    on device ``dev``."""
    from sklearn.metrics import balanced_accuracy_score

    proba = predict_tiles(model, val, batch_size=batch_size, workers=workers, device=dev)
    y = val.label_index
    p = np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)
    with warnings.catch_warnings():
        # a small validation set may lack classes the model predicts: the score is then the mean recall over the
        # classes present, which is what scikit-learn computes, without its warning on stderr
        warnings.filterwarnings(
            "ignore", message="y_pred contains classes not in y_true", category=UserWarning
        )
        balanced = float(balanced_accuracy_score(y, proba.argmax(axis=1)))
    return {"val_loss": float(-np.log(p).mean()), "val_balanced_accuracy": balanced}


def predict_tiles(
    model: TileClassifier, table: TileTable, *, batch_size: int = 64, workers: int | None = None, device=None
) -> np.ndarray:
    """Class probabilities ``(n, K)`` of the tiles of ``table`` (no augmentation), in table order."""
    dev = device or next(model.parameters()).device
    dev = torch.device(dev)
    # channels_last as trained: the same kernels give the same numbers, and it is faster on CPUs
    model.eval().to(memory_format=torch.channels_last)
    loader = make_loader(table, size=model.input_size, batch_size=batch_size, shuffle=False, workers=workers)
    out = []
    with torch.inference_mode():
        for images, _ in loader:
            out.append(model.predict_proba(to_input(images, model.mean, model.std, dev)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)))


def extract_features(
    encoder: Any,
    table: TileTable,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
) -> np.ndarray:
    """Frozen-encoder features ``(n, dim)`` float32 of the tiles of ``table``, in table order."""
    from eosin._device import select_device

    dev = select_device(device)
    enc = encoder.to(dev).eval()
    loader = make_loader(table, size=enc.input_size, batch_size=batch_size, shuffle=False, workers=workers)
    out = []
    with torch.inference_mode():
        for images, _ in loader:
            out.append(enc(to_input(images, enc.spec.mean, enc.spec.std, dev)).float().cpu().numpy())
    return np.concatenate(out)


def fit_probe(features: np.ndarray, labels: np.ndarray, *, kind: str = "linear", k: int = 5, c: float = 1.0):
    """A scikit-learn probe on precomputed features: standardisation, then logistic regression or kNN.

    Parameters
    ----------
    features
        ``(n, dim)`` features (e.g. a store's ``features/<encoder>--<grid>`` group, or :func:`extract_features`).
    labels
        ``(n,)`` class labels.
    kind
        ``"linear"`` (``LogisticRegression``, L2, ``C=c``) or ``"knn"`` (``KNeighborsClassifier``, ``k``
        neighbours, uniform weights).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Fitted; ``predict_proba`` columns follow ``pipeline.classes_``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "linear":
        clf = LogisticRegression(C=c, max_iter=2000)
    elif kind == "knn":
        clf = KNeighborsClassifier(n_neighbors=min(k, len(labels)))
    else:
        raise UsageError(f"probe kind must be linear or knn, not {kind!r}.")
    return make_pipeline(StandardScaler(), clf).fit(
        np.asarray(features, dtype=np.float64), np.asarray(labels)
    )


def probe_head(pipeline, features: np.ndarray | None = None) -> nn.Module:
    """The torch head computing what a fitted :func:`fit_probe` pipeline predicts (standardisation folded in).

    kNN heads store the standardised training features, so ``features`` (those the probe was fitted on) is needed.
    """
    scaler, clf = pipeline[0], pipeline[-1]
    shift = np.asarray(scaler.mean_, dtype=np.float64)
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    n_classes = len(clf.classes_)
    if hasattr(clf, "coef_"):
        w = clf.coef_ / scale
        b = clf.intercept_ - (clf.coef_ * shift / scale).sum(axis=1)
        if n_classes == 2:  # binary: one score s for the second class; softmax([0, s]) = sigmoid(s)
            w = np.vstack([np.zeros_like(w), w])
            b = np.concatenate([[0.0], b])
        head = LinearHead(w.shape[1], n_classes)
        with torch.no_grad():
            head.fc.weight.copy_(torch.from_numpy(w))
            head.fc.bias.copy_(torch.from_numpy(b))
        return head
    if features is None:
        raise UsageError("a kNN head needs the features the probe was fitted on.")
    z = (np.asarray(features, dtype=np.float64) - shift) / scale
    head = KNNHead(z.shape[1], n_classes, n_bank=len(z), k=clf.n_neighbors)
    with torch.no_grad():
        head.bank.copy_(torch.from_numpy(z))
        head.bank_labels.copy_(torch.from_numpy(np.asarray(clf._y, dtype=np.int64)))  # indices into classes_
        head.shift.copy_(torch.from_numpy(shift))
        head.scale.copy_(torch.from_numpy(scale))
    return head


def fit_probe_tiles(
    train: TileTable,
    *,
    encoder: Any = "resnet18",
    weights: Any = None,
    tiny: bool = False,
    input_size: int | None = None,
    mpp: float | None = None,
    kind: str = "linear",
    k: int = 5,
    c: float = 1.0,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
) -> TileClassifier:
    """A frozen encoder with a linear-probe or kNN head fitted on the features of ``train``'s tiles."""
    enc = _encoder(encoder, weights, tiny, input_size)
    feats = extract_features(enc, train, batch_size=batch_size, workers=workers, device=device)
    pipe = fit_probe(feats, train.labels, kind=kind, k=k, c=c)
    if tuple(pipe[-1].classes_) != tuple(train.classes):
        raise UsageError("the probe did not see every class in training.")
    model = TileClassifier(enc, probe_head(pipe, feats), train.classes)
    params = {
        "encoder": enc.spec.name,
        "weights": weights,
        "probe": kind,
        "k": k,
        "c": c,
        "batch_size": batch_size,
        "device": str(next(enc.parameters()).device),
    }
    model.meta = _meta(enc, train, params, mpp, tiny)
    return model.to(next(enc.parameters()).device).eval()
