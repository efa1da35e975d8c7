"""Tissue, pen marks and cross-sections on a low-resolution image of a slide (see docs/tissue.md)."""

from eosin.tissue._detect import TissueMasks, detect_tissue

__all__ = ["TissueMasks", "detect_tissue"]
