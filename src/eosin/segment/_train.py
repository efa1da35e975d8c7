"""Training a U-Net on image/mask pairs: Dice + cross-entropy, boundary class, balanced crops, augmentation.

The same call runs on a laptop CPU and on a GPU (``device="cuda"`` adds mixed precision); only the sizes change.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eosin._provenance import versions
from eosin.errors import UsageError
from eosin.segment._data import (
    UNKNOWN_PART,
    CropBatches,
    CropSampler,
    SegSample,
    crop_loader,
    load_pairs,
    pair_files,
)
from eosin._device import precision_candidates, select_device
from eosin.segment._model import SegConfig, build_unet, save_segmenter
from eosin.train import fit_loop

__all__ = ["dice_ce_loss", "split_by_image", "train_segmenter"]


def dice_ce_loss(logits: Any, target: Any, *, class_weights: Any = None, dice_weight: float = 1.0) -> Any:
    """Cross-entropy (optionally class-weighted) plus soft Dice of the foreground (all non-background classes).

    ``logits`` ``(n, classes, rows, cols)``, ``target`` ``(n, rows, cols)`` int64 class ids. Pixels whose target is
    :data:`~eosin.segment._data.UNKNOWN_PART` (an object pixel whose class among the non-background ones is not
    known) add ``-log p(not background)`` to the cross-entropy, with the first object class's weight.
    """
    import torch
    import torch.nn.functional as F

    n_classes = logits.shape[1]
    unknown = target == UNKNOWN_PART if n_classes <= UNKNOWN_PART else None
    if unknown is None or not bool(unknown.any()):
        ce = F.cross_entropy(logits, target, weight=class_weights)
    else:
        weight = class_weights if class_weights is not None else logits.new_ones(n_classes)
        known_target = torch.where(unknown, torch.zeros_like(target), target)
        per_pixel = F.cross_entropy(logits, known_target, reduction="none")
        log_all = torch.logsumexp(logits, dim=1)
        not_background = log_all - torch.logsumexp(logits[:, 1:], dim=1)
        w = torch.where(unknown, weight[1], weight[known_target])
        per_pixel = torch.where(unknown, not_background, per_pixel)
        ce = (w * per_pixel).sum() / w.sum()
    probs = torch.softmax(logits.float(), dim=1)
    fg = 1 - probs[:, 0]
    truth = (target > 0).float()
    inter = (fg * truth).sum()
    dice = (2 * inter + 1) / (fg.sum() + truth.sum() + 1)
    return ce + dice_weight * (1 - dice)


def split_by_image(
    stems: Sequence[str], val_fraction: float, *, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Train and validation stems: a seeded shuffle, ``round(val_fraction * n)`` images (at least 1) held out."""
    if not 0 <= val_fraction < 1:
        raise UsageError(f"val_fraction must lie in [0, 1), got {val_fraction!r}.")
    order = sorted(stems)
    np.random.default_rng(seed).shuffle(order)
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * len(order)))
    if n_val >= len(order):
        raise UsageError(f"{len(order)} image(s) leave nothing to train on with val_fraction={val_fraction}.")
    return sorted(order[n_val:]), sorted(order[:n_val])


