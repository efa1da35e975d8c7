"""Stain normalizers and HED augmentation on the real reference images in ../shared/data/stain."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.color import hed2rgb, rgb2hed, rgb2lab

from conftest import DATA, require
from eosin.errors import NotFittedError, UnknownNameError, UsageError
from eosin.stain import (
    HEDJitter,
    MacenkoNormalizer,
    ReinhardNormalizer,
    VahadaneNormalizer,
    get_normalizer,
    glass_mask,
    list_normalizers,
    macenko_stains,
    nn_lasso2,
    vahadane_stains,
)
from eosin.stain._common import od_lut

STAIN = DATA / "stain"
METHODS = ["reinhard", "macenko", "vahadane"]


def _read(name: str) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(require(STAIN / name)), cv2.IMREAD_COLOR)[..., ::-1])


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return _read("torchstain-source.png")


@pytest.fixture(scope="module")
def target() -> np.ndarray:
    return _read("torchstain-target.png")


@pytest.fixture(scope="module")
def tiles(source) -> np.ndarray:
    """Eight 128-px tiles of the source image."""
    return np.stack([source[r : r + 128, c : c + 128] for r in (0, 150, 300) for c in (0, 200, 400)][:8])


@pytest.fixture(scope="module")
def fitted(target) -> dict:
    return {name: get_normalizer(name).fit(target) for name in METHODS}


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(axis=1), -1, 1)))


# --- registry and contract ---------------------------------------------------------------------------------


def test_registry_names_and_unknown_name():
    assert list_normalizers() == ["macenko", "reinhard", "vahadane"]
    assert isinstance(get_normalizer("Macenko", alpha=2.0), MacenkoNormalizer)
    assert get_normalizer("macenko", alpha=2.0).alpha == 2.0
    with pytest.raises(UnknownNameError, match="Did you mean 'macenko'") as info:
        get_normalizer("macenco")
    assert info.value.exit_code == 2
    with pytest.raises(UsageError, match="no parameter"):
        get_normalizer("reinhard", alpha=1.0)
    ready = ReinhardNormalizer()
    assert get_normalizer(ready, mask_background=False) is ready and ready.mask_background is False


@pytest.mark.parametrize("name", METHODS)
def test_transform_before_fit_raises(name, source):
    with pytest.raises(NotFittedError, match="fit"):
        get_normalizer(name).transform(source)


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8), np.zeros(5, np.uint8)]
)
def test_bad_input_is_a_usage_error(bad, fitted):
    with pytest.raises(UsageError):
        fitted["macenko"].transform(bad)
    with pytest.raises(UsageError):
        ReinhardNormalizer().fit(bad)


@pytest.mark.parametrize("name", METHODS)
def test_fit_returns_self_and_shapes_are_kept(name, target, source, tiles):
    norm = get_normalizer(name)
    assert norm.fit(target) is norm
    assert set(norm.get_params()) == set(type(norm)().get_params())
    one = norm.transform(source)
    assert one.shape == source.shape and one.dtype == np.uint8
    batch = norm.transform(tiles)
    assert batch.shape == tiles.shape and batch.dtype == np.uint8


@pytest.mark.parametrize("name", METHODS)
def test_batch_equals_one_by_one(name, fitted, tiles):
    norm = fitted[name]
    batch = norm.transform(tiles)
    for i in (0, 3, 7):
        np.testing.assert_array_equal(batch[i], norm.transform(tiles[i]))


@pytest.mark.parametrize("name", METHODS)
def test_target_maps_to_itself(name, fitted, target):
    out = fitted[name].transform(target)
    diff = np.abs(out.astype(np.int16) - target)
    # Reinhard: the 8-bit LAB round trip; Macenko/Vahadane: OD off the H-E plane is dropped by the 2-stain model
    assert diff.mean() < {"reinhard": 1.0, "macenko": 4.0, "vahadane": 4.0}[name]


@pytest.mark.parametrize("name", METHODS)
def test_fit_on_a_list_of_tiles_pools_them(name, target):
    whole = get_normalizer(name).fit(target)
    halves = get_normalizer(name).fit([target[:220], target[220:]])
    if name == "reinhard":
        np.testing.assert_allclose(halves.means_, whole.means_, atol=1e-6)
    else:
        assert _angles(halves.stain_matrix_, whole.stain_matrix_).max() < 1.0


# --- what each method promises ---------------------------------------------------------------------------


def test_reinhard_matches_target_lab_statistics_on_tissue(fitted, source, target):
    out = fitted["reinhard"].transform(source)
    lab_out, lab_tgt = rgb2lab(out)[~glass_mask(source)], rgb2lab(target)[~glass_mask(target)]
    np.testing.assert_allclose(lab_out.mean(axis=0), lab_tgt.mean(axis=0), atol=1.5)
    np.testing.assert_allclose(lab_out.std(axis=0), lab_tgt.std(axis=0), atol=1.5)
    before = rgb2lab(source)[~glass_mask(source)].mean(axis=0)
    assert np.abs(before - lab_tgt.mean(axis=0)).max() > 5  # the test is not trivially true


@pytest.mark.parametrize(
    "image",
    [
        "torchstain-source.png",
        "torchstain-target.png",
        "tiatoolbox-target.png",
        "histoqc-template1.png",
        "histoqc-template3.png",
    ],
)
@pytest.mark.parametrize("name", ["macenko", "vahadane"])
def test_stain_vectors_are_unit_and_haematoxylin_first(name, image):
    norm = get_normalizer(name).fit(_read(image))
    h, e = norm.stain_matrix_
    np.testing.assert_allclose(np.linalg.norm(norm.stain_matrix_, axis=1), 1, atol=1e-5)
    assert (norm.stain_matrix_ >= 0).all()
    rgb_h, rgb_e = np.exp(-h), np.exp(-e)  # the colour of each stain alone
    assert rgb_h[2] - rgb_h[0] > rgb_e[2] - rgb_e[0]  # haematoxylin is the bluer one
    assert (norm.max_concentrations_ > 0).all()


@pytest.mark.parametrize("name", ["macenko", "vahadane"])
def test_output_carries_the_target_stains(name, fitted, source, target):
    out = fitted[name].transform(source)
    again = get_normalizer(name).fit(out)
    src = get_normalizer(name).fit(source)
    before = _angles(src.stain_matrix_, fitted[name].stain_matrix_).max()
    after = _angles(again.stain_matrix_, fitted[name].stain_matrix_).max()
    assert after < 3.0 and after < before / 3


@pytest.mark.parametrize("name", METHODS)
def test_glass_stays_white(name, target):
    image = _read("histoqc-template4.png")  # half glass
    glass = glass_mask(image)
    assert glass.mean() > 0.3
    out = get_normalizer(name).fit(target).transform(image)
    np.testing.assert_array_equal(out[glass], image[glass])  # left exactly as it was
    assert np.abs(out[~glass].astype(np.int16) - image[~glass]).mean() > 5  # while tissue changed
    tinted = get_normalizer(name, mask_background=False).fit(target).transform(image)[glass].astype(np.int16)
    assert np.abs(tinted - image[glass]).mean() > 2  # without the mask glass takes some colour


def test_macenko_stains_ignore_background_pixels(target):
    od = od_lut(240.0)[target.reshape(-1, 3)]
    tissue = od.min(axis=1) >= 0.15
    with_glass = np.concatenate([od[tissue], np.full((5000, 3), 0.01, np.float32)])
    np.testing.assert_allclose(
        macenko_stains(od[tissue]), MacenkoNormalizer().fit(target).stain_matrix_, atol=1e-4
    )
    assert (
        _angles(macenko_stains(with_glass), macenko_stains(od[tissue])).max() > 0.5
    )  # why glass is excluded


def _reinhard_reference(norm: ReinhardNormalizer, images: np.ndarray) -> np.ndarray:
    """Reinhard image by image as eosin first wrote it: cv2.meanStdDev over tissue, a 256-entry table per channel."""
    out = np.empty_like(images)
    t_mean = norm.means_ * [2.55, 1, 1] + [0, 128, 128]
    t_std = norm.stds_ * [2.55, 1, 1]
    for i, image in enumerate(images):
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        tissue = ~glass_mask(image)
        mean, std = cv2.meanStdDev(lab, mask=tissue.astype(np.uint8) if tissue.sum() >= 16 else None)
        table = (np.arange(256.0)[:, None] - mean[:, 0]) * (t_std / np.maximum(std[:, 0], 1e-6)) + t_mean
        table = np.clip(np.rint(table), 0, 255).astype(np.uint8)[:, None]
        out[i] = cv2.cvtColor(cv2.LUT(lab, table), cv2.COLOR_LAB2RGB)
        out[i][~tissue] = image[~tissue]
    return out


def test_reinhard_chunks_equal_the_image_by_image_reference(fitted, tiles, target):
    """Chunked conversions, exact sums instead of cv2.meanStdDev and cv2.transform instead of the table: the same
    pixels, in chunks of any size, also for a tile that is all glass."""
    batch = np.concatenate([tiles, np.full((1, *tiles.shape[1:]), 245, np.uint8)])
    expected = _reinhard_reference(fitted["reinhard"], batch)
    np.testing.assert_array_equal(fitted["reinhard"].transform(batch), expected)
    odd = ReinhardNormalizer().fit(target)
    odd._chunk_pixels = 3 * 128 * 128  # chunks of three tiles, the last one shorter
    np.testing.assert_array_equal(odd.transform(batch), expected)


def test_reinhard_code_map_falls_back_to_the_table_at_rounding_ties():
    from eosin.stain._reinhard import _RAMP, _map_codes

    lab = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    # image 1: codes + 0.499999999, which float32 arithmetic (cv2.transform's) makes a tie, rounded to even
    gain, mean, t_mean = (
        np.array([[1.37, 0.83, 1.11], [1.0, 1.0, 1.0]]),
        np.full((2, 3), 100.0),
        0.5 - 1e-9 + 100,
    )
    matrix = np.array([[1.0, 0, 0, t_mean - 100], [0, 1, 0, t_mean - 100], [0, 0, 1, t_mean - 100]])
    table = np.clip(np.rint((np.arange(256.0)[:, None, None] - mean) * gain + t_mean), 0, 255).astype(
        np.uint8
    )
    assert not np.array_equal(cv2.transform(_RAMP, matrix)[:, 0], table[:, 1])  # the fast map would be wrong
    out = np.empty_like(lab)
    _map_codes(lab, out, gain, mean, np.full(3, t_mean))
    for i in range(2):
        expected = np.stack([table[lab[i][..., c], i, c] for c in range(3)], axis=-1)
        np.testing.assert_array_equal(out[i], expected)


def test_macenko_percentile_is_numpys_bit_for_bit():
    from eosin.stain._macenko import _percentile

    rng = np.random.default_rng(0)
    for n in (1, 2, 17, 4096):
        values = rng.normal(size=(3, 2, n)).astype(np.float32)
        for q in (99, 1.0, 100, [1.0, 99.0], [0.0, 50.0, 100.0]):
            expected = np.percentile(values, q, axis=-1)
            got = _percentile(values, q)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)


def test_macenko_sample_is_an_even_stride_through_each_tiles_tissue(tiles):
    from eosin.stain._macenko import _tissue_pixels

    rgb = np.concatenate([tiles, np.full((1, *tiles.shape[1:]), 250, np.uint8)]).reshape(
        len(tiles) + 1, -1, 3
    )
    tissue = rgb.max(axis=2) <= 205
    (sample,) = _tissue_pixels(rgb, tissue, 1000)
    for i in range(len(rgb)):
        rows = np.flatnonzero(tissue[i]) if tissue[i].sum() >= 16 else np.arange(rgb.shape[1])
        np.testing.assert_array_equal(
            sample[i], rgb[i, rows[np.linspace(0, len(rows) - 1, 1000).astype(int)]]
        )
    every = _tissue_pixels(rgb, tissue, None)
    np.testing.assert_array_equal(every[0][0], rgb[0, tissue[0]])


def test_nn_lasso2_is_the_exact_nonnegative_lasso(fitted, source):
    sparse_encode = pytest.importorskip("sklearn.decomposition").sparse_encode
    od = od_lut(256.0)[source.reshape(-1, 3)[::97]]
    stains = fitted["vahadane"].stain_matrix_
    exact = sparse_encode(
        od.astype(np.float64),
        stains.astype(np.float64),
        algorithm="lasso_cd",
        alpha=0.1,
        positive=True,
        max_iter=10_000,
    )
    np.testing.assert_allclose(nn_lasso2(od, stains, 0.1), exact, atol=1e-4)
    assert (exact == 0).any()  # the sparsity term is active: the clipped cases are exercised


def _nnls_by_cases(od: np.ndarray, stains: np.ndarray, lam: float) -> np.ndarray:
    """The exact non-negative lasso as eosin first wrote it (float64): the unconstrained solution where both codes
    are positive, otherwise the better of the two one-stain solutions."""
    od, stains = od.astype(np.float64), stains.astype(np.float64)
    gram = stains @ stains.T
    p = od @ stains.T - lam
    both = p @ np.linalg.inv(gram).T
    alone = np.maximum(p, 0) / np.diag(gram)
    first = (
        alone[:, 0] * p[:, 0] >= alone[:, 1] * p[:, 1]
    )  # the one-stain solution lowering the objective most
    inside = (both > 0).all(axis=1)
    out = np.where(inside[:, None], both, 0.0)
    out[~inside & first, 0] = alone[~inside & first, 0]
    out[~inside & ~first, 1] = alone[~inside & ~first, 1]
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_nn_lasso2_closed_form_equals_the_case_by_case_solution(lam):
    rng = np.random.default_rng(0)
    od = rng.uniform(0, 3, (20_000, 3)).astype(np.float32)
    for stains in (
        _unit(rng.uniform(0, 1, (2, 3))),  # non-negative stains (the normalizer's case)
        _unit(np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])),  # Ruifrok's H and E
        _unit(np.array([[0.6, -0.2, -0.77], [0.3, 0.8, 0.5]])),  # a negative OD (TIAToolbox's eosin vector)
    ):
        np.testing.assert_allclose(nn_lasso2(od, stains, lam), _nnls_by_cases(od, stains, lam), atol=2e-4)


@pytest.mark.parametrize("name", ["torchstain-source.png", "stardist-histo.jpg", "histoqc-template4.png"])
def test_vahadane_fused_pixel_path_equals_the_exact_nnls(name, fitted):
    """The OpenCV pixel path (two 3x3 maps, minimum, clip, target's stains, exp) against the exact non-negative
    least squares by cases, rescaled and recomposed in float64."""
    norm = fitted["vahadane"]
    image = _read(name)
    tiles = np.stack([image[r : r + 128, c : c + 128] for r in (0, 128) for c in (0, 128)])
    rng = np.random.default_rng(1)
    stains = _unit(norm.stain_matrix_ + rng.uniform(0, 0.1, (len(tiles), 2, 3))).astype(np.float32)
    max_conc = rng.uniform(0.5, 3, (len(tiles), 2)).astype(np.float32)
    out = np.empty_like(tiles)
    glass = np.zeros(tiles.shape[:3], np.uint8)  # no glass kept: every pixel goes through the path
    norm._normalize(tiles, out, *norm._pixel_maps(stains, max_conc), glass)
    one_stain = []
    for i, tile in enumerate(tiles):
        conc = _nnls_by_cases(od_lut(256.0)[tile.reshape(-1, 3)], stains[i], 0.0)
        one_stain.append((conc == 0).any(axis=1))
        conc *= norm.max_concentrations_ / max_conc[i]
        expected = np.clip(np.rint(256 * np.exp(-conc @ norm.stain_matrix_)), 0, 255).reshape(tile.shape)
        diff = np.abs(out[i].astype(np.int16) - expected)
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # float32 against float64: rounding ties only
    assert 100 < np.sum(one_stain) < np.size(one_stain) - 100  # pixels inside and outside the stains' cone


def test_glass_mask_equals_opencv_hsv_on_every_colour():
    codes = np.arange(1 << 24, dtype=np.uint32)
    rgb = (
        np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1)
        .astype(np.uint8)
        .reshape(4096, 4096, 3)
    )
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    expected = (hsv[..., 1] <= int(0.12 * 255)) & (hsv[..., 2] >= 200)
    np.testing.assert_array_equal(glass_mask(rgb), expected)


@pytest.mark.parametrize("name", ["torchstain-source.png", "histox-norm-tile.jpg"])
def test_vahadane_momentum_reaches_the_plain_alternations_fixed_point(name):
    rgb = _read(name).reshape(-1, 3)
    od = od_lut(256.0)[rgb[~glass_mask(rgb) & (rgb.max(axis=1) < 255)][::7][:2048]]
    plain = vahadane_stains(od, momentum=0.0, tol=1e-7, n_iter=5000)
    assert _angles(vahadane_stains(od), plain).max() < 0.2


def test_vahadane_threads_chunks_and_glass_tiles_do_not_change_results(fitted, target, tiles):
    batch = np.concatenate([tiles, np.full((1, *tiles.shape[1:]), 245, np.uint8)])  # the last one all glass
    one = fitted["vahadane"].transform(batch)
    threaded = get_normalizer("vahadane", n_jobs=2).fit(target)
    threaded._chunk_pixels = 2 * 128 * 128  # chunks of two tiles
    np.testing.assert_array_equal(threaded.transform(batch), one)
    np.testing.assert_array_equal(one[-1], batch[-1])
    np.testing.assert_array_equal(one[0], fitted["vahadane"].transform(batch[0]))


def test_vahadane_keeps_haematoxylin_on_haematoxylin_where_tile_stains_are_far_from_the_targets():
    """Two BCSS tiles whose fitted vectors both lie nearer the target's eosin than its haematoxylin (the target's
    are 14 degrees apart): naming each tile's vectors by their best cosine match to the target's would paint the
    nuclei with the target's eosin (input/output haematoxylin correlation -0.15 and 0.08); the larger red OD
    names them right. The correlation is of skimage's fixed Ruifrok deconvolution, which knows no naming."""
    image = _read_any(require(DATA / "segmentation" / "bcss" / "images" / "1008.jpg"))
    tiles = np.stack([image[256:512, 1024:1280], image[0:256, 1536:1792]])
    out = VahadaneNormalizer().fit(_read("tiatoolbox-target.png")).transform(tiles)
    for tile, normalized in zip(tiles, out):
        tissue = ~glass_mask(tile)
        h_in, h_out = rgb2hed(tile)[..., 0][tissue], rgb2hed(normalized)[..., 0][tissue]
        assert np.corrcoef(h_in, h_out)[0, 1] > 0.5


