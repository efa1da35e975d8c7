"""Vision-language models by name: which library builds each one and which image-tower entry holds its weights.

Plain data, no PyTorch. Each entry points at the image-encoder entry of :mod:`eosin.models` with the same name,
whose hub repository holds the whole two-tower checkpoint (configuration, tokenizer and weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from eosin.errors import UnknownNameError

__all__ = ["BACKENDS", "VLSpec", "get_vl_spec", "list_vl_models"]

#: the code that builds a vision-language model, by the layout of its repository
BACKENDS = {
    "hf_clip": "transformers CLIPModel folder (config.json, weights, tokenizer files, preprocessor_config.json)",
    "hf_siglip": "transformers SiglipModel folder (config.json, weights, tokenizer files, preprocessor_config.json)",
    "open_clip": "open_clip hub folder (open_clip_config.json + open_clip_pytorch_model.bin / .safetensors)",
    "conch": "CONCH (CoCa-style, open_clip-based): built by the `conch` package from MahmoodLab",
    "local": "a two-tower model trained by `eosin train clip` (eosin-vl.json + model.safetensors)",
}


@dataclass(frozen=True)
class VLSpec:
    """One vision-language model.

    Parameters
    ----------
    name
        Registry name; also the name of the image-tower entry in :mod:`eosin.models` holding its weights.
    backend
        One of :data:`BACKENDS`.
    open_clip_arch
        open_clip architecture name, used when the folder has no ``open_clip_config.json``.
    templates
        Prompt templates the authors used for zero-shot (``{}`` stands for the class name).
    """

    name: str
    backend: str
    description: str
    open_clip_arch: str | None = None
    templates: tuple[str, ...] = ("{}.", "an H&E image of {}.", "a histopathology image of {}.")


_ENTRIES = {
    s.name: s
    for s in (
        VLSpec("plip", "hf_clip", "PLIP: CLIP ViT-B/32 fine-tuned on OpenPath (Twitter) image-text pairs"),
        VLSpec(
            "quiltnet-b-32",
            "open_clip",
            "QuiltNet-B-32: open_clip ViT-B/32 fine-tuned on Quilt-1M",
            open_clip_arch="ViT-B-32",
        ),
        VLSpec("medsiglip-448", "hf_siglip", "MedSigLIP: SigLIP So400m/14 at 448 px for medical images"),
        VLSpec(
            "conch",
            "conch",
            "CONCH v1: CoCa ViT-B/16 image tower + text transformer (gated, MahmoodLab/CONCH)",
            templates=("{}.", "an image of {}.", "an H&E image of {}."),
        ),
    )
}


def list_vl_models() -> list[str]:
    """Names of the registered vision-language models, sorted."""
    return sorted(_ENTRIES)


def get_vl_spec(name: str | VLSpec) -> VLSpec:
    """The entry registered as ``name`` (case-insensitive); a spec passes through."""
    if isinstance(name, VLSpec):
        return name
    try:
        return _ENTRIES[str(name).lower()]
    except KeyError:
        raise UnknownNameError(
            "vision-language model",
            str(name),
            _ENTRIES,
            fix="name a registered model or the folder of a model trained with `eosin train clip`",
        ) from None
