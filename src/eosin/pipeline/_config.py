"""The run configuration of ``eosin run``: typed dataclasses, read from YAML and validated key by key.

Every key has the default of the matching CLI option; an unknown key is refused with close matches, a bad value
with the key, the value and the fix. Paths in a file are relative to the file's folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eosin.errors import ConfigError

__all__ = [
    "ClassifyConfig",
    "EmbedConfig",
    "MILConfig",
    "QCConfig",
    "RunConfig",
    "SegmentConfig",
    "StainConfig",
    "TilesConfig",
    "TissueConfig",
    "config_from_dict",
    "config_to_dict",
    "default_config_text",
    "load_config",
]


def _opt(default: Any, help: str, **rules: Any) -> Any:
    """A field with its default, its help (the comment of ``--print-config``) and validation rules."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


@dataclass
class TissueConfig:
    """Tissue detection (``eosin tissue``)."""

    mpp: float = _opt(8.0, "resolution of the tissue masks, µm/px", type=float, gt=0)


@dataclass
class QCConfig:
    """Quality control (``eosin qc``): artefact masks and per-tile flags, pictures in OUT/qc/<slide>/."""

    enabled: bool = _opt(True, "run QC (the report shows its metrics)", type=bool)
    blur_threshold: float = _opt(
        8.0, "tiles whose focus score is below this are flagged blurry", type=float, min=0
    )
    min_fraction: float = _opt(
        0.25, "a tile is flagged when this share of it is an artefact", type=float, min=0, max=1
    )


@dataclass
class TilesConfig:
    """The tile grid (``eosin tile``)."""

    mpp: float = _opt(0.5, "tile resolution, µm/px", type=float, gt=0)
    size: int = _opt(256, "tile side in pixels", type=int, min=16)
    overlap: int = _opt(0, "pixels shared by neighbouring tiles", type=int, min=0)
    min_tissue: float = _opt(0.5, "keep tiles with at least this tissue fraction", type=float, min=0, max=1)


@dataclass
class StainConfig:
    """Stain normalisation of the tiles before the encoder (``eosin embed --stain``)."""

    method: str | None = _opt(
        None,
        "null (none), reinhard, macenko or vahadane",
        type=str,
        choices=["reinhard", "macenko", "vahadane"],
    )
    target: str | None = _opt(
        None, "target image the normaliser is fitted to (with method)", type=str, path=True
    )


@dataclass
class EmbedConfig:
    """Tile embeddings (``eosin embed``); needed by the MIL stage, whose encoder is used when this is null."""

    encoder: str | None = _opt(
        None, "registry name (eosin models list); null: the MIL model's, or no embedding", type=str
    )
    weights: str = _opt("hub", "hub, a weights file or folder, or none (random)", type=str)
    batch_size: int | None = _opt(
        None, "tiles per forward pass (null: 64 on a CPU, 256 on CUDA)", type=int, min=1, nullable=True
    )
    dtype: str = _opt(
        "float16", "stored features: float16 or float32", type=str, choices=["float16", "float32"]
    )
    runtime: str = _opt("auto", "auto, torch or onnx", type=str, choices=["auto", "torch", "onnx"])


@dataclass
class ClassifyConfig:
    """Tile predictions with a tile classifier (``eosin predict --model``), heatmaps per class."""

    model: str | None = _opt(
        None, "checkpoint folder of eosin train tiles; null: no tile predictions", type=str, path=True
    )
    batch_size: int = _opt(64, "tiles per forward pass", type=int, min=1)


@dataclass
class MILConfig:
    """Slide predictions with a MIL aggregator (``eosin predict --model`` on eosin train mil's model/)."""

    model: str | None = _opt(
        None, "model folder of eosin train mil (OUT/model); null: no slide predictions", type=str, path=True
    )


@dataclass
class SegmentConfig:
    """Slide segmentation (``eosin segment``): masks, instances, GeoJSON in OUT/<slide>/segmentation/."""

    model: str | None = _opt(
        None, "checkpoint folder of eosin train seg; null: no segmentation", type=str, path=True
    )
    mpp: float | None = _opt(None, "resolution of the map (null: the model's training mpp)", type=float, gt=0)
    tile_size: int = _opt(512, "window side in pixels", type=int, min=32)
    overlap: float = _opt(0.25, "window overlap: a fraction (< 1) or pixels", type=float, min=0)
    min_tissue: float = _opt(0.01, "windows with less tissue are skipped", type=float, min=0, max=1)
    batch_size: int = _opt(8, "windows per forward pass", type=int, min=1)
    instance_method: str = _opt(
        "auto",
        "auto, components, distance or boundary",
        type=str,
        choices=["auto", "components", "distance", "boundary"],
    )
    min_size: int = _opt(10, "smallest object kept, in pixels", type=int, min=0)
    seed_threshold: float | None = _opt(
        None,
        "interior probability that seeds an object (null: the model's, chosen on validation images, else 0.5)",
        type=float,
        gt=0,
        max=1,
    )
    tta: bool = _opt(False, "average each window over its four flips (4x the compute)", type=bool)


