"""Checkpoint tensors matched to an architecture's names (``key_map``), and :func:`load_weights`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from eosin.errors import UsageError, WeightsMismatchError
from eosin.models._registry import EncoderSpec, get_spec
from eosin.models._weights import file_sha256, package_weights_path, read_state_dict, resolve_weights

__all__ = ["load_weights", "map_keys"]


def load_weights(
    name: str | EncoderSpec, *, weights: str | os.PathLike[str] = "hub", with_record: bool = False
) -> Any:
    """The entry's weights as a state dict named as its architecture names them (timm entries: with the classifier
    when the checkpoint has one), checked (SHA-256, shapes) but not loaded into anything.

    For building other networks on the same weights: an ImageNet classifier for a sanity check, or the encoder of a
    U-Net (:func:`eosin.segment.build_unet`).

    With ``with_record``, returns ``(state, record)``, ``record`` saying where the weights came from as
    :attr:`eosin.models.Encoder.weights` does (``pretrained``, ``source``, ``path``, ``sha256``).

    >>> state = load_weights("efficientnet_lite0")  # doctest: +SKIP
    >>> timm.create_model("tf_efficientnet_lite0").load_state_dict(state)  # doctest: +SKIP
    """
    spec = get_spec(name)
    if spec.loader != "timm":
        raise UsageError(
            f"load_weights reads timm-layout entries; {spec.name!r} has the {spec.loader!r} layout.",
            fix="use create_encoder for it",
        )
    if weights is None:
        raise UsageError("load_weights needs weights ('hub' or a path), not None.")
    path = resolve_weights(spec, weights)
    state = map_keys(spec, read_state_dict(path), path)
    if not with_record:
        return state
    package = package_weights_path(spec)
    record = {
        "pretrained": True,
        "source": "package" if package is not None and package == path else "file",
        "path": str(path),
        "sha256": file_sha256(path),
    }
    return state, record


def map_keys(spec: EncoderSpec, state: dict[str, Any], path: Path) -> dict[str, Any]:
    """``state`` renamed by the entry's ``key_map``: ``"ordered"`` pairs its tensors, in order, with those of the timm
    architecture (with a classifier as wide as the checkpoint's last bias), refusing any count or shape that differs.
    """
    if spec.key_map != "ordered":
        return state
    import timm

    from eosin.models._create import _timm_kwargs

    tensors = [(k, v) for k, v in state.items() if torch.is_tensor(v)]
    last = tensors[-1][1] if tensors else None
    n_classes = int(last.shape[0]) if last is not None and last.ndim == 1 else 0
    with torch.device("meta"):
        ref = timm.create_model(
            spec.architecture, pretrained=False, num_classes=n_classes, **_timm_kwargs(spec.arch_kwargs)
        ).state_dict()
    fix = (
        f"pass the weights of {spec.weights_pip or spec.weights_package or spec.name} for {spec.architecture}"
    )
    if len(tensors) != len(ref):
        raise WeightsMismatchError(
            f"the checkpoint has {len(tensors)} tensors; {spec.architecture} (key_map 'ordered') has {len(ref)}.",
            path=path,
            fix=fix,
        )
    out = {}
    for i, ((old, value), (new, target)) in enumerate(zip(tensors, ref.items(), strict=True)):
        if tuple(value.shape) != tuple(target.shape):
            raise WeightsMismatchError(
                f"tensor {i} ({old!r}, shape {tuple(value.shape)}) does not map onto {new!r} of "
                f"{spec.architecture} (shape {tuple(target.shape)}).",
                path=path,
                fix=fix,
            )
        out[new] = value
    return out