def test_vahadane_tiny_images(fitted):
    for shape in [(1, 1, 3), (2, 1, 1, 3), (3, 3, 3), (2, 5, 5, 3)]:
        image = np.random.default_rng(0).integers(0, 200, shape).astype(np.uint8)
        assert fitted["vahadane"].transform(image).shape == shape


# --- HED jitter ----------------------------------------------------------------------------------------------


def _crc_tiles() -> np.ndarray:
    """The 32 real H&E tiles of CRC-VAL-HE-7K (224 px)."""
    folder = require(DATA / "tiles" / "crc-val-he-7k")
    return np.stack([cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in sorted(folder.glob("*.png"))])


@pytest.mark.parametrize("image", ["histoqc-template1.png", "tiatoolbox-target.png"])
def test_hed_zero_jitter_is_exactly_the_identity(image):
    # rgb2hed clips negative stain amounts; a jitter that did so changed real tiles by 9-18 grey levels at zero strength
    rgb = _read(image)
    np.testing.assert_array_equal(HEDJitter(sigma=0, bias=0).transform(rgb), rgb)
    tiles = _crc_tiles()
    np.testing.assert_array_equal(HEDJitter(sigma=0, bias=0).transform(tiles), tiles)
    np.testing.assert_array_equal(HEDJitter(sigma=1e-9, bias=1e-9, seed=0).transform(tiles), tiles)


