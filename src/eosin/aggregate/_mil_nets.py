"""The attention-MIL networks: gated-attention ABMIL, CLAM-SB/MB and TransMIL (PPEG + Nyström attention).

Every network maps one bag ``(n_tiles, d)`` to ``(logits (n_classes,), attention (n_tiles,), extra_loss)`` where
``extra_loss`` is CLAM's instance clustering loss during training (else ``None``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ABMILNet", "CLAMNet", "TransMILNet", "smooth_top1_svm"]


class GatedAttention(nn.Module):
    """Ilse et al.'s gated attention: ``w^T (tanh(V h) * sigmoid(U h))``, one score per instance and branch."""

    def __init__(self, dim: int, attention_dim: int, branches: int = 1, dropout: float = 0.0):
        super().__init__()
        self.v = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Dropout(dropout))
        self.u = nn.Sequential(nn.Linear(dim, attention_dim), nn.Sigmoid(), nn.Dropout(dropout))
        self.w = nn.Linear(attention_dim, branches)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` → raw scores ``(branches, n)`` (softmax over instances is the caller's)."""
        return self.w(self.v(h) * self.u(h)).T


class ABMILNet(nn.Module):
    """Gated attention MIL (Ilse, Tomczak & Welling 2018): embed, attend, pool, classify."""

    def __init__(self, n_features: int, n_classes: int, *, hidden: int, attention_dim: int, dropout: float):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attend = GatedAttention(hidden, attention_dim, 1, dropout)
        self.classify = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None):
        h = self.embed(x)
        a = torch.softmax(self.attend(h), dim=1)  # (1, n)
        return self.classify(a @ h)[0], a[0], None


class CLAMNet(nn.Module):
    """CLAM (Lu et al. 2021), single-branch (``multi_branch=False``) or one attention branch per class.

    Training adds the instance clustering loss: for the true class, the ``k`` most attended instances are
    pseudo-labelled positive and the ``k`` least attended negative for that class's instance classifier; with
    ``subtyping``, the ``k`` most attended instances of every other class's branch are pseudo-labelled negative
    for that class's classifier (as CLAM's ``inst_eval_out``).
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        *,
        hidden: int,
        attention_dim: int,
        dropout: float,
        multi_branch: bool,
        k_sample: int,
        subtyping: bool,
        instance_loss: str,
    ):
        super().__init__()
        self.multi_branch, self.k_sample, self.subtyping = multi_branch, k_sample, subtyping
        self.instance_loss = smooth_top1_svm if instance_loss == "svm" else F.cross_entropy
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attend = GatedAttention(hidden, attention_dim, n_classes if multi_branch else 1, dropout)
        if multi_branch:
            self.classifiers = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(n_classes))
        else:
            self.classify = nn.Linear(hidden, n_classes)
        self.instance_classifiers = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(n_classes))

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None):
        h = self.embed(x)
        a = torch.softmax(self.attend(h), dim=1)  # (branches, n)
        pooled = a @ h
        if self.multi_branch:
            logits = torch.cat([c(pooled[i]) for i, c in enumerate(self.classifiers)])
        else:
            logits = self.classify(pooled)[0]
        extra = None if label is None else self._cluster_loss(h, a, int(label))
        shown = a[int(logits.argmax())] if self.multi_branch else a[0]
        return logits, shown, extra

    def _cluster_loss(self, h: torch.Tensor, a: torch.Tensor, label: int) -> torch.Tensor | None:
        k = min(self.k_sample, h.shape[0] // 2)
        if k == 0:
            return None
        losses = []
        for c, head in enumerate(self.instance_classifiers):
            scores = a[c if self.multi_branch else 0]
            top = torch.topk(scores, k).indices
            if c == label:
                bottom = torch.topk(-scores, k).indices
                idx = torch.cat([top, bottom])
                target = torch.cat([torch.ones(k), torch.zeros(k)]).long().to(h.device)
            elif self.subtyping:
                idx, target = top, torch.zeros(k, dtype=torch.long, device=h.device)
            else:
                continue
            losses.append(self.instance_loss(head(h[idx]), target))
        return torch.stack(losses).mean()


def smooth_top1_svm(
    scores: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, tau: float = 1.0
) -> torch.Tensor:
    """Smooth top-1 multi-class SVM loss (Berrada et al. 2018), CLAM's default instance loss.

    ``tau * logsumexp((alpha * [j != y] + s_j - s_y) / tau)`` averaged over the rows.
    """
    margin = alpha * (1.0 - F.one_hot(target, scores.shape[1]).to(scores.dtype))
    true = scores.gather(1, target[:, None])
    return (tau * torch.logsumexp((margin + scores - true) / tau, dim=1)).mean()


class NystromAttention(nn.Module):
    """Multi-head self-attention approximated with Nyström landmarks (Xiong et al. 2021), as TransMIL uses.

    Queries and keys are averaged over ``landmarks`` segments; ``softmax(Q K~^T) pinv(softmax(Q~ K~^T))
    softmax(Q~ K^T) V`` replaces ``softmax(Q K^T) V``, with the Moore-Penrose inverse from ``pinv_iterations``
    Newton-Schulz steps, plus a depthwise convolution of ``V`` along the sequence (the residual of the
    ``nystrom-attention`` package TransMIL builds on). Sequences no longer than ``landmarks`` use exact attention.
    """

    def __init__(
        self, dim: int, *, heads: int = 8, landmarks: int = 256, pinv_iterations: int = 6, kernel: int = 33
    ):
        super().__init__()
        self.heads, self.landmarks, self.pinv_iterations = heads, landmarks, pinv_iterations
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.out = nn.Linear(dim, dim)
        self.residual = nn.Conv2d(
            heads, heads, (kernel, 1), padding=(kernel // 2, 0), groups=heads, bias=False
        )

    def forward(self, x: torch.Tensor, return_cls_attention: bool = False):
        b, n, dim = x.shape
        m = self.landmarks
        pad = (-n) % m if n > m else 0
        x = F.pad(x, (0, 0, pad, 0))  # front padding, as nystrom-attention does
        q, k, v = (
            t.reshape(b, -1, self.heads, dim // self.heads).transpose(1, 2) for t in self.qkv(x).chunk(3, -1)
        )
        q = q * (dim // self.heads) ** -0.5
        if n > m:
            seg = (n + pad) // m
            q_l = q.reshape(b, self.heads, m, seg, -1).mean(-2)
            k_l = k.reshape(b, self.heads, m, seg, -1).mean(-2)
            kernel1 = torch.softmax(q @ k_l.transpose(-1, -2), -1)
            kernel2 = _pinv(torch.softmax(q_l @ k_l.transpose(-1, -2), -1), self.pinv_iterations)
            kernel3 = torch.softmax(q_l @ k.transpose(-1, -2), -1)
            attn = kernel1 @ kernel2
            out = attn @ (kernel3 @ v)
            cls_row = (attn[:, :, pad : pad + 1] @ kernel3)[:, :, 0] if return_cls_attention else None
        else:
            full = torch.softmax(q @ k.transpose(-1, -2), -1)
            out = full @ v
            cls_row = full[:, :, pad] if return_cls_attention else None
        out = out + self.residual(v)
        out = self.out(out.transpose(1, 2).reshape(b, -1, dim))[:, pad:]
        if return_cls_attention:
            return out, cls_row[..., pad:].mean(1)  # (b, n) averaged over heads
        return out


def _pinv(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """Iterative Moore-Penrose inverse (Razavi et al. 2014) of a batch of row-stochastic matrices."""
    abs_x = x.abs()
    z = x.transpose(-1, -2) / (abs_x.sum(-1).amax() * abs_x.sum(-2).amax())
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    for _ in range(iterations):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


class PPEG(nn.Module):
    """Pyramid position encoding generator: depthwise 7/5/3 convolutions on the tokens laid out on a square."""

    def __init__(self, dim: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim) for k in (7, 5, 3))

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        cls, tokens = x[:, :1], x[:, 1:]
        grid = tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)
        grid = grid + sum(conv(grid) for conv in self.convs)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)


class TransMILNet(nn.Module):
    """TransMIL (Shao et al. 2021): embed, pad to a square, class token, Nyström layer, PPEG, Nyström layer."""

    def __init__(
        self, n_features: int, n_classes: int, *, hidden: int, heads: int, landmarks: int, dropout: float
    ):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.norm1, self.norm2, self.norm = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.layer1 = NystromAttention(hidden, heads=heads, landmarks=landmarks)
        self.layer2 = NystromAttention(hidden, heads=heads, landmarks=landmarks)
        self.ppeg = PPEG(hidden)
        self.classify = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None):
        h = self.embed(x)[None]  # (1, n, hidden)
        n = h.shape[1]
        side = math.ceil(math.sqrt(n))
        h = torch.cat([h, h[:, : side * side - n]], dim=1)  # repeat the first tiles to fill the square
        h = torch.cat([self.cls_token, h], dim=1)
        h = h + self.layer1(self.norm1(h))
        h = self.ppeg(h, side)
        out, cls_attention = self.layer2(self.norm2(h), return_cls_attention=True)
        h = h + out
        logits = self.classify(self.norm(h)[:, 0])[0]
        return logits, cls_attention[0, 1 : n + 1], None
