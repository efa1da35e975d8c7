"""Loading checkpoints into built encoders: other libraries' layouts (Hugging Face transformers, open_clip,
CONCH, CTransPath, KimiaNet, torchvision) converted to the built model's parameter names, then loaded strictly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eosin.errors import WeightsMismatchError
from eosin.models._registry import EncoderSpec

__all__ = ["is_vit", "load_into"]

_VIT_LOADERS = ("hf_vit", "hf_dinov2", "hf_clip", "hf_siglip", "open_clip", "conch")


def is_vit(spec: EncoderSpec) -> bool:
    """Whether the entry is a ViT (timm ``vit_*`` or one of the transformer loaders)."""
    return spec.loader in _VIT_LOADERS or (spec.loader == "timm" and spec.architecture.startswith("vit_"))


# --- loading ---------------------------------------------------------------------------------------------------------
def load_into(
    spec: EncoderSpec, model: nn.Module, state: dict[str, Any], path: Path, *, assign: bool
) -> None:
    """Fill ``model`` from ``state`` (converted to its names); floating tensors become float32."""
    state = _convert(spec, state, model)
    state = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or reshaped:
        raise WeightsMismatchError(
            f"the weights do not fit {spec.name!r} ({spec.architecture}): {len(missing)} missing parameters "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(reshaped)} of "
            f"another shape (e.g. {reshaped[:3]}).",
            path=path,
            fix=f"pass the weights of {spec.hub_id or spec.name}, or the matching encoder name",
        )
    model.load_state_dict(state, strict=True, assign=assign)


def _convert(spec: EncoderSpec, state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """``state`` renamed (and reshaped) to the built model's parameter names."""
    loader = spec.loader
    if (
        loader == "timm" and spec.key_map == "ordered"
    ):  # already named by map_keys; drop a head the model lacks
        head = getattr(model, "pretrained_cfg", {}).get("classifier") or "classifier"
        own = model.state_dict()
        state = {k: v for k, v in state.items() if k in own or not k.startswith(head + ".")}
    elif loader == "timm":
        state = _strip(state, ("module.", "model."), model)
    elif loader in ("torchvision", "kimianet"):
        state = _from_torchvision(state, model)
    elif loader == "open_clip":
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, model)
    elif loader in ("hf_vit", "hf_dinov2"):
        state = _from_hf_vit(state)
    elif loader in ("hf_clip", "hf_siglip"):
        state = _from_hf_clip(state)
    elif loader == "conch":
        state = {k.removeprefix("visual."): v for k, v in state.items()}
        state = {
            k: v
            for k, v in state.items()
            if k.split(".")[0] in ("trunk", "attn_pool_contrast", "ln_contrast")
        }
        state = {
            **{k: v for k, v in state.items() if not k.startswith("trunk.")},
            **{f"trunk.{k}": v for k, v in _fit_prefix_tokens(_sub(state, "trunk."), model.trunk).items()},
        }
        return state
    elif loader == "ctranspath":
        from timm.models.swin_transformer import checkpoint_filter_fn

        state = {k: v for k, v in state.items() if not k.endswith(("attn_mask", "relative_position_index"))}
        state = {k: v for k, v in checkpoint_filter_fn(state, model).items() if not k.startswith("head.")}
    if is_vit(spec):
        state = _fit_prefix_tokens(state, model)
    return state