@dataclass
class RunConfig:
    """A whole run: slides in; stores, pictures, predictions and an HTML report out (``eosin run``)."""

    slides: list[str] = _opt([], "slide files or folders of slides (required)", type=list, path=True)
    out: str = _opt(
        "eosin-run", "output folder: <slide>/store.zarr, pictures, CSVs, report.html", type=str, path=True
    )
    labels: str | None = _opt(
        None,
        "CSV slide_id,label[,patient_id]: the truth, so the CSVs go to eosin evaluate classification",
        type=str,
        path=True,
    )
    slide_mpp: float | None = _opt(None, "µm/px for slides that record no plausible mpp", type=float, gt=0)
    force_slide_mpp: bool = _opt(False, "apply slide_mpp to every slide", type=bool)
    backend: str | None = _opt(None, "reader: openslide, tiffslide, dicom, image (null: automatic)", type=str)
    workers: int | None = _opt(
        None, "slides in parallel for tissue/QC/tiles (null: one per CPU; 0: in-process)", type=int, min=0
    )
    scheduler: str | None = _opt(
        None, "null: local; 'local' or tcp://host:8786: every per-slide stage on Dask", type=str
    )
    device: str = _opt("auto", "auto, cpu, cuda, cuda:1, mps", type=str)
    precision: str = _opt(
        "auto", "auto, fp32, fp16 or bf16", type=str, choices=["auto", "fp32", "fp16", "bf16"]
    )
    tissue: TissueConfig = field(default_factory=TissueConfig, metadata={"help": TissueConfig.__doc__})
    qc: QCConfig = field(default_factory=QCConfig, metadata={"help": QCConfig.__doc__})
    tiles: TilesConfig = field(default_factory=TilesConfig, metadata={"help": TilesConfig.__doc__})
    stain: StainConfig = field(default_factory=StainConfig, metadata={"help": StainConfig.__doc__})
    embed: EmbedConfig = field(default_factory=EmbedConfig, metadata={"help": EmbedConfig.__doc__})
    classify: ClassifyConfig = field(
        default_factory=ClassifyConfig, metadata={"help": ClassifyConfig.__doc__}
    )
    mil: MILConfig = field(default_factory=MILConfig, metadata={"help": MILConfig.__doc__})
    segment: SegmentConfig = field(default_factory=SegmentConfig, metadata={"help": SegmentConfig.__doc__})

    def __post_init__(self) -> None:
        if (self.stain.method is None) != (self.stain.target is None):
            raise ConfigError(
                f"stain.method ({self.stain.method!r}) and stain.target ({self.stain.target!r}) go together.",
                fix="set both (e.g. method: macenko, target: target.png) or neither",
            )
        if self.tiles.overlap >= self.tiles.size:
            raise ConfigError(
                f"tiles.overlap ({self.tiles.overlap}) must be smaller than tiles.size ({self.tiles.size}).",
                fix="lower tiles.overlap",
            )
        if self.force_slide_mpp and self.slide_mpp is None:
            raise ConfigError("force_slide_mpp needs slide_mpp.", fix="e.g. slide_mpp: 0.25")
        if self.scheduler not in (None, "local") and "://" not in str(self.scheduler):
            raise ConfigError(
                f"scheduler {self.scheduler!r} is neither null, 'local' nor an address.",
                fix="e.g. scheduler: tcp://host:8786",
            )


def _section_types() -> dict[str, type]:
    return {
        f.name: f.default_factory
        for f in dataclasses.fields(RunConfig)
        if dataclasses.is_dataclass(f.default_factory)
    }


