"""Attention MIL aggregators on feature bags (ABMIL, CLAM-SB, CLAM-MB, TransMIL) and their shared trainer.

Training follows CLAM: one bag per step (batch size 1), Adam, cross-entropy weighted against class imbalance
(plus CLAM's instance clustering loss), optional early stopping on validation loss, on the one training loop
(:func:`eosin.train.fit_loop`). On CUDA the forward pass runs under automatic mixed precision (float16 with a
gradient scaler; :mod:`eosin._device`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eosin.aggregate._base import Aggregator, Bags, check_bag, check_labels
from eosin.aggregate._mil_nets import ABMILNet, CLAMNet, TransMILNet
from eosin.errors import StoreError, UnknownNameError, UsageError

__all__ = ["ABMIL", "CLAMMB", "CLAMSB", "MILAggregator", "TransMIL", "load_mil"]

_FORMAT = "eosin.aggregate/1"


class MILAggregator(Aggregator):
    """Base of the attention-MIL aggregators: bags of per-tile features ``(n_tiles, d)``, a shared trainer.

    Subclasses define ``_network(n_features, n_classes)``. Training parameters given to :meth:`fit` override the
    constructor's for that call only.
    """

    bag_kind = "features"
    _fitted = ("classes_", "model_")

    def fit(
        self,
        bags: Bags,
        y: Any,
        *,
        val: tuple[Bags, Any] | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        seed: int | None = None,
        device: str | None = None,
        precision: str = "auto",
    ) -> MILAggregator:
        """Train on the bags, one bag per step; returns ``self``.

        Parameters
        ----------
        bags
            One ``(n_tiles, d)`` feature array per slide (a list, or any sequence that loads bags on access).
        y
            One label per bag.
        val
            ``(bags, y)`` of validation slides: the weights of the epoch with the lowest validation loss are kept,
            and training stops after ``patience`` epochs without improvement.
        epochs, lr, weight_decay, seed, device
            Override the constructor's values for this fit.
        precision
            Autocast of training and prediction (:mod:`eosin._device`): ``fp32``, ``bf16``, ``fp16`` (CUDA), or
            ``auto``: fp16 on CUDA (with a gradient scaler), fp32 elsewhere (one bag per step is too small a
            workload for bfloat16 to pay on a CPU).

        Attributes set
        --------------
        classes_, model_ (the trained network, eval mode), n_features_, history_ (per-epoch ``train_loss`` and
        ``val_loss``), device_, precision_.
        """
        epochs = self.epochs if epochs is None else epochs
        lr = self.lr if lr is None else lr
        weight_decay = self.weight_decay if weight_decay is None else weight_decay
        seed = self.seed if seed is None else seed
        dev = _device(self.device if device is None else device)
        precision = _precision(dev, precision)
        if len(bags) == 0:
            raise UsageError("no bags given.", fix="pass at least one bag (one slide)")
        classes, codes = check_labels(y, len(bags))
        n_features = check_bag(bags[0], 0).shape[1]
        val_codes = None
        if val is not None:
            val_bags, val_y = val
            val_codes = check_labels(val_y, len(val_bags), classes)[1]

        torch.manual_seed(seed)
        model = self._network(n_features, len(classes)).to(dev)
        counts = np.bincount(codes, minlength=len(classes)).astype(np.float64)
        weight = None
        if self.class_weight == "balanced":
            weight = torch.tensor(
                len(codes) / (len(classes) * np.maximum(counts, 1)), dtype=torch.float32, device=dev
            )
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        rng = np.random.default_rng(seed)

        def epoch_bags(_epoch: int):
            for i in rng.permutation(len(codes)):
                yield torch.as_tensor(check_bag(bags[i], int(i), n_features), device=dev), codes[i]

        def forward(batch):
            x, code = batch
            return self._loss(model, x, torch.tensor(code, device=dev), weight)

        from eosin.train import fit_loop

        history = fit_loop(
            forward,
            epoch_bags,
            optimizer=optimizer,
            epochs=epochs,
            device=dev,
            precision=precision,
            model=model,
            validate=(lambda: {"val_loss": self._val_loss(model, val_bags, val_codes, n_features, weight, dev)})
            if val is not None
            else None,
            monitor="val_loss",
            mode="min",
            baseline=np.inf if val is not None else None,
            patience=self.patience,
            record=lambda stats, v: {"train_loss": stats.loss_sum / len(codes), **(v or {})},
        ).history
        self.model_ = model.eval()
        self.classes_, self.n_features_, self.history_, self.device_ = classes, n_features, history, dev
        self.precision_ = precision
        return self

    def predict_proba(self, bags: Bags) -> np.ndarray:
        """Softmax class probabilities of each bag, ``(n_slides, n_classes)``."""
        self._check_fitted()
        out = []
        with torch.inference_mode():
            for i in range(len(bags)):
                out.append(torch.softmax(self._forward(bags, i)[0].float(), 0).cpu().numpy())
        return np.stack(out).astype(np.float64)

    def attention(self, bag: np.ndarray) -> np.ndarray:
        """Per-tile attention scores of one bag, ``(n_tiles,)`` summing to 1 (for heatmaps).

        ABMIL and CLAM-SB: the softmax attention; CLAM-MB: the branch of the predicted class; TransMIL: the class
        token's attention to each tile in the last layer, averaged over heads.
        """
        self._check_fitted()
        with torch.inference_mode():
            scores = self._forward([bag], 0)[1].float().cpu().numpy().astype(np.float64)
        return scores / max(scores.sum(), 1e-12)

    def save(self, path: str | os.PathLike[str], *, training: dict[str, Any] | None = None) -> Path:
        """Write the trained aggregator to the folder ``path``: ``weights.safetensors`` and ``config.json``.

        ``config.json`` holds the aggregator name, its parameters, the classes, the feature width, the training
        history, the device it was trained on, the software versions and ``training`` (how it was trained, as
        ``eosin train mil`` records it). The folder is written aside and renamed into place, so ``path`` is
        either the old checkpoint or the new one.
        """
        from eosin.aggregate._persist import _plain, base_config
        from eosin.io import write_checkpoint

        self._check_fitted()
        config = {
            **base_config(self, training),
            "n_features": int(self.n_features_),
            "history": self.history_,
            "device": str(self.device_),
            "precision": getattr(self, "precision_", None),
        }
        return write_checkpoint(
            path,
            self.model_.state_dict(),
            config,
            weights_name="weights.safetensors",
            metadata={"format": _FORMAT},
            replace_folder=True,
            json_default=_plain,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> MILAggregator:
        """Read an aggregator written by :meth:`save` (of this class, or any MIL class when called on the base)."""
        from eosin.aggregate._persist import load_aggregator

        agg = load_aggregator(path, device=device)
        if not isinstance(agg, cls):
            raise UsageError(
                f"{path} holds a {type(agg).__name__}, not a {cls.__name__}.", fix="use load_aggregator"
            )
        return agg

    # internals

    def _network(self, n_features: int, n_classes: int) -> nn.Module:  # pragma: no cover - subclasses
        raise NotImplementedError

    def _loss(self, model: nn.Module, x: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None):
        logits, _, extra = model(x, label)
        # reduction="sum": with one bag per step a "mean" reduction would divide the class weight back out
        loss = F.cross_entropy(logits.float()[None], label[None], weight=weight, reduction="sum")
        if extra is not None:
            loss = self.bag_weight * loss + (1 - self.bag_weight) * extra.float()
        return loss

    def _val_loss(self, model, bags, codes, n_features, weight, dev) -> float:
        model.eval()
        total = 0.0
        with torch.inference_mode():
            for i in range(len(codes)):
                x = torch.as_tensor(check_bag(bags[i], i, n_features), device=dev)
                logits = model(x)[0].float()
                total += float(
                    F.cross_entropy(
                        logits[None], torch.tensor([codes[i]], device=dev), weight=weight, reduction="sum"
                    )
                )
        return total / len(codes)

    def _forward(self, bags: Bags, i: int):
        from eosin._device import autocast

        x = torch.as_tensor(check_bag(bags[i], i, self.n_features_), device=self.device_)
        precision = getattr(self, "precision_", None) or _precision(self.device_, "auto")
        with autocast(self.device_, precision):
            return self.model_(x)


_TRAIN_DOC = """
    epochs
        Passes over the training bags.
    lr, weight_decay
        Adam's learning rate and L2 weight decay.
    class_weight
        ``"balanced"`` (cross-entropy weights inverse to class frequency) or ``None``.
    patience
        Epochs without a lower validation loss before stopping (only with ``val=`` in :meth:`fit`).
    seed
        Seeds the weight initialisation, dropout and the bag order.
    device
        ``"auto"`` (CUDA when available, else Apple's MPS, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"`` (:func:`eosin._device.select_device`).
"""


class ABMIL(MILAggregator):
    __doc__ = (
        """Gated attention MIL (Ilse, Tomczak & Welling, ICML 2018).

    Tile features pass through ``Linear(d, hidden) + ReLU``; gated attention ``w^T (tanh(V h) * sigmoid(U h))``
    gives one score per tile, softmax-normalised over the bag; the attention-weighted mean is classified by a
    linear layer (softmax over the classes, so multi-class works as well as binary).

    Parameters
    ----------
    hidden, attention_dim
        Widths of the embedding and of the attention layers.
    dropout
        Dropout after the embedding and in the attention branches.
"""
        + _TRAIN_DOC
    )

    name = "abmil"

    def __init__(
        self,
        *,
        hidden: int = 512,
        attention_dim: int = 256,
        dropout: float = 0.25,
        epochs: int = 20,
        lr: float = 2e-4,
        weight_decay: float = 1e-5,
        class_weight: str | None = "balanced",
        patience: int = 5,
        seed: int = 0,
        device: str = "auto",
    ):
        self.hidden, self.attention_dim, self.dropout = hidden, attention_dim, dropout
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.class_weight, self.patience, self.seed, self.device = class_weight, patience, seed, device

    def _network(self, n_features: int, n_classes: int) -> nn.Module:
        return ABMILNet(
            n_features, n_classes, hidden=self.hidden, attention_dim=self.attention_dim, dropout=self.dropout
        )


class CLAMSB(MILAggregator):
    __doc__ = (
        """CLAM single-branch (Lu et al., Nature Biomedical Engineering 2021).

    Gated attention pooling as ABMIL, plus one instance classifier per class trained by the instance clustering
    loss: the ``k_sample`` most attended tiles of a bag are pseudo-labelled positive and the ``k_sample`` least
    attended negative for the bag's class; with ``subtyping`` the most attended tiles are also negatives for the
    other classes. The loss is ``bag_weight * bag CE + (1 - bag_weight) * instance loss``.

    Parameters
    ----------
    hidden, attention_dim
        Widths of the embedding and of the attention layers (CLAM "small": 512, 256).
    dropout
        Dropout after the embedding and in the attention branches.
    k_sample
        Tiles taken from each end of the attention ranking (capped at half the bag).
    bag_weight
        Weight of the bag loss against the instance loss.
    instance_loss
        ``"svm"`` (smooth top-1 SVM, CLAM's default) or ``"ce"`` (cross-entropy).
    subtyping
        Use out-of-class negatives; ``None`` turns it on for more than two classes.
"""
        + _TRAIN_DOC
    )

    name = "clam_sb"
    multi_branch = False

    def __init__(
        self,
        *,
        hidden: int = 512,
        attention_dim: int = 256,
        dropout: float = 0.25,
        k_sample: int = 8,
        bag_weight: float = 0.7,
        instance_loss: str = "svm",
        subtyping: bool | None = None,
        epochs: int = 20,
        lr: float = 2e-4,
        weight_decay: float = 1e-5,
        class_weight: str | None = "balanced",
        patience: int = 5,
        seed: int = 0,
        device: str = "auto",
    ):
        self.hidden, self.attention_dim, self.dropout = hidden, attention_dim, dropout
        self.k_sample, self.bag_weight, self.instance_loss, self.subtyping = (
            k_sample,
            bag_weight,
            instance_loss,
            subtyping,
        )
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.class_weight, self.patience, self.seed, self.device = class_weight, patience, seed, device

    def _network(self, n_features: int, n_classes: int) -> nn.Module:
        if self.instance_loss not in ("svm", "ce"):
            raise UnknownNameError("CLAM instance loss", self.instance_loss, ("svm", "ce"))
        return CLAMNet(
            n_features,
            n_classes,
            hidden=self.hidden,
            attention_dim=self.attention_dim,
            dropout=self.dropout,
            multi_branch=self.multi_branch,
            k_sample=self.k_sample,
            subtyping=n_classes > 2 if self.subtyping is None else self.subtyping,
            instance_loss=self.instance_loss,
        )


class CLAMMB(CLAMSB):
    __doc__ = (CLAMSB.__doc__ or "").replace(
        "CLAM single-branch", "CLAM multi-branch: one attention branch and one bag classifier per class"
    )
    name = "clam_mb"
    multi_branch = True


class TransMIL(MILAggregator):
    __doc__ = (
        """TransMIL (Shao et al., NeurIPS 2021): correlated MIL with a transformer over the tiles.

    Tile features pass through ``Linear(d, hidden) + ReLU``; the tokens are padded to a square (repeating the
    first tiles), a class token is prepended, then Nyström self-attention layer, PPEG (depthwise 7/5/3
    convolutions over the square as a position encoding), a second Nyström layer, LayerNorm and a linear
    classifier on the class token. Nyström attention is implemented here (``landmarks`` segment means, six
    Newton-Schulz steps for the pseudo-inverse, a depthwise residual convolution of the values); bags no longer
    than ``landmarks`` use exact softmax attention.

    Parameters
    ----------
    hidden, heads, landmarks
        Token width (512 in the paper), attention heads (8) and Nyström landmarks (256).
    dropout
        Dropout after the embedding.
"""
        + _TRAIN_DOC
    )

    name = "transmil"

    def __init__(
        self,
        *,
        hidden: int = 512,
        heads: int = 8,
        landmarks: int = 256,
        dropout: float = 0.1,
        epochs: int = 20,
        lr: float = 2e-4,
        weight_decay: float = 1e-5,
        class_weight: str | None = "balanced",
        patience: int = 5,
        seed: int = 0,
        device: str = "auto",
    ):
        self.hidden, self.heads, self.landmarks, self.dropout = hidden, heads, landmarks, dropout
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.class_weight, self.patience, self.seed, self.device = class_weight, patience, seed, device

    def _network(self, n_features: int, n_classes: int) -> nn.Module:
        return TransMILNet(
            n_features,
            n_classes,
            hidden=self.hidden,
            heads=self.heads,
            landmarks=self.landmarks,
            dropout=self.dropout,
        )


_MIL_CLASSES: dict[str, type[MILAggregator]] = {c.name: c for c in (ABMIL, CLAMSB, CLAMMB, TransMIL)}


def load_mil(folder: Path, config: dict[str, Any], *, device: str = "cpu") -> MILAggregator:
    """The attention-MIL aggregator of a saved folder whose ``config.json`` is ``config`` (see
    :func:`eosin.aggregate.load_aggregator`)."""
    from eosin.io import read_checkpoint

    weights_path = folder / "weights.safetensors"
    if not weights_path.is_file():
        raise StoreError(
            "not an eosin MIL checkpoint (expected weights.safetensors beside config.json).",
            path=folder,
            fix="pass the folder written by save()",
        )
    agg = _MIL_CLASSES[config["aggregator"]](**config["params"])
    classes = np.asarray(config["classes"])
    model = agg._network(config["n_features"], len(classes))
    state, _ = read_checkpoint(folder, weights_name="weights.safetensors", config=config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise StoreError(f"weights do not fit the configured network ({err}).", path=weights_path) from None
    dev = _device(device)
    agg.model_ = model.to(dev).eval()
    agg.classes_, agg.n_features_, agg.history_, agg.device_ = (
        classes,
        config["n_features"],
        config["history"],
        dev,
    )
    agg.precision_ = _precision(dev, "auto")  # inference: the training device's precision may not run here
    return agg


def _device(name: Any) -> torch.device:
    """The device of :func:`eosin._device.select_device` (``auto``: CUDA, MPS, CPU)."""
    from eosin._device import select_device

    return select_device(name)


def _precision(dev: torch.device, precision: str) -> str:
    """:func:`eosin._device.resolve_precision`, except that ``auto`` is fp32 off CUDA (see :meth:`fit`)."""
    from eosin._device import resolve_precision

    return resolve_precision(dev, precision if precision != "auto" or dev.type == "cuda" else "fp32")
