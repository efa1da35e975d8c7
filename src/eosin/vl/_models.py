"""One interface over vision-language models: :class:`VLModel` and :func:`load_vl_model`.

``encode_images`` (uint8 tiles) and ``encode_text`` (strings) return float32 rows, L2-normalised, in one space;
``logit_scale`` is the model's learned temperature (``logits = logit_scale * image @ text.T``). Backends wrap the
reference libraries' own modules (transformers ``CLIPModel``/``SiglipModel``, open_clip ``CLIP``), built from the
repository's configuration and filled from a weights file read safely (safetensors, or ``torch.load`` with
``weights_only=True``) through :mod:`eosin.models`' weight resolution.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from eosin.errors import UsageError, WeightsMismatchError, WeightsUnavailableError
from eosin.vl._preprocess import ImagePrep
from eosin.vl._registry import VLSpec, get_vl_spec

__all__ = ["VLModel", "load_vl_model", "weights_digest"]

#: file names of a trained local model's folder
LOCAL_CONFIG = "eosin-vl.json"


class VLModel:
    """A two-tower model: images and texts into one L2-normalised embedding space.

    Attributes
    ----------
    name
        Registry name, or ``local:<folder name>`` for a model trained with ``eosin train clip``.
    embedding_dim
        Length of one embedding.
    logit_scale
        Multiplier of cosine similarities into logits (``exp`` of the learned log-temperature).
    logit_bias
        Added to the logits (SigLIP), else 0.
    prep
        How tiles are resized, cropped and normalized (:class:`ImagePrep`).
    native_mpp
        Microns per pixel tiles should be read at, or None when the model is not tied to a resolution.
    weights_id
        SHA-256 (16 hex digits) of the weights file: what keys caches and indexes.
    device, precision
        Where and how the towers run (``eosin._device``). Precision ``auto`` is settled by measurement on the
        first image batch encoded (:mod:`eosin._calibrate`: the fastest autocast of the image tower that agrees with
        float32, cached per machine and weights); until then ``precision`` reads ``auto``. ``calibration`` records
        the decision. The text tower runs in float32.
    """

    name: str
    source: str | None = None
    embedding_dim: int
    logit_scale: float
    logit_bias: float = 0.0
    prep: ImagePrep
    native_mpp: float | None = None
    weights_id: str = ""
    batch_size: int = 64

    def __init__(self, *, device: Any = "auto", precision: str = "auto"):
        from eosin._device import precision_candidates, resolve_precision, select_device

        self.device = select_device(device)
        # ``auto`` is settled on the first images encoded (:meth:`encode_images`), by measurement, never by CPU flags
        self.precision = precision if precision == "auto" else resolve_precision(self.device, precision)
        precision_candidates(self.device, precision)  # refuses impossible combinations now
        self.calibration: dict[str, Any] | None = None

    # --- what backends implement ---------------------------------------------------------------------------------
    def _image_features(self, x):  # (n, 3, S, S) float tensor -> (n, d) tensor, not normalised
        raise NotImplementedError

    def _text_features(self, texts: list[str]):  # -> (n, d) tensor, not normalised
        raise NotImplementedError

    # --- the interface ---------------------------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.prep.input_size

    def encode_images(self, images: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Embed uint8 RGB tiles ``(n, rows, cols, 3)`` (or a list of tiles of any sizes) into ``(n, embedding_dim)``
        float32 unit rows."""
        import torch

        from eosin._device import autocast

        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = images[None]
        step = batch_size or self.batch_size
        out = np.empty((len(images), self.embedding_dim), dtype=np.float32)
        for i in range(0, len(images), step):
            chunk = images[i : i + step]
            if isinstance(chunk, np.ndarray):
                x = self.prep.tensor(chunk, self.device)
            else:  # a list of tiles of different sizes
                x = torch.cat([self.prep.tensor(np.asarray(t)[None], self.device) for t in chunk])
            if self.precision == "auto":
                self._calibrate(x, step)
            with torch.inference_mode(), autocast(self.device, self.precision):
                out[i : i + len(x)] = _normalize(self._image_features(x))
        return out

    def _calibrate(self, x, batch_size: int) -> None:
        """Settle ``precision="auto"``: the fastest autocast of the image tower on these tiles whose embeddings
        agree with float32's (cached per machine, model, weights and input; :mod:`eosin._calibrate`)."""
        from eosin._calibrate import choose_inference_precision

        rows = x[: 4 if self.device.type == "cpu" else len(x)]
        decision = choose_inference_precision(
            lambda t: _unit(self._image_features(t)),  # unit rows: what every output is made of
            rows,
            self.device,
            "auto",
            task="vl-images",
            name=self.name,
            weights_id=self.weights_id,
            batch_size=batch_size,
        )
        self.precision = decision.precision
        self.calibration = decision.record()

    def encode_text(self, texts: list[str] | str) -> np.ndarray:
        """Embed strings into ``(n, embedding_dim)`` float32 unit rows (the text tower runs in float32)."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t) for t in texts]
        if not texts:
            return np.empty((0, self.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            return _normalize(self._text_features(texts))

    def describe(self) -> dict[str, Any]:
        """What made an output: model name, weights digest, embedding size, device, precision, versions."""
        import torch

        import eosin

        return {
            "model": self.name,
            "source": self.source,
            "weights_id": self.weights_id,
            "embedding_dim": self.embedding_dim,
            "input_size": self.input_size,
            "native_mpp": self.native_mpp,
            "device": str(self.device),
            "precision": self.precision,
            "calibration": self.calibration,
            "eosin": eosin.__version__,
            "torch": torch.__version__,
        }


def _unit(t):
    import torch

    return torch.nn.functional.normalize(t.float(), dim=-1)


def _normalize(t) -> np.ndarray:
    return _unit(t).cpu().numpy().astype(np.float32, copy=False)


def _pooled(out):
    """transformers 5 returns a model output from ``get_*_features``; earlier versions a tensor."""
    return out if hasattr(out, "shape") else out.pooler_output


def weights_digest(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of a weights file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _load_into(module, state: dict[str, Any], *, path: Path, ignore=("position_ids",)) -> None:
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ
        raise WeightsMismatchError(
            f"the weights do not fit the model built from the folder's configuration ({str(exc).splitlines()[-1]}).",
            path=path,
            fix="give the folder of the checkpoint this configuration belongs to",
        ) from exc
    missing = [k for k in missing if not k.endswith(ignore)]
    unexpected = [k for k in unexpected if not k.endswith(ignore)]
    if missing or unexpected:
        raise WeightsMismatchError(
            f"the weights do not fit the model built from the folder's configuration (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}).",
            path=path,
            fix="give the folder of the checkpoint this configuration belongs to",
        )


def _fill_position_ids(module) -> None:
    """The non-persistent ``position_ids`` buffers (not in checkpoints): ``arange`` as transformers makes them."""
    import torch

    for name, buf in module.named_buffers():
        if name.endswith("position_ids"):
            buf.copy_(torch.arange(buf.shape[-1], dtype=buf.dtype).expand_as(buf))


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def _tokenizer_error(folder: Path, exc: Exception | None = None) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"no tokenizer in this model folder ({type(exc).__name__ if exc else 'no tokenizer files'}).",
        path=folder,
        fix="copy the checkpoint's tokenizer files (tokenizer.json, or vocab/merges files and tokenizer_config.json) "
        "into the folder",
    )


class _HFModel(VLModel):
    """transformers ``CLIPModel`` (PLIP) or ``SiglipModel`` (MedSigLIP) from a model folder."""

    def __init__(
        self, name: str, folder: Path, weights: Path, *, siglip: bool, device="auto", precision="auto"
    ):
        super().__init__(device=device, precision=precision)
        import transformers

        from eosin.models import read_state_dict

        cls = (
            (transformers.SiglipModel, transformers.SiglipConfig)
            if siglip
            else (
                transformers.CLIPModel,
                transformers.CLIPConfig,
            )
        )
        kind = "siglip" if siglip else "clip"
        found = _model_type(folder)
        if found is not None and found != kind:
            raise WeightsMismatchError(
                f"this folder holds a {found!r} model, not the {kind!r} model {name!r} is.",
                path=folder,
                fix=f"give the folder of {name}'s checkpoint",
            )
        try:
            config = cls[1].from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise WeightsUnavailableError(
                f"no readable {cls[1].__name__} config.json in this folder ({exc}).",
                path=folder,
                fix="give the model's Hugging Face folder (config.json, weights, tokenizer files)",
            ) from exc
        import torch

        with torch.device("meta"):  # no random initialisation: every tensor comes from the file
            self.model = cls[0](config).eval()
        self.model.to_empty(device="cpu")
        _load_into(self.model, read_state_dict(weights), path=weights)
        _fill_position_ids(self.model)
        self.model.to(self.device)
        if not any(
            (folder / f).is_file() for f in ("tokenizer.json", "vocab.json", "spiece.model", "vocab.txt")
        ):
            raise _tokenizer_error(folder)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError, ImportError) as exc:
            raise _tokenizer_error(folder, exc) from exc
        self.siglip = siglip
        self.name = name
        self.max_length = int(config.text_config.max_position_embeddings)
        self.embedding_dim = int(config.projection_dim if not siglip else config.text_config.hidden_size)
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        self.logit_bias = float(self.model.logit_bias.detach()) if siglip else 0.0
        self.prep = ImagePrep.from_hf_folder(folder, default_square=siglip)
        self.weights_id = weights_digest(weights)

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """Token ids as the model was trained with them (SigLIP: padded to ``max_length``, 64 for MedSigLIP)."""
        if self.siglip:
            return self.tokenizer(
                texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def _image_features(self, x):
        return _pooled(self.model.get_image_features(pixel_values=x))

    def _text_features(self, texts):
        tokens = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        if self.siglip:
            tokens.pop("attention_mask", None)  # SigLIP was trained without one; its processor passes none
        return _pooled(self.model.get_text_features(**tokens))


class _OpenClipModel(VLModel):
    """An open_clip ``CLIP`` (QuiltNet) from a hub folder (``open_clip_config.json``) or a named architecture."""

    def __init__(
        self, name: str, folder: Path, weights: Path, *, arch: str | None, device="auto", precision="auto"
    ):
        super().__init__(device=device, precision=precision)
        import open_clip

        from eosin.models import read_state_dict

        config_file = folder / "open_clip_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text())
            model_cfg, pre = config["model_cfg"], config.get("preprocess_cfg", {})
            token_source = f"local-dir:{folder}"
        elif arch:
            model_cfg, pre = open_clip.get_model_config(arch), {}
            token_source = arch
        else:
            raise WeightsUnavailableError(
                "no open_clip_config.json in this folder.",
                path=folder,
                fix="give the model's open_clip hub folder",
            )
        model_cfg = dict(model_cfg)
        model_cls = (
            open_clip.CustomTextCLIP if "hf_model_name" in model_cfg.get("text_cfg", {}) else open_clip.CLIP
        )
        model_cfg.pop("custom_text", None)
        self.model = model_cls(**model_cfg).eval()
        state = read_state_dict(weights)
        _load_into(self.model, state, path=weights, ignore=("position_ids", "attn_mask"))
        self.model.to(self.device)
        try:
            self.tokenizer = open_clip.get_tokenizer(token_source)
        except (OSError, ValueError, ImportError) as exc:
            raise _tokenizer_error(folder, exc) from exc
        self.name = name
        self.embedding_dim = int(model_cfg["embed_dim"])
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        bias = getattr(self.model, "logit_bias", None)
        self.logit_bias = float(bias.detach()) if bias is not None else 0.0
        size = pre.get("size", model_cfg["vision_cfg"].get("image_size", 224))
        size = size[0] if isinstance(size, (list, tuple)) else size
        mean = pre.get("mean", (0.48145466, 0.4578275, 0.40821073))
        std = pre.get("std", (0.26862954, 0.26130258, 0.27577711))
        squash = pre.get("resize_mode", "shortest") == "squash"
        self.prep = ImagePrep(
            size=int(size),
            crop=None if squash else int(size),
            mean=tuple(map(float, mean)),
            std=tuple(map(float, std)),
            resize="square" if squash else "shortest",
            resample=2 if pre.get("interpolation", "bicubic") == "bilinear" else 3,
            crop_rounding="round",
        )
        self.weights_id = weights_digest(weights)

    def _image_features(self, x):
        return self.model.encode_image(x)

    def _text_features(self, texts):
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


class _ConchModel(VLModel):
    """CONCH through MahmoodLab's ``conch`` package (its CoCa model is not part of open_clip itself). The weights
    file is read by that package's own loader, not by eosin's safe reader; use it only with the file from the
    gated MahmoodLab/CONCH repository. The package is not on PyPI, so the test suite cannot install it:
    ``scripts/check_conch.py`` compares this class with the package's own forward pass where it is installed."""

    def __init__(self, name: str, folder: Path, weights: Path, *, device="auto", precision="auto"):
        super().__init__(device=device, precision=precision)
        try:
            from conch.open_clip_custom import create_model_from_pretrained, get_tokenizer
        except ImportError as exc:
            raise UsageError(
                "CONCH's model code is in MahmoodLab's `conch` package, which is not installed.",
                fix="pip install git+https://github.com/Mahmoodlab/CONCH.git",
            ) from exc
        self.model, _ = create_model_from_pretrained("conch_ViT-B-16", checkpoint_path=str(weights))
        self.model.eval().to(self.device)
        self.tokenizer = get_tokenizer()
        self.name = name
        self.embedding_dim = 512
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        # CONCH's transform: torchvision Resize(448, bicubic) + CenterCrop(448) on PIL images, OpenAI mean/std
        self.prep = ImagePrep(
            size=448,
            crop=448,
            mean=(0.48145466, 0.4578275, 0.40821073),
            std=(0.26862954, 0.26130258, 0.27577711),
            crop_rounding="round",
        )
        self.native_mpp = 0.5
        self.weights_id = weights_digest(weights)

    def _image_features(self, x):
        return self.model.encode_image(x, proj_contrast=True, normalize=False)

    def _text_features(self, texts):
        return self.model.encode_text(conch_token_ids(self.tokenizer, texts).to(self.device))


