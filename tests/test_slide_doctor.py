"""The slide doctor's findings on synthetic slides (one problem each), where no shared slide has the problem."""

from __future__ import annotations

import numpy as np
import pytest

from eosin.slide import Level, Slide, diagnose


class _Blank(Slide):
    def _read_level(self, level, x, y, width, height):
        return np.full((height, width, 3), 200, np.uint8)


def _slide(levels, *, mpp=(0.25, 0.25), objective=40.0, channels=("R", "G", "B")):
    return _Blank(
        path="synthetic.tiff",
        format="generic-tiff",
        backend="test",
        levels=[Level(*lv) for lv in levels],
        mpp_x=mpp[0],
        mpp_y=mpp[1],
        mpp_source="slide" if mpp[0] else None,
        objective_power=objective,
        channel_names=channels,
    )


def _codes(slide):
    return [p["code"] for p in diagnose(slide, probe_pixels=True)["problems"]]


PYRAMID = [(40000, 30000, 1.0), (10000, 7500, 4.0), (2500, 1875, 16.0)]


def test_a_consistent_40x_pyramid_has_no_problems():
    assert _codes(_slide(PYRAMID)) == []


@pytest.mark.parametrize(
    ("kwargs", "levels", "code"),
    [
        ({"mpp": (0.25, 0.5)}, PYRAMID, "anisotropic-mpp"),
        ({"mpp": (0.5, 0.5)}, PYRAMID, "mpp-objective-mismatch"),  # 20x resolution recorded as 40x
        ({"mpp": (None, None)}, PYRAMID, "missing-mpp"),
        ({"mpp": (896.0, 896.0), "objective": None}, PYRAMID, "implausible-mpp"),
        ({}, [(40000, 30000, 1.0)], "non-pyramidal"),
        ({}, [(40000, 30000, 1.0), (10000, 5000, 4.0)], "level-downsample-mismatch"),
        ({"channels": ("DAPI", "CD8")}, PYRAMID, "fluorescence"),
    ],
)
def test_each_problem_is_found(kwargs, levels, code):
    assert _codes(_slide(levels, **kwargs)) == [code]


def test_a_small_single_level_image_is_not_flagged_non_pyramidal():
    assert _codes(_slide([(5600, 1000, 1.0)], mpp=(0.5, 0.5), objective=20.0)) == []