def _check(key: str, value: Any, meta: dict[str, Any], base: Path | None) -> Any:
    kind = meta.get("type")
    if value is None:
        if (
            key in ("slides", "out")
            or kind is bool
            or (kind is int and key.endswith("size") and not meta.get("nullable"))
        ):
            raise ConfigError(
                f"{key} may not be null.", fix=f"give {key} a value, or remove it for the default"
            )
        return None
    if kind is list:
        value = [value] if isinstance(value, (str, os.PathLike)) else value
        if not isinstance(value, list) or not all(isinstance(v, (str, os.PathLike)) for v in value):
            raise ConfigError(
                f"{key} must be a path or a list of paths, not {value!r}.", fix=f"e.g. {key}: slides/"
            )
        return [_path(str(v), base) for v in value]
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {value!r}.", fix=f"{key}: true")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be a whole number, not {value!r}.", fix=f"e.g. {key}: 1")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, not {value!r}.", fix=f"e.g. {key}: 0.5")
        value = float(value)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key} must be text, not {value!r}.", fix=f'quote it: {key}: "..."')
        value = str(value)
    if "gt" in meta and not value > meta["gt"]:
        raise ConfigError(
            f"{key} must be above {meta['gt']}, not {value!r}.", fix=f"give {key} a larger value"
        )
    if "min" in meta and value < meta["min"]:
        raise ConfigError(
            f"{key} must be at least {meta['min']}, not {value!r}.", fix=f"give {key} a larger value"
        )
    if "max" in meta and value > meta["max"]:
        raise ConfigError(
            f"{key} must be at most {meta['max']}, not {value!r}.", fix=f"give {key} a smaller value"
        )
    if "choices" in meta and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), meta["choices"], n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{key} is {value!r}, not one of {', '.join(meta['choices'])}.{hint}",
            fix=f"e.g. {key}: {close[0] if close else meta['choices'][0]}",
        )
    if meta.get("path") and kind is str and key != "embed.weights":
        value = _path(value, base)
    return value


def _path(value: str, base: Path | None) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() or base is None else base / p)


def _unknown(key: str, choices: list[str]) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    where = f" in {key.rsplit('.', 1)[0]}" if "." in key else ""
    hint = (" Did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""
    return ConfigError(
        f"unknown key {key!r}{where}.{hint} Valid keys: {', '.join(choices)}.",
        fix="correct or remove it (eosin run --print-config shows every key)",
    )


def _build(cls: type, data: Any, prefix: str, base: Path | None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{prefix or 'the configuration'} must be a mapping of keys, not {data!r}.",
            fix="write key: value lines (eosin run --print-config)",
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            raise _unknown(full, list(fields))
        f = fields[key]
        if dataclasses.is_dataclass(f.default_factory):
            kwargs[key] = _build(f.default_factory, value or {}, f"{full}.", base)
        else:
            kwargs[key] = _check(full, value, dict(f.metadata), base)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], *, base: str | os.PathLike[str] | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from a mapping (relative paths are taken from ``base``, when given)."""
    config = _build(RunConfig, data or {}, "", None if base is None else Path(base))
    if not config.slides:
        raise ConfigError(
            "slides is empty: there is nothing to run on.", fix="slides: SLIDES/ (a folder or files)"
        )
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The configuration as plain data (what ``run.json`` records)."""
    return dataclasses.asdict(config)


def load_config(
    source: str | os.PathLike[str] | dict[str, Any], *, overrides: list[str] | None = None
) -> RunConfig:
    """Read a run configuration: a YAML file, a shipped recipe name (:func:`list_recipes`) or a mapping.

    ``overrides`` are ``key=value`` strings (``tiles.mpp=1``; the value is parsed as YAML) applied on top.
    """
    import yaml

    from eosin.pipeline._recipes import RECIPES, recipe_text

    base: Path | None = None
    if isinstance(source, dict):
        data = dict(source)
    else:
        path = Path(source)
        if not path.exists() and str(source) in RECIPES:
            text, base = recipe_text(str(source)), Path.cwd()
        elif not path.is_file():
            from eosin.errors import UnknownNameError

            raise UnknownNameError(
                "configuration file or recipe",
                str(source),
                RECIPES,
                fix="name a YAML file, or a recipe (eosin run --print-config RECIPE shows it)",
            )
        else:
            text, base = path.read_text(encoding="utf-8"), path.resolve().parent
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"not valid YAML ({exc}).".replace("\n", " "),
                path=source,
                fix="check the indentation and quoting near the line named",
            ) from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value.", fix="e.g. --set tiles.mpp=1")
        value = yaml.safe_load(raw) if raw else None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section.")
        node[parts[-1]] = value
        base = base or Path.cwd()
    return config_from_dict(data, base=base or Path.cwd())


def default_config_text(recipe: str | None = None) -> str:
    """A commented YAML configuration with every key at its default (or a shipped recipe's text)."""
    if recipe is not None:
        from eosin.pipeline._recipes import recipe_text

        return recipe_text(recipe)
    lines = [
        "# eosin run configuration: every key with its default (the CLI's). Paths are relative to this file.",
        "# Run it with: eosin run THIS.yaml   (docs/pipeline.md)",
    ]
    config = RunConfig(slides=["slides/"])
    for f in dataclasses.fields(RunConfig):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            lines += ["", f"# {f.metadata['help']}", f"{f.name}:"]
            for sub in dataclasses.fields(value):
                lines.append(_line(sub.name, getattr(value, sub.name), sub.metadata["help"], "  "))
        else:
            lines.append(_line(f.name, value, f.metadata["help"], ""))
    return "\n".join(lines) + "\n"


def _line(key: str, value: Any, help: str, indent: str) -> str:
    import yaml

    text = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip()[1:-1]
    return f"{indent}{text:<30} # {help}"