def _fixed_crops(samples: Sequence[SegSample], crop: int, per_image: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic grid of validation crops (the same every epoch)."""
    images, targets = [], []
    for s in samples:
        sampler = CropSampler([s], crop=crop, positive_fraction=0.5, seed=0)
        for _ in range(per_image):
            i, t = sampler.sample()
            images.append(i)
            targets.append(t)
    return np.stack(images), np.stack(targets)


def train_segmenter(
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    encoder: str = "resnet18",
    arch: str = "Unet",
    encoder_weights: str | None = None,
    epochs: int = 10,
    crops_per_epoch: int = 256,
    crop: int = 256,
    batch_size: int = 8,
    lr: float = 1e-3,
    encoder_lr: float = 1.0,
    val_fraction: float = 0.2,
    positive_fraction: float = 0.5,
    boundary: bool = True,
    boundary_weight: float = 3.0,
    instances: str | os.PathLike[str] | None = None,
    binary_masks: str = "auto",
    palette: Mapping[str, Sequence[int]] | None = None,
    mpp: float | None = None,
    elastic: float = 0.3,
    hed: float = 0.05,
    device: str = "auto",
    precision: str = "auto",
    workers: int | None = None,
    seed: int = 0,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a segmentation network and write the best checkpoint (by validation Dice) to ``out``.

    Parameters
    ----------
    images, masks
        Folders of images and of masks paired by file stem (JPEG masks thresholded at 127; colour-coded masks
        through ``palette``; Aperio XML polygons accepted as masks).
    out
        Checkpoint folder (``model.safetensors`` + ``config.json``), rewritten atomically after each better epoch.
    encoder, arch, encoder_weights
        segmentation-models-pytorch encoder (or an eosin registry CNN such as ``efficientnet_lite0``) and
        architecture; ``encoder_weights="imagenet"``: pretrained encoder (offline for registry entries whose weights
        come with a package; smp's own encoders download them). See :func:`eosin.segment.build_unet`.
    epochs, crops_per_epoch, crop, batch_size, lr
        Schedule: ``epochs`` passes of ``crops_per_epoch`` random ``crop``-pixel crops, AdamW with cosine decay.
    encoder_lr
        The encoder's learning rate as a fraction of ``lr`` (1: one rate for all; below 1 a pretrained encoder
        moves less than the new decoder).
    val_fraction
        Share of images held out for validation (split by image, seeded).
    positive_fraction
        Target share of training crops that contain foreground.
    boundary, boundary_weight
        Predict background / interior / boundary (3 classes) for touching objects, with the boundary class
        weighted ``boundary_weight`` in the cross-entropy; else background / foreground.
    instances
        Optional folder of instance annotations (XML or 16-bit labels) by stem that replace the masks as targets.
    binary_masks
        ``auto``, ``components`` or ``foreground``: what an image annotated only by a binary mask teaches a
        boundary-aware model (see :func:`eosin.segment._data.load_pairs`); ``auto`` keeps its merged contacts out
        of the targets when other images have instance annotations.
    palette
        ``{class: (r, g, b)}`` for colour-coded masks (background first); multi-class, no boundary class.
    mpp
        Microns per pixel of the images, recorded so slides are segmented at the same resolution.
    elastic, hed
        Probability of an elastic deformation; HED jitter strength (0: off).
    device, precision
        ``auto``, ``cpu``, ``cuda``...; autocast ``auto`` (the fastest training step of fp32 and this device's
        mixed precisions that agrees with fp32, measured on a few crops once per machine and network;
        :mod:`eosin._calibrate`), ``fp32``, ``bf16`` or ``fp16`` (CUDA).
    workers
        Processes that sample and augment crops while the network trains (0: in this process; default: chosen
        by measuring one batch of crops against the calibrated training step, so that on a small CPU they do
        not take the network's cores; :func:`eosin.data.choose_loader_workers`). Crops are the same stream as
        in this process with 0 workers, and the same distribution (each worker seeded from ``seed``) with more.
    seed
        Seed of the split, crops, augmentation and initialisation.
    log
        Called with each epoch's record.

    Returns
    -------
    dict
        ``checkpoint``, ``train``/``val`` stems, ``history`` (per-epoch loss, val loss, val Dice), ``best_epoch``,
        ``seconds``.
    """
    import torch

    if crop % 32:
        raise UsageError(f"crop must be a multiple of 32 (the U-Net downsamples 5 times), got {crop}.")
    if palette is not None and boundary:
        boundary = False
    torch.manual_seed(seed)
    dev = select_device(device)
    precision_candidates(dev, precision)  # refuses impossible combinations before any work
    pairs = pair_files(images, masks)
    train_stems, val_stems = split_by_image([p[0] for p in pairs], val_fraction, seed=seed)
    samples = load_pairs(
        pairs, boundary=boundary, palette=palette, instances=instances, binary_masks=binary_masks
    )
    train = [s for s in samples if s.stem in train_stems]
    val = [s for s in samples if s.stem in val_stems]
    classes = (
        list(palette)
        if palette
        else (["background", "interior", "boundary"] if boundary else ["background", "foreground"])
    )
    net = build_unet(arch=arch, encoder=encoder, n_classes=len(classes), encoder_weights=encoder_weights).to(
        dev
    )
    weights = torch.ones(len(classes), device=dev)
    if boundary:
        weights[2] = boundary_weight
    steps = max(1, crops_per_epoch // batch_size)
    crops = CropBatches(
        train,
        crop=crop,
        batch_size=batch_size,
        steps=steps,
        positive_fraction=positive_fraction,
        augment={"elastic": elastic, "hed_sigma": hed, "hed_bias": hed / 5},
        seed=seed,
    )
    encoder_ids = {id(p) for p in net.encoder.parameters()}
    groups = [
        {"params": list(net.encoder.parameters()), "lr": lr * encoder_lr},
        {"params": [p for p in net.parameters() if id(p) not in encoder_ids], "lr": lr},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=epochs * steps, pct_start=0.1
    )
    norm_mean, norm_std = getattr(net, "eosin_preprocess", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    mean = torch.tensor(norm_mean, device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(norm_std, device=dev).view(1, 3, 1, 1) * 255

    pin = dev.type == "cuda"

    def to_tensors(imgs: Any, tgts: Any) -> tuple[Any, Any]:
        # uint8 crosses to the device (a quarter of float32's bytes), without waiting when pinned
        x = torch.as_tensor(imgs).to(dev, non_blocking=pin).permute(0, 3, 1, 2).float()
        return (x - mean) / std, torch.as_tensor(tgts).to(dev, non_blocking=pin).long()

    val_x, val_y = _fixed_crops(val, crop, 8) if val else (None, None)
    decision = _choose_precision(
        net, train, crop, dev, precision, batch_size, to_tensors, weights, encoder, arch, workers is None
    )
    precision = decision.precision
    threads, plan = _loader_plan(crops, dev, decision, workers)
    loader = crop_loader(crops, workers=plan["workers"], pin_memory=pin)
    config = SegConfig(
        arch=arch,
        encoder=encoder,
        classes=classes,
        mpp=mpp,
        mean=tuple(norm_mean),
        std=tuple(norm_std),
        tile_size=max(crop, 256),
    )
    params = {
        "epochs": epochs,
        "crops_per_epoch": crops_per_epoch,
        "crop": crop,
        "batch_size": batch_size,
        "lr": lr,
        "encoder_lr": encoder_lr,
        "positive_fraction": positive_fraction,
        "boundary_weight": boundary_weight if boundary else None,
        "elastic": elastic,
        "hed": hed,
        "encoder_weights": encoder_weights,
        # what the encoder started from: random, or which weights (file, SHA-256)
        "encoder_init": getattr(net, "eosin_weights", None),
        "seed": seed,
        "precision": precision,
        "device": str(dev),
        "versions": versions(),
        "calibration": decision.record(),
        "loader": plan,
        "images": os.fspath(images),
        "masks": os.fspath(masks),
        "instances": None if instances is None else os.fspath(instances),
        "binary_masks": binary_masks,
        # images whose binary mask taught foreground and outline only (touching objects may merge in it)
        "contacts_unknown": sorted(s.stem for s in samples if not s.contacts_known),
        "train": train_stems,
        "val": val_stems,
    }
    start = time.perf_counter()

    history: list[dict[str, Any]] = []

    def forward(batch: Any) -> Any:
        x, y = to_tensors(*batch)
        return net(x), y  # under autocast; the loss below runs in float32

    def loss(out: Any, batch: Any) -> Any:
        logits, y = out
        return dice_ce_loss(logits.float(), y, class_weights=weights)

    def record(stats: Any, val_record: dict | None) -> dict[str, Any]:
        rec: dict[str, Any] = {"epoch": stats.epoch, "loss": float(np.mean(stats.losses)), **(val_record or {})}
        rec["seconds"] = round(time.perf_counter() - start, 1)
        return rec

    def save(rec: dict[str, Any]) -> None:
        config.training = {**params, "best_epoch": rec["epoch"], "history": history}
        save_segmenter(out, net, config)

    fitted = fit_loop(
        forward,
        loader,
        loss=loss,
        optimizer=opt,
        scheduler=sched,
        epochs=epochs,
        device=dev,
        precision=precision,
        model=net,
        validate=(lambda: _validate(net, val_x, val_y, to_tensors, weights, batch_size))
        if val_x is not None
        else None,
        # validation Dice, else the training loss (Dice + cross-entropy, often above 1): the first epoch is kept
        monitor=lambda rec: rec.get("val_dice", -rec["loss"]),
        mode="max",
        baseline=-math.inf,
        keep_best=False,  # the best weights are on disk; the network ends as the last epoch left it
        record=record,
        history=history,
        on_best=save,
        on_epoch=log,
    )
    best_epoch = fitted.best_epoch
    result = {
        "checkpoint": os.fspath(out),
        "train": train_stems,
        "val": val_stems,
        "best_epoch": best_epoch,
        "history": history,
        "seconds": round(time.perf_counter() - start, 1),
        "device": str(dev),
        "precision": precision,
        "calibration": decision.record(),
        "loader": plan,
    }
    if threads is not None:
        torch.set_num_threads(threads)
    # record the whole history in the checkpoint's config (weights stay those of the best epoch)
    meta = Path(out) / "config.json"
    doc = json.loads(meta.read_text())
    doc["training"]["history"] = history
    if boundary and val:
        doc["instances"] = result["instances"] = _tune_on_validation(out, val, dev)
    from eosin.io import atomic_write_text

    atomic_write_text(meta, json.dumps(doc, indent=1))
    return result


def _tune_on_validation(out: str | os.PathLike[str], val: Sequence[SegSample], dev: Any) -> dict[str, Any]:
    """The seed threshold with the best AJI on the validation images whose annotations tell touching objects
    apart (:func:`eosin.segment._tune.tune_instances`), with the saved best epoch; ``{}`` when there are none."""
    from eosin.segment._data import read_class_mask
    from eosin.segment._model import load_segmenter
    from eosin.segment._tune import tune_instances

    usable = [s for s in val if s.contacts_known and s.source is not None]
    if not usable:
        return {}
    model = load_segmenter(out, device=str(dev))
    labels = [read_class_mask(s.source, shape=s.image.shape[:2]) for s in usable]
    return tune_instances(model, [s.image for s in usable], labels, stems=[s.stem for s in usable])


def _loader_plan(crops: CropBatches, dev: Any, decision: Any, workers: int | None) -> tuple[Any, dict]:
    """Crop workers (and PyTorch threads) by measurement: one batch sampled and augmented here against the
    calibrated training step (:func:`eosin.data.choose_loader_workers`). Returns the thread count to restore
    (None: unchanged) and the plan recorded with the checkpoint."""

    from eosin.data import apply_loader_plan

    step_ms = decision.timings_ms.get(decision.choice.name) if workers is None else None
    if step_ms is None:
        return None, {"workers": workers or 0, "how": "given" if workers is not None else "default"}
    t0 = time.perf_counter()
    crops.batch(stream=2**31)  # draws of their own: the training stream is untouched
    input_ms = 1000 * (time.perf_counter() - t0) / crops.batch_size
    return apply_loader_plan(input_ms, step_ms, device_type=dev.type, unit="crop")


def _choose_precision(
    net, train, crop, dev, precision, batch_size, to_tensors, weights, encoder, arch, measure=False
):
    """``precision``, or for ``auto`` the fastest training step that agrees with float32 on a few fixed crops
    (cached per machine and network: :mod:`eosin._calibrate`)."""
    from eosin._calibrate import choose_training_precision

    x = y = None
    if (precision == "auto" or measure) and train:
        rows = min(batch_size, 2 if dev.type == "cpu" else batch_size)
        imgs, tgts = _fixed_crops(train[:rows], crop, -(-rows // min(rows, len(train))))
        x, y = to_tensors(imgs[:rows], tgts[:rows])
    elif precision == "auto":
        precision = "fp32"

    def forward(model, x):
        return dice_ce_loss(model(x).float(), y, class_weights=weights)

    return choose_training_precision(
        net,
        forward,
        x,
        dev,
        precision,
        task="train-seg",
        name=f"{arch}-{encoder}",
        batch_size=batch_size,
        weights_id=None,
        measure=measure,
    )


def _validate(
    net: Any, val_x: np.ndarray, val_y: np.ndarray, to_tensors: Any, weights: Any, batch: int
) -> dict:
    import torch

    net.eval()
    losses, inter, total = [], 0.0, 0.0
    with torch.inference_mode():
        for i in range(0, len(val_x), batch):
            x, y = to_tensors(val_x[i : i + batch], val_y[i : i + batch])
            logits = net(x).float()
            losses.append(float(dice_ce_loss(logits, y, class_weights=weights)) * len(x))
            pred = logits.argmax(1) > 0
            truth = y > 0
            inter += float((pred & truth).sum())
            total += float(pred.sum() + truth.sum())
    return {"val_loss": sum(losses) / len(val_x), "val_dice": 2 * inter / total if total else 1.0}