def _sub(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _strip(state: dict[str, Any], prefixes: tuple[str, ...], model: nn.Module) -> dict[str, Any]:
    """Drop wrapper prefixes (DataParallel ``module.``, ...) when the model's own names do not have them."""
    own = set(model.state_dict())
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
            state = _sub(state, prefix)
    return state


def _fit_prefix_tokens(state: dict[str, Any], vit: nn.Module) -> dict[str, Any]:
    """Position embeddings brought to the model's grid and prefix-token convention.

    A checkpoint whose class token has a position (DINOv2 with registers as transformers stores it) loaded into a
    timm model without one (``no_embed_class``) gets that position folded into the class token; a checkpoint
    trained at another input size (CONCH v1.5's trunk) is resampled (bicubic, as timm does).
    """
    pos = state.get("pos_embed")
    if pos is None or not hasattr(vit, "pos_embed") or pos.shape == vit.pos_embed.shape:
        return state
    from timm.layers import resample_abs_pos_embed

    state = dict(state)
    own_prefix = 0 if getattr(vit, "no_embed_class", False) else vit.num_prefix_tokens
    grid = vit.patch_embed.grid_size
    ckpt_prefix = pos.shape[1] - round(pos.shape[1] ** 0.5) ** 2
    if ckpt_prefix and not own_prefix and "cls_token" in state:
        state["cls_token"] = state["cls_token"] + pos[:, :ckpt_prefix][:, :1]
        pos = pos[:, ckpt_prefix:]
        ckpt_prefix = 0
    if ckpt_prefix != own_prefix:
        raise WeightsMismatchError(
            f"position embeddings with {ckpt_prefix} prefix token(s) do not fit a model expecting {own_prefix}."
        )
    state["pos_embed"] = resample_abs_pos_embed(
        pos, new_size=list(grid), num_prefix_tokens=own_prefix, verbose=False
    )
    return state


def _from_torchvision(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """torchvision names, with wrapper prefixes and the classifier removed and old DenseNet names updated."""
    state = _strip(state, ("module.", "model."), model)
    if any(k.startswith("0.") for k in state):  # KimiaNet: nn.Sequential(densenet.features, ...)
        state = {f"features.{k[2:]}": v for k, v in state.items() if k.startswith("0.")}
    # torchvision's own fix for DenseNet checkpoints saved before its layer renaming ("norm.1" -> "norm1")
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
    )
    out = {}
    for key, value in state.items():
        match = pattern.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return {k: v for k, v in out.items() if not k.startswith(("fc.", "classifier.", "head."))}


_HF_BLOCK = {
    "layernorm_before": "norm1",
    "norm1": "norm1",
    "layer_norm1": "norm1",
    "layernorm_after": "norm2",
    "norm2": "norm2",
    "layer_norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "self_attn.out_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}


def _hf_blocks(state: dict[str, Any], layer_prefix: str) -> dict[str, Any]:
    """Transformer blocks from transformers' names (``encoder.layer(s).<i>.``) to timm's (``blocks.<i>.``)."""
    out: dict[str, Any] = {}
    qkv: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in state.items():
        if not key.startswith(layer_prefix):
            continue
        index, rest = key[len(layer_prefix) :].split(".", 1)
        leaf, kind = rest.rsplit(".", 1) if rest.endswith((".weight", ".bias")) else (rest, "")
        part = re.search(
            r"(?:attention\.attention\.|self_attn\.)(query|key|value|q_proj|k_proj|v_proj)$", leaf
        )
        if part:
            qkv.setdefault((index, kind), {})[part.group(1)[0]] = value
            continue
        if leaf not in _HF_BLOCK:
            raise WeightsMismatchError(f"unexpected transformers parameter {key!r} in the checkpoint.")
        out[f"blocks.{index}.{_HF_BLOCK[leaf]}" + (f".{kind}" if kind else "")] = value
    for (index, kind), parts in qkv.items():
        out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _from_hf_vit(state: dict[str, Any]) -> dict[str, Any]:
    """A transformers ViTModel / Dinov2Model (with or without registers) as timm VisionTransformer parameters."""
    for prefix in ("vit.", "dinov2.", "model."):
        if any(k.startswith(prefix + "embeddings.") for k in state):
            state = _sub(state, prefix)
    names = {
        "embeddings.cls_token": "cls_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.register_tokens": "reg_token",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    out = {new: state[old] for old, new in names.items() if old in state}
    return {**out, **_hf_blocks(state, "encoder.layer.")}


def _from_hf_clip(state: dict[str, Any]) -> dict[str, Any]:
    """The image tower of a transformers CLIPModel / SiglipModel as timm VisionTransformer parameters."""
    vision = (
        _sub(state, "vision_model.") if any(k.startswith("vision_model.") for k in state) else dict(state)
    )
    out: dict[str, Any] = {}
    if "embeddings.class_embedding" in vision:
        out["cls_token"] = vision["embeddings.class_embedding"].reshape(1, 1, -1)
    out["pos_embed"] = vision["embeddings.position_embedding.weight"].unsqueeze(0)
    out["patch_embed.proj.weight"] = vision["embeddings.patch_embedding.weight"]
    if "embeddings.patch_embedding.bias" in vision:
        out["patch_embed.proj.bias"] = vision["embeddings.patch_embedding.bias"]
    for old, new in (("pre_layrnorm", "norm_pre"), ("post_layernorm", "norm")):
        for kind in ("weight", "bias"):
            if f"{old}.{kind}" in vision:
                out[f"{new}.{kind}"] = vision[f"{old}.{kind}"]
    out.update(_hf_blocks(vision, "encoder.layers."))
    if "visual_projection.weight" in state:  # CLIP: bias-free projection into the joint space
        proj = state["visual_projection.weight"]
        out["head.weight"], out["head.bias"] = proj, torch.zeros(proj.shape[0], dtype=proj.dtype)
    head = _sub(vision, "head.")
    if head:  # SigLIP: multihead attention pooling
        width = head["probe"].shape[-1]
        out["attn_pool.latent"] = head["probe"]
        out["attn_pool.q.weight"], out["attn_pool.kv.weight"] = head["attention.in_proj_weight"].split(
            [width, 2 * width]
        )
        out["attn_pool.q.bias"], out["attn_pool.kv.bias"] = head["attention.in_proj_bias"].split(
            [width, 2 * width]
        )
        for old, new in (
            ("attention.out_proj", "proj"),
            ("layernorm", "norm"),
            ("mlp.fc1", "mlp.fc1"),
            ("mlp.fc2", "mlp.fc2"),
        ):
            for kind in ("weight", "bias"):
                out[f"attn_pool.{new}.{kind}"] = head[f"{old}.{kind}"]
    return out
