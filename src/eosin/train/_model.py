"""A tile classifier: a registry encoder and a head (linear, or k nearest neighbours over stored features)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["KNNHead", "LinearHead", "TileClassifier"]


class LinearHead(nn.Module):
    """``logits = W x + b``, with an optional input standardisation (``(x - shift) / scale``) folded in."""

    kind = "linear"

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, n_classes)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.fc.in_features, "n_classes": self.fc.out_features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).softmax(dim=-1)


class KNNHead(nn.Module):
    """Class probabilities as the share of each class among the ``k`` nearest stored features (Euclidean, on
    standardised features: what scikit-learn's ``KNeighborsClassifier`` with uniform weights predicts)."""

    kind = "knn"

    def __init__(self, dim: int, n_classes: int, *, n_bank: int, k: int):
        super().__init__()
        self.k = k
        self.n_classes = n_classes
        self.register_buffer("bank", torch.zeros(n_bank, dim))
        self.register_buffer("bank_labels", torch.zeros(n_bank, dtype=torch.int64))
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dim": self.bank.shape[1],
            "n_classes": self.n_classes,
            "n_bank": self.bank.shape[0],
            "k": self.k,
        }

    def proba(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(self.bank.dtype) - self.shift) / self.scale
        dist = torch.cdist(z, self.bank)
        near = dist.topk(min(self.k, len(self.bank)), dim=1, largest=False).indices
        votes = nn.functional.one_hot(self.bank_labels[near], self.n_classes).float()
        return votes.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proba(x).clamp_min(1e-6).log()


def make_head(config: dict[str, Any]) -> nn.Module:
    if config["kind"] == "linear":
        return LinearHead(config["dim"], config["n_classes"])
    return KNNHead(config["dim"], config["n_classes"], n_bank=config["n_bank"], k=config["k"])


class TileClassifier(nn.Module):
    """Encoder + head: normalized ``(N, 3, S, S)`` images in, class logits ``(N, K)`` out.

    Attributes
    ----------
    encoder
        An :class:`eosin.models.Encoder`.
    head
        :class:`LinearHead` or :class:`KNNHead`.
    classes
        Class names in the order of the outputs.
    meta
        What the checkpoint records beyond the weights: preprocessing, mpp, training parameters.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, classes, meta: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.classes = tuple(classes)
        self.meta = dict(meta or {})

    @property
    def input_size(self) -> int:
        return int(self.meta.get("input_size") or self.encoder.input_size)

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.encoder.spec.mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.encoder.spec.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """Class probabilities ``(N, K)`` of normalized images (eval mode is the caller's business).

        ``precision`` (``fp32``, ``bf16``, ``fp16``) is the autocast of the encoder; the head runs in float32.
        """
        from eosin._device import autocast

        with autocast(x.device, precision):
            features = self.encoder(x)
        return self.head.proba(features.float()).float()