def conch_token_ids(tokenizer: Any, texts: list[str]) -> Any:
    """CONCH's text input: 127 tokens (special tokens added, truncated, padded), then ``<pad>`` as the placeholder
    of the class token CoCa appends (context length 128). The same as the ``conch`` package's ``tokenize()``,
    which calls ``batch_encode_plus``, gone in transformers 5."""
    import torch.nn.functional as F

    ids = tokenizer(
        list(texts),
        max_length=127,
        add_special_tokens=True,
        return_token_type_ids=False,
        truncation=True,
        padding="max_length",
        return_tensors="pt",
    )["input_ids"]
    return F.pad(ids, (0, 1), value=tokenizer.pad_token_id)


def load_vl_model(
    model: str | os.PathLike[str] | VLModel | VLSpec,
    *,
    weights: str | os.PathLike[str] = "hub",
    device: Any = "auto",
    precision: str = "auto",
) -> VLModel:
    """A vision-language model by registry name (``eosin.vl.list_vl_models()``) or trained-model folder.

    Parameters
    ----------
    model
        A registry name (``plip``, ``quiltnet-b-32``, ``medsiglip-448``, ``conch``), the folder of a model
        trained with ``eosin train clip`` (it holds ``eosin-vl.json``), or a loaded :class:`VLModel` (returned).
    weights
        ``"hub"``: ``$EOSIN_HOME/models/<name>/``, then the Hugging Face cache, then the hub unless offline; or
        the model's folder (configuration, tokenizer and weights), or its weights file inside such a folder.
    device, precision
        See :mod:`eosin._device`; the text tower always runs in float32.

    Raises
    ------
    WeightsUnavailableError
        The folder cannot be found offline, or lacks its configuration or tokenizer.
    WeightsMismatchError
        The weights do not fit the configuration.
    """
    if isinstance(model, VLModel):
        return model
    from eosin.vl._registry import list_vl_models

    if not isinstance(model, VLSpec) and str(model).lower() not in list_vl_models():
        path = Path(model).expanduser()
        if (path / LOCAL_CONFIG).is_file():
            from eosin.vl._local import load_local

            return load_local(path, device=device, precision=precision)
        if path.is_dir() or str(model).endswith((os.sep, "/")):
            raise UsageError(
                f"this folder holds no {LOCAL_CONFIG}: it is not a model trained with `eosin train clip`.",
                path=path,
                fix="give a registered model name with --weights FOLDER, or the folder `eosin train clip` wrote",
            )
    spec = get_vl_spec(model)
    from eosin.models import get_spec, resolve_folder, resolve_weights

    enc = get_spec(spec.name)
    folder = resolve_folder(enc, weights)
    file = Path(weights) if not isinstance(weights, str) or weights != "hub" else None
    weights_file = file if file is not None and file.is_file() else resolve_weights(enc, folder)
    if spec.backend in ("hf_clip", "hf_siglip"):
        return _HFModel(
            spec.name,
            folder,
            weights_file,
            siglip=spec.backend == "hf_siglip",
            device=device,
            precision=precision,
        )
    if spec.backend == "open_clip":
        return _OpenClipModel(
            spec.name, folder, weights_file, arch=spec.open_clip_arch, device=device, precision=precision
        )
    return _ConchModel(spec.name, folder, weights_file, device=device, precision=precision)
