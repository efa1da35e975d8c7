"""Quality control: artefact detectors on thumbnails and tiles, per-tile flags, and the cohort report.

>>> from eosin.qc import focus_score, coverslip_edges, dark_regions  # doctest: +SKIP
>>> scores = focus_score(batch.images)  # (n,) higher is sharper; < BLUR_THRESHOLD is blurry  # doctest: +SKIP
"""

from eosin.qc._agreement import mask_agreement
from eosin.qc._artefacts import coverslip_edges, dark_regions, optical_density, stain_masks, stain_stats
from eosin.qc._flags import FLAGS, TileQC, tile_qc
from eosin.qc._focus import BLUR_THRESHOLD, focus_score
from eosin.qc._learned import ARTEFACT_CLASS, artefact_map, load_artefact_model, patch_scorer
from eosin.qc._stage import qc_image, qc_stage
from eosin.qc._report import write_report

__all__ = [
    "ARTEFACT_CLASS",
    "BLUR_THRESHOLD",
    "FLAGS",
    "TileQC",
    "artefact_map",
    "coverslip_edges",
    "dark_regions",
    "focus_score",
    "load_artefact_model",
    "mask_agreement",
    "optical_density",
    "patch_scorer",
    "qc_image",
    "qc_stage",
    "stain_masks",
    "stain_stats",
    "tile_qc",
    "write_report",
]