def test_hed_jitter_is_centred_on_the_input():
    tiles = _crc_tiles()
    jitter = HEDJitter(sigma=0.05, bias=0.01, seed=3)
    draws = np.stack([jitter.transform(tiles) for _ in range(40)]).astype(np.float64)
    one_draw = np.abs(draws[0] - tiles).mean()
    assert one_draw > 5  # each draw does change the colours...
    shift = (draws.mean(axis=0) - tiles).mean(axis=(0, 1, 2))
    assert np.abs(shift).max() < 1.0, shift  # ...but the mean over draws stays on the input, per channel


def test_hed_jitter_matches_unclipped_deconvolution_with_the_same_draws(source):
    from skimage.color import hed_from_rgb, rgb_from_hed

    out = HEDJitter(sigma=0.2, bias=0.02, seed=7).transform(source)
    rng = np.random.default_rng(7)
    scale, shift = rng.uniform(0.8, 1.2, (1, 3)), rng.uniform(-0.02, 0.02, (1, 3))
    # scikit-image's rgb2hed / hed2rgb without the clip of negative stains, in float64
    log_adjust = np.log(1e-6)
    hed = (np.log(np.maximum(source / 255.0, 1e-6)) / log_adjust) @ hed_from_rgb
    expected = np.clip(np.exp((hed * scale[0] + shift[0]) * log_adjust @ rgb_from_hed), 0, 1)
    assert np.abs(out - np.rint(expected * 255)).max() <= 1
    # where no stain estimate is negative, that is exactly skimage's hed2rgb(a * rgb2hed(x) + b)
    positive = (hed >= 0).all(axis=-1)
    skimage_out = np.rint(hed2rgb(rgb2hed(source) * scale[0] + shift[0]) * 255)
    assert np.abs(out - skimage_out)[positive].max() <= 1


