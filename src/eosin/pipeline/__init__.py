"""The pipeline layer: a whole recipe over a folder of slides, from one configuration, in one output folder.

>>> import eosin.pipeline as pipeline
>>> print(pipeline.default_config_text())            # every key with its default  # doctest: +SKIP
>>> config = pipeline.load_config("run.yaml", overrides=["tiles.mpp=1"])  # doctest: +SKIP
>>> summary = pipeline.run(config)                     # the same as: eosin run run.yaml  # doctest: +SKIP
>>> pipeline.predict_slides(stores, "mil/model", out="pred/")   # eosin predict --model mil/model  # doctest: +SKIP

Stages run in order (doctor, tissue, QC, tiles, embed, tile predictions, slide predictions, segmentation, report);
each skips what is stored under the same cache key, so a re-run is cheap and a killed run resumes
(docs/pipeline.md). Names load on first use: importing this package loads neither numpy nor PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eosin._lazy import lazy_getattr

_LAZY = {
    "RunConfig": "_config",
    "TissueConfig": "_config",
    "QCConfig": "_config",
    "TilesConfig": "_config",
    "StainConfig": "_config",
    "EmbedConfig": "_config",
    "ClassifyConfig": "_config",
    "MILConfig": "_config",
    "SegmentConfig": "_config",
    "load_config": "_config",
    "config_from_dict": "_config",
    "config_to_dict": "_config",
    "default_config_text": "_config",
    "list_recipes": "_recipes",
    "recipe_text": "_recipes",
    "run": "_run",
    "predict_slides": "_slide_predict",
    "is_aggregator": "_slide_predict",
    "read_labels": "_slide_predict",
    "PipelineJob": "_stages",
    "doctor_stage": "_stages",
    "tissue_stage": "_stages",
    "qc_stage": "_stages",
    "tiles_stage": "_stages",
    "embed_stage": "_stages",
    "classify_stage": "_stages",
    "segment_stage": "_stages",
    "write_run_report": "_report",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return list(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from eosin.pipeline._config import (
        ClassifyConfig,
        EmbedConfig,
        MILConfig,
        QCConfig,
        RunConfig,
        SegmentConfig,
        StainConfig,
        TilesConfig,
        TissueConfig,
        config_from_dict,
        config_to_dict,
        default_config_text,
        load_config,
    )
    from eosin.pipeline._recipes import list_recipes, recipe_text
    from eosin.pipeline._report import write_run_report
    from eosin.pipeline._run import run
    from eosin.pipeline._slide_predict import is_aggregator, predict_slides, read_labels
    from eosin.pipeline._stages import (
        PipelineJob,
        classify_stage,
        doctor_stage,
        embed_stage,
        qc_stage,
        segment_stage,
        tiles_stage,
        tissue_stage,
    )
