"""Build an encoder from its registry entry and fill it with weights: :func:`create_encoder`.

Every architecture is built locally (``timm.create_model(..., pretrained=False)`` or a torchvision constructor
without weights), so building never touches the network; weights come from :mod:`eosin.models._weights`.
Checkpoints in other libraries' layouts (Hugging Face transformers, open_clip, CONCH, CTransPath, KimiaNet) are
converted to the built model's parameter names here, then loaded strictly.

Tiny models
-----------
``create_encoder(name, weights=None, tiny=True)`` builds the same architecture family at a toy width so that tests
can run every entry in milliseconds: ViTs get ``embed_dim=32, depth=1, num_heads=2`` (their input size and patch
size stay), Swin gets ``embed_dim=32`` with one block per stage, CLIP projections and CONCH poolers 16 outputs.
CNNs keep their architecture (they are small already). The tiny embedding size follows the entry's pooling rule
(``cls+mean`` doubles the width) and is reported by :attr:`Encoder.embedding_dim`. Any keyword argument given to
:func:`create_encoder` is passed on to the builder after the tiny settings (e.g. ``depth=2``).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import torch
from torch import nn

from eosin.errors import UsageError
from eosin.models._convert import is_vit as _is_vit
from eosin.models._convert import load_into as _load
from eosin.models._keys import map_keys as _map_keys
from eosin.models._registry import EncoderSpec, get_spec
from eosin.models._weights import package_weights_path, read_state_dict, resolve_weights

__all__ = ["Encoder", "create_encoder"]

_TOKEN_POOLINGS = ("cls", "cls+mean", "mean")
_TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2}


class Encoder(nn.Module):
    """A tile encoder: normalized images ``(N, 3, H, W)`` float in, embeddings ``(N, embedding_dim)`` out.

    Attributes
    ----------
    spec
        The registry entry it was built from.
    model
        The underlying network (timm or torchvision module).
    embedding_dim
        Length of one output vector (``spec.embedding_dim`` unless built tiny or with overrides).
    input_size
        Side in pixels of the square input the model expects.
    weights_file, weights_sha256
        The file the weights were read from and its SHA-256 (None for random weights).
    seed
        The seed of a random initialisation (None when the weights come from a file).
    weights_source
        ``"package"`` (an installed package's file), ``"file"`` (any other file) or ``"random"``.
    """

    def __init__(self, spec: EncoderSpec, model: nn.Module, *, embedding_dim: int, input_size: int):
        super().__init__()
        self.spec = spec
        self.model = model
        self.embedding_dim = embedding_dim
        self.input_size = input_size
        self.weights_file: str | None = None
        self.weights_sha256: str | None = None
        self.seed: int | None = None
        self.weights_source = "random"

    @property
    def weights(self) -> dict[str, Any]:
        """What the weights are, for output records: ``{"pretrained": False, "source": "random", "seed": ...}``
        or ``{"pretrained": True, "source": "package"|"file", "path": ..., "sha256": ...}``."""
        if self.weights_sha256 is None:
            return {"pretrained": False, "source": "random", "seed": self.seed}
        return {
            "pretrained": True,
            "source": self.weights_source,
            "path": self.weights_file,
            "sha256": self.weights_sha256,
        }

    @property
    def weights_hash(self) -> str:
        """SHA-256 of the current state dict (:func:`eosin.models.weights_hash`): what cached features are keyed
        by. Computed on each call (the weights may have been trained since)."""
        from eosin.models._weights import weights_hash

        return weights_hash(self)

    def provenance(self) -> dict[str, Any]:
        """What made this encoder, for output records: name, weights file and its SHA-256, seed, weights hash."""
        return {
            "encoder": self.spec.name,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "seed": self.seed,
            "weights_hash": self.weights_hash,
        }

    @property
    def preprocess(self) -> dict[str, Any]:
        """What inputs must look like: ``input_size`` (px), ``mean``/``std`` (on 0-1 RGB), ``native_mpp``."""
        return {
            "input_size": self.input_size,
            "mean": self.spec.mean,
            "std": self.spec.std,
            "native_mpp": self.spec.native_mpp,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of normalized images ``(N, 3, H, W)`` into ``(N, embedding_dim)``."""
        pooling = self.spec.pooling
        if pooling not in _TOKEN_POOLINGS:
            return self.model(x)
        tokens = self.model.forward_features(x)
        prefix = self.model.num_prefix_tokens
        if pooling == "cls":
            return tokens[:, 0]
        patches = tokens[:, prefix:].mean(dim=1)
        return patches if pooling == "mean" else torch.cat([tokens[:, 0], patches], dim=-1)

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, embedding_dim={self.embedding_dim}, input_size={self.input_size}"


def create_encoder(
    name: str | EncoderSpec,
    *,
    weights: str | os.PathLike[str] | None = "hub",
    device: str | torch.device = "cpu",
    tiny: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> Encoder:
    """Build the encoder registered as ``name``, with its weights, in eval mode on ``device``.

    Parameters
    ----------
    name
        Registry name (see :func:`eosin.models.list_encoders`) or an :class:`EncoderSpec`.
    weights
        ``"hub"`` (default; ``"pretrained"`` is the same): the entry's own weights, from its package, the local
        copy or the Hugging Face hub (see :mod:`eosin.models._weights` for the search order and offline rules); a
        path to a weights file or a folder holding it; ``None`` for random
        weights (tests, benchmarks).
    device
        Where the model lives.
    tiny
        Build a toy-width version of the architecture (see the module docstring); for tests.
    seed
        Seed of the random initialisation when ``weights`` is None, so that random weights are the same on every
        run (and a resumed run continues with the same network); recorded as :attr:`Encoder.seed`. The global
        random state is left as it was.
    **overrides
        Builder keyword arguments replacing the entry's (e.g. ``depth=2``, ``img_size=512``).

    Returns
    -------
    Encoder
        In eval mode; ``encoder(x)`` maps ``(N, 3, S, S)`` normalized images to ``(N, embedding_dim)``.

    Raises
    ------
    UnknownNameError
        No encoder of that name.
    WeightsUnavailableError
        The weights cannot be found offline nor downloaded; the message names the hub id and where to put them.
    WeightsMismatchError
        The weights file has the wrong checksum or parameters that do not fit the architecture.

    Examples
    --------
    >>> enc = create_encoder("uni", weights=None, tiny=True)
    >>> enc(torch.zeros(2, 3, 224, 224)).shape
    torch.Size([2, 32])
    """
    spec = get_spec(name)
    path = resolve_weights(spec, weights)
    kwargs = {**spec.arch_kwargs, **_tiny_kwargs(spec, tiny), **overrides}
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, embedding_dim = _build(spec, kwargs)
    else:
        state = _map_keys(spec, read_state_dict(path), path)
        # built on the meta device and filled by assignment: no random initialisation, no second copy in memory
        with torch.device("meta"):
            model, embedding_dim = _build(spec, kwargs)
        _load(spec, model, state, path, assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # buffers not in the checkpoint
            model, embedding_dim = _build(spec, kwargs)
            _load(spec, model, state, path, assign=False)
    input_size = kwargs.get("img_size", spec.input_size)
    encoder = Encoder(spec, model, embedding_dim=embedding_dim, input_size=input_size)
    if path is None:
        encoder.seed = seed
    else:
        from eosin.models._weights import file_sha256

        encoder.weights_file, encoder.weights_sha256 = str(path), file_sha256(path)
        encoder.weights_source = "package" if path == package_weights_path(spec) else "file"
    return encoder.eval().to(device)


# --- building --------------------------------------------------------------------------------------------------------
def _tiny_kwargs(spec: EncoderSpec, tiny: bool) -> dict[str, Any]:
    if not tiny:
        return {}
    if _is_vit(spec):
        extra = {key: 16 for key in ("proj_dim", "pool_dim") if key in spec.arch_kwargs}
        return {**_TINY_VIT, **extra}
    if spec.loader == "ctranspath":
        return {"embed_dim": 32, "depths": (1, 1, 1, 1), "num_heads": (2, 2, 2, 2)}
    return {}


def _layer(name: str) -> Any:
    import timm.layers

    table = {
        "swiglu_packed": timm.layers.SwiGLUPacked,
        "silu": nn.SiLU,
        "gelu": nn.GELU,
        "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    }
    if name not in table:
        raise UsageError(
            f"unknown layer name {name!r} in an encoder's arch_kwargs.", fix=f"use one of {sorted(table)}"
        )
    return table[name]


def _timm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k not in ("proj_dim", "pool_dim", "pool_version", "norm_eps")}
    for key in ("mlp_layer", "act_layer"):
        if isinstance(out.get(key), str):
            out[key] = _layer(out[key])
    if "norm_eps" in kwargs:
        out["norm_layer"] = partial(nn.LayerNorm, eps=kwargs["norm_eps"])
    return out


def _build(spec: EncoderSpec, kwargs: dict[str, Any]) -> tuple[nn.Module, int]:
    """The network for ``spec`` (random weights) and the length of the vector the encoder returns."""
    if spec.loader in ("torchvision", "kimianet"):
        return _build_torchvision(spec.architecture, kwargs)
    import timm  # 1-2 s to import: only for the entries that need it

    if spec.loader == "ctranspath":
        model = timm.create_model(
            spec.architecture, pretrained=False, num_classes=0, embed_layer=ConvStem, **_timm_kwargs(kwargs)
        )
        return model, model.num_features
    if spec.loader == "conch":
        trunk = timm.create_model(spec.architecture, pretrained=False, num_classes=0, **_timm_kwargs(kwargs))
        pool_cls = AttentionalPoolerV1 if kwargs["pool_version"] == 1 else AttentionalPoolerV15
        pooler = pool_cls(kwargs["pool_dim"], trunk.num_features, n_head=8)
        return ConchImageTower(trunk, pooler), kwargs["pool_dim"]
    if spec.pooling == "proj":  # CLIP image towers: the head is the image projection
        model = timm.create_model(
            spec.architecture, pretrained=False, num_classes=kwargs["proj_dim"], **_timm_kwargs(kwargs)
        )
        return model, kwargs["proj_dim"]
    model = timm.create_model(spec.architecture, pretrained=False, num_classes=0, **_timm_kwargs(kwargs))
    width = model.num_features
    return model, 2 * width if spec.pooling == "cls+mean" else width


def _build_torchvision(architecture: str, kwargs: dict[str, Any]) -> tuple[nn.Module, int]:
    import torchvision

    model = torchvision.models.get_model(architecture, weights=None, **kwargs)
    for attr in ("fc", "classifier", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model, head.in_features
    raise UsageError(f"torchvision model {architecture!r} has no linear head to remove.")


class ConvStem(nn.Module):
    """CTransPath's patch embedding: two stride-2 3x3 conv-BN-ReLU stages and a 1x1 conv (4x downsampling).

    Parameter names follow the CTransPath release (``proj.0`` ... ``proj.6``, ``norm``); the output is NHWC, as
    timm's Swin expects.
    """

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None, **_: Any):
        super().__init__()
        if patch_size != 4 or embed_dim % 8:
            raise UsageError("ConvStem needs patch_size 4 and an embed_dim divisible by 8.")
        layers: list[nn.Module] = []
        channels_in, channels_out = in_chans, embed_dim // 8
        for _stage in range(2):
            layers += [
                nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(inplace=True),
            ]
            channels_in, channels_out = channels_out, channels_out * 2
        layers.append(nn.Conv2d(channels_in, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        size = img_size if isinstance(img_size, int) else img_size[0]
        self.img_size = (size, size)
        self.patch_size = (4, 4)
        self.grid_size = (size // 4, size // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class AttentionalPoolerV1(nn.Module):
    """CONCH v1's attentional pooler: learned queries attend over the trunk's tokens (``nn.MultiheadAttention``)."""

    def __init__(self, d_model: int, context_dim: int, *, n_head: int = 8, n_queries: int = 1):
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.attn = nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim)
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_k(x).permute(1, 0, 2)  # (tokens, N, C)
        q = self.ln_q(self.query).unsqueeze(1).expand(-1, x.shape[1], -1)
        return self.attn(q, x, x, need_weights=False)[0].permute(1, 0, 2)


class AttentionalPoolerV15(nn.Module):
    """CONCH v1.5's attentional pooler: the same idea with bias-free q/kv/out projections (``to_q``, ``to_kv``)."""

    def __init__(self, d_model: int, context_dim: int, *, n_head: int = 8, n_queries: int = 1):
        super().__init__()
        self.heads = n_head
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.ln_k = nn.LayerNorm(context_dim)
        self.ln_q = nn.LayerNorm(d_model)
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * d_model, bias=False)
        self.to_out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        q = self.to_q(self.ln_q(self.query)).expand(n, -1, -1)
        k, v = self.to_kv(self.ln_k(x)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class ConchImageTower(nn.Module):
    """CONCH image encoder without the contrastive projection: trunk tokens -> attentional pooler -> LayerNorm."""

    def __init__(self, trunk: nn.Module, pooler: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.attn_pool_contrast = pooler
        self.ln_contrast = nn.LayerNorm(pooler.query.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_contrast(self.attn_pool_contrast(self.trunk.forward_features(x))[:, 0])