def test_hed_jitter_is_reproducible_and_per_image(tiles):
    a = HEDJitter(sigma=0.1, bias=0.01, seed=1).transform(tiles)
    b = HEDJitter(sigma=0.1, bias=0.01, seed=np.random.default_rng(1)).transform(tiles)
    np.testing.assert_array_equal(a, b)
    jitter = HEDJitter(sigma=0.1, bias=0.01, seed=1)
    first, second = jitter.transform(tiles), jitter.transform(tiles)
    assert not np.array_equal(first, second)  # new draws per call
    same_tiles = jitter.transform(np.stack([tiles[0], tiles[0]]))
    assert not np.array_equal(same_tiles[0], same_tiles[1])  # and per image
    with pytest.raises(UsageError):
        HEDJitter(sigma=-1)


# --- CLI -----------------------------------------------------------------------------------------------------


def test_cli_writes_normalized_pngs(tmp_path, capsys):
    from eosin.cli._main import main

    images = [require(STAIN / "torchstain-source.png"), require(STAIN / "stardist-histo.jpg")]
    code = main(
        [
            "stain",
            *map(str, images),
            "--method",
            "reinhard",
            "--target",
            str(STAIN / "torchstain-target.png"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    for image in images:
        written = _read_any(tmp_path / f"{image.stem}.png")
        original = _read_any(image)
        assert written.shape == original.shape
        assert np.abs(written.astype(np.int16) - original).mean() > 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stardist-histo.png",
        "torchstain-source.png",
    ]  # no temp files


def test_cli_reports_bad_inputs_and_usage_errors(tmp_path, capsys):
    from eosin.cli._main import main

    good, bad = require(STAIN / "stardist-histo.jpg"), require(DATA / "slides" / "broken-not-a-slide.svs")
    target = str(STAIN / "torchstain-target.png")
    assert main(["stain", str(good), str(bad), "--target", target, "--out", str(tmp_path)]) == 1
    assert (tmp_path / "stardist-histo.png").exists()
    assert "broken-not-a-slide.svs" in capsys.readouterr().err
    assert main(["stain", str(good), "--method", "macenco", "--target", target, "--out", str(tmp_path)]) == 2
    assert "Did you mean 'macenko'" in capsys.readouterr().err
    assert main(["stain", str(good), "--target", str(bad), "--out", str(tmp_path)]) == 2


def _read_any(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


def test_vahadane_per_batch_estimate(target):
    tiles = np.stack([target[r : r + 128, c : c + 128] for r in (0, 150, 300) for c in (0, 200, 400)])
    per_batch = VahadaneNormalizer(per_image=False).fit(target)
    out = per_batch.transform(tiles)
    assert np.abs(out.astype(np.int16) - tiles).mean() < 6  # tiles of the target itself: near identity
    # one estimate for the batch: a tile's result depends on its batch, unlike the per-image default
    assert not np.array_equal(out[0], per_batch.transform(tiles[0]))
