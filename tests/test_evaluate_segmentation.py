"""Segmentation metrics: hand-made cases worked out in comments, properties, a loop-by-loop transcription of the
official definitions as an oracle on random instance maps, the mask readers, the CLI, and real GlaS / MoNuSeg."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.spatial.distance import directed_hausdorff

from conftest import DATA, require
from eosin.cli._main import main
from eosin.errors import CorruptSlideError, UnsupportedFormatError, UsageError
from eosin.evaluate import evaluate_segmentation_dirs, segmentation_metrics
from eosin.evaluate._segmentation import (
    aji,
    label_instances,
    object_counts,
    object_dice,
    object_f1,
    object_hausdorff,
    panoptic_quality,
    pixel_dice,
    pixel_iou,
    read_aperio_xml,
    read_mask,
)

GLAS = DATA / "segmentation" / "glas"
MONUSEG = DATA / "segmentation" / "monuseg-train"
HEADLINE = ("pixel_dice", "pixel_iou", "object_f1", "object_dice", "object_hausdorff", "aji", "pq")


# ---------------------------------------------------------------- hand-made cases


def test_pixel_dice_iou_by_hand():
    truth = np.array([[1, 1, 1, 0, 0, 0]])
    pred = np.array([[0, 7, 7, 7, 0, 0]])  # labels do not matter, only foreground
    # |T| = 3, |P| = 3, |T∩P| = 2: Dice = 4/6, IoU = 2/4
    assert pixel_dice(truth, pred) == pytest.approx(2 / 3)
    assert pixel_iou(truth, pred) == pytest.approx(0.5)
    empty = np.zeros_like(truth)
    assert pixel_dice(empty, empty) == 1.0 and pixel_iou(empty, empty) == 1.0  # documented convention
    assert pixel_dice(truth, empty) == 0.0 and pixel_iou(empty, pred) == 0.0


def test_object_f1_uses_the_ground_truth_area_as_the_official_code():
    # F1score.m: a segmented object is a TP when its overlap with its most-overlapped GT object covers more than
    # half of that GT object's area.
    truth = np.zeros((1, 40), int)
    truth[0, 0:10] = 1  # G1: 10 px
    truth[0, 20:30] = 2  # G2: 10 px
    pred = np.zeros((1, 40), int)
    pred[0, 2:6] = 1  # S1: 4 px all inside G1 -> covers 40% of G1 -> FP (though 100% of S1 is in G1)
    pred[0, 24:40] = 2  # S2: 16 px, 6 in G2 -> covers 60% of G2 -> TP (though only 6/16 of S2 is in G2)
    assert object_counts(truth, pred) == (1, 1, 1)  # TP, FP, FN
    assert object_f1(truth, pred) == pytest.approx(0.5)  # 2·1 / (2·1 + 1 + 1)
    pred[0, 30:40] = 0  # S2 now 6 px, all in G2: still 60% of G2
    pred[0, 0:10] = 1  # S1 = G1
    assert object_f1(truth, pred) == 1.0
    # exactly half is not more than half
    pred[0, 24:30] = 0
    pred[0, 25:30] = 2
    assert object_counts(truth, pred) == (1, 1, 1)


def test_object_f1_one_to_one_and_ties():
    # S1 covers half of G1 (not more) -> FP; S2 overlaps G1 and G2 by 1 px each: the tie goes to the lowest label,
    # G1, covered 1/4 -> FP (had it gone to G2, 1 px of 1 px, it would be a TP).
    truth = np.array([[1, 1, 1, 1, 0, 2]])
    assert object_counts(truth, np.array([[1, 1, 0, 2, 2, 2]])) == (0, 2, 2)
    # two segmented objects can never both be TPs of one GT object: S1 (3/4 of G1) is, S2 (1/4) is not
    truth = np.array([[1, 1, 1, 1, 0, 2, 2]])
    assert object_counts(truth, np.array([[1, 1, 1, 2, 0, 3, 3]])) == (2, 1, 0)


def test_object_dice_by_hand():
    truth = np.zeros((1, 20), int)
    truth[0, 0:4] = 1  # G1: 4 px
    truth[0, 10:16] = 2  # G2: 6 px
    pred = np.zeros((1, 20), int)
    pred[0, 0:2] = 5  # S5: 2 px in G1 -> Dice(G1, S5) = 2·2/(4+2) = 2/3
    pred[0, 18:20] = 9  # S9: 2 px overlapping nothing -> Dice 0
    # truth side: γ = 4/10, 6/10; G1 -> S5 (2/3), G2 -> nothing (0): 0.4·2/3 = 0.26667
    # pred side: σ = 2/4, 2/4; S5 -> G1 (2/3), S9 -> nothing (0): 0.5·2/3 = 0.33333
    assert object_dice(truth, pred) == pytest.approx(0.5 * (0.4 * 2 / 3 + 0.5 * 2 / 3))


def test_object_hausdorff_by_hand_with_the_nearest_object_rule():
    truth = np.zeros((5, 20), int)
    truth[1:4, 1:4] = 1  # G1: 3x3 square, 9 px, rows 1-3, columns 1-3
    truth[1:4, 10:13] = 2  # G2: 3x3 square, columns 10-12
    pred = np.zeros((5, 20), int)
    pred[1:4, 1:3] = 1  # S1: rows 1-3, columns 1-2 (6 px) inside G1: H(G1, S1) = 1 (column 3 to column 2)
    pred[2, 16] = 2  # S2: 1 px at (2, 16), overlapping nothing
    # S2's nearest GT object by Hausdorff: G2: max(d(S2, G2), max over G2 of d(., S2)) = max(4, √(1+36)) = √37;
    # G1: max(13, √(1+225)) = √226 -> G2, H = √37.
    # G2 overlaps nothing: nearest segmented object: S2 (H = √37 ≈ 6.08) vs S1 (farthest pixel of G2 from S1:
    # column 12 to column 2 = 10) -> S2, H = √37.
    # truth side: (9·1 + 9·√37) / 18; pred side: (6·1 + 1·√37) / 7
    expected = 0.5 * ((9 + 9 * math.sqrt(37)) / 18 + (6 + math.sqrt(37)) / 7)
    assert object_hausdorff(truth, pred) == pytest.approx(expected)


def test_aji_by_hand_counts_a_shared_prediction_twice():
    truth = np.array([[1, 1, 0, 2, 2, 0, 0, 3]])
    pred = np.array([[4, 4, 4, 4, 4, 0, 6, 0]])
    # G1 -> S4 (IoU 2/5), G2 -> S4 (IoU 2/5): C = 2 + 2, U = 5 + 5; G3 overlaps nothing: U += 1;
    # S6 unused: U += 1 -> AJI = 4 / 12
    assert aji(truth, pred) == pytest.approx(4 / 12)


def test_panoptic_quality_by_hand():
    truth = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3]])
    pred = np.array([[5, 5, 5, 0, 0, 6, 0, 0, 0, 7]])
    # S5-G1 IoU 3/4 (match); S6-G2 IoU 1/2 (not > 0.5); S7-G3 IoU 1/2 (no): TP 1, FP 2, FN 2
    # SQ = 0.75, DQ = 1 / (1 + 1 + 1) = 1/3, PQ = 0.25
    pq = panoptic_quality(truth, pred)
    assert (pq.tp, pq.fp, pq.fn) == (1, 2, 2)
    assert pq.sq == pytest.approx(0.75) and pq.dq == pytest.approx(1 / 3) and pq.pq == pytest.approx(0.25)


def test_empty_conventions():
    empty = np.zeros((4, 4), int)
    one = empty.copy()
    one[1, 1] = 1
    both = segmentation_metrics(empty, empty)
    assert [both[k] for k in HEADLINE] == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    for truth, pred in ((one, empty), (empty, one)):
        m = segmentation_metrics(truth, pred)
        assert [m[k] for k in HEADLINE] == [0.0, 0.0, 0.0, 0.0, math.inf, 0.0, 0.0]


def test_label_instances_is_eight_connected_by_default():
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    assert label_instances(mask).max() == 2
    assert label_instances(mask, connectivity=1).max() == 3


def test_bad_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="differ in shape"):
        segmentation_metrics(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(UsageError, match="integer labels"):
        object_f1(np.zeros((3, 3)), np.zeros((3, 3)))


# ---------------------------------------------------------------- properties and an oracle


def _random_instances(rng, shape=(48, 48), n=8, r=(2, 7)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    rows, cols = np.indices(shape)
    for k in rng.permutation(np.arange(1, n + 1)):
        cy, cx, radius = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(*r)
        labels[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = (
            k * 3
        )  # later discs overwrite, labels not 1..n
    return labels


def _oracle(truth, pred):
    """The official MATLAB loops (F1score.m, ObjectDice.m, ObjectHausdorff.m), Kumar's AJI and Kirillov's PQ,
    one object mask at a time."""
    ts, ps = [k for k in np.unique(truth) if k], [k for k in np.unique(pred) if k]
    if not ts or not ps:
        return None

    def mode(values):
        values = values[values != 0]
        if not len(values):
            return None
        u, c = np.unique(values, return_counts=True)
        return u[np.argmax(c)]

    def haus(a, b):
        pa, pb = np.argwhere(a), np.argwhere(b)
        return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    tp = 0
    for s in ps:
        g = mode(truth[pred == s])
        if g is not None and ((pred == s) & (truth == g)).sum() / (truth == g).sum() > 0.5:
            tp += 1
    f1 = 2 * tp / (2 * tp + (len(ps) - tp) + (len(ts) - tp))

    def both_ways(f, nearest):
        total = 0.0
        for a_img, b_img, a_labels, b_labels in ((truth, pred, ts, ps), (pred, truth, ps, ts)):
            area = (a_img > 0).sum()
            for a in a_labels:
                am = a_img == a
                b = mode(b_img[am])
                if b is None:
                    value = min(f(am, b_img == x) for x in b_labels) if nearest else 0.0
                else:
                    value = f(am, b_img == b)
                total += am.sum() / area * value / 2
        return total

    c = u = 0
    used = set()
    for g in ts:
        gm = truth == g
        ious = [((gm & (pred == s)).sum() / (gm | (pred == s)).sum()) for s in ps]
        j = int(np.argmax(ious))
        if ious[j] > 0:
            c += (gm & (pred == ps[j])).sum()
            u += (gm | (pred == ps[j])).sum()
            used.add(ps[j])
        else:
            u += gm.sum()
    u += sum((pred == s).sum() for s in ps if s not in used)
    matched = [
        (truth == g).__and__(pred == s).sum() / (truth == g).__or__(pred == s).sum() for g in ts for s in ps
    ]
    matched = [m for m in matched if m > 0.5]
    dq = len(matched) / (len(matched) + 0.5 * (len(ps) - len(matched)) + 0.5 * (len(ts) - len(matched)))
    return {
        "object_f1": f1,
        "object_dice": both_ways(dice, nearest=False),
        "object_hausdorff": both_ways(haus, nearest=True),
        "aji": c / u,
        "pq": dq * (np.mean(matched) if matched else 0.0),
    }


@pytest.mark.parametrize("seed", range(12))
def test_matches_a_loop_transcription_of_the_definitions(seed):
    rng = np.random.default_rng(seed)
    truth = _random_instances(rng)
    pred = truth.copy() if seed % 3 == 0 else _random_instances(rng, n=int(rng.integers(3, 12)))
    if seed % 3 == 0:  # a perturbed copy: shifted, some objects dropped or merged
        pred = np.roll(pred, int(rng.integers(-3, 4)), axis=1)
        pred[pred == pred.max()] = 0
    expected = _oracle(truth, pred)
    got = segmentation_metrics(truth, pred)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_perfect_prediction_and_label_invariance():
    rng = np.random.default_rng(1)
    truth = _random_instances(rng, n=10)
    perfect = segmentation_metrics(truth, truth)
    assert [perfect[k] for k in HEADLINE] == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    pred = _random_instances(rng, n=10)
    base = segmentation_metrics(truth, pred)
    assert 0 < base["object_dice"] < 1 and 0 < base["aji"] < 1  # the case is not trivial
    relabel = rng.permutation(1000)[: pred.max() + 1] + 1
    relabel[0] = 0
    swapped = segmentation_metrics(truth, relabel[pred])
    for k in HEADLINE:
        assert swapped[k] == pytest.approx(base[k]), k
    # the symmetric metrics do not care which side is the truth
    reverse = segmentation_metrics(pred, truth)
    for k in ("pixel_dice", "pixel_iou", "object_dice", "object_hausdorff", "pq"):
        assert reverse[k] == pytest.approx(base[k]), k


# ---------------------------------------------------------------- readers


def test_read_mask_binary_jpeg_and_16_bit_instances(tmp_path):
    binary = np.zeros((20, 30), np.uint8)
    binary[2:8, 2:8] = 255
    binary[12:18, 20:28] = 255
    Image.fromarray(binary).save(tmp_path / "b.jpg", quality=70)
    labels = read_mask(tmp_path / "b.jpg")
    assert labels.max() == 2 and pixel_dice(labels, binary) > 0.95
    Image.fromarray((binary > 0).astype(np.uint8)).save(tmp_path / "01.png")  # a 0/1 mask
    assert read_mask(tmp_path / "01.png").max() == 2
    inst = np.zeros((20, 30), np.uint16)
    inst[2:8, 2:8] = 300
    inst[2:8, 8:12] = 301  # touching instances stay apart
    Image.fromarray(inst).save(tmp_path / "i.png")
    got = read_mask(tmp_path / "i.png")
    assert np.array_equal(got, inst) and got.dtype == np.int32
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UnsupportedFormatError, match="bad.png"):
        read_mask(tmp_path / "bad.png")


def test_read_aperio_xml(tmp_path):
    xml = """<Annotations><Annotation><Regions>
      <Region Id="1"><Vertices><Vertex X="1" Y="1"/><Vertex X="4" Y="1"/><Vertex X="4" Y="3"/>
        <Vertex X="1" Y="3"/></Vertices></Region>
      <Region Id="2"><Vertices><Vertex X="6" Y="0"/><Vertex X="7" Y="0"/></Vertices></Region>
      <Region Id="3"><Vertices><Vertex X="6" Y="5"/><Vertex X="9" Y="5"/><Vertex X="9" Y="7"/>
        <Vertex X="6" Y="7"/></Vertices></Region>
    </Regions></Annotation></Annotations>"""
    (tmp_path / "a.xml").write_text(xml)
    labels = read_aperio_xml(tmp_path / "a.xml", (7, 9))
    assert labels.max() == 2  # the two-vertex region is skipped
    assert np.array_equal(np.argwhere(labels == 1).min(0), [1, 1]) and (labels == 1).sum() == 3 * 4
    assert (labels == 2).sum() == 2 * 3  # clipped at row 6 and column 8
    (tmp_path / "b.xml").write_text("<Annotations><Region>")
    with pytest.raises(CorruptSlideError, match="b.xml"):
        read_aperio_xml(tmp_path / "b.xml", (7, 9))


def test_monuseg_png_masks_agree_with_the_xml_polygons():
    """Consistency of the two MoNuSeg encodings: the same foreground, but touching nuclei merge in the PNG."""
    stem = "TCGA-BC-A217-01Z-00-DX1"
    png = read_mask(require(MONUSEG / "masks" / f"{stem}.png"))
    xml = read_aperio_xml(require(MONUSEG / "annotations" / f"{stem}.xml"), png.shape)
    m = segmentation_metrics(xml, png)
    assert m["pixel_dice"] == pytest.approx(1.0, abs=1e-4)  # this PNG is the rasterised polygons (to 50 px)
    assert m["n_truth"] == 757 and m["n_pred"] == 592  # merged touching nuclei
    assert 0.55 < m["aji"] < 0.7 and m["object_f1"] > 0.85
    assert segmentation_metrics(xml, xml)["aji"] == 1.0


# ---------------------------------------------------------------- CLI and real GlaS masks


def _write_eroded_glas(folder: Path, radius: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from skimage.morphology import disk

    folder.mkdir()
    out = {}
    for path in sorted(require(GLAS / "masks").glob("*.jpg")):
        truth = read_mask(path) > 0
        eroded = ndimage.binary_erosion(truth, disk(radius))
        Image.fromarray(eroded.astype(np.uint8) * 255).save(folder / f"{path.stem}.png")
        out[path.stem] = (truth, eroded)
    return out


def test_cli_glas_truth_against_itself_is_perfect(capsys):
    masks = require(GLAS / "masks")
    assert main(["evaluate", "segmentation", str(masks), str(masks), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["per_image"]) == 12 and result["overall"]["n_images"] == 12
    for row in [*result["per_image"], result["overall"]]:
        assert [row[k] for k in HEADLINE] == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    assert result["overall"]["n_truth"] == 167  # connected components of the 12 thresholded JPEG masks


def test_cli_glas_eroded_truth(tmp_path, capsys):
    """Sanity check, not a model: the truth eroded by a disk of radius 3 as the 'prediction'."""
    from skimage.measure import perimeter

    pairs = _write_eroded_glas(tmp_path / "pred", radius=3)
    assert main(["evaluate", "segmentation", str(tmp_path / "pred"), str(GLAS / "masks"), "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["per_image"]}
    for stem, (truth, eroded) in pairs.items():
        r = rows[stem]
        # eroded ⊂ truth: Dice = 2|E| / (|T| + |E|), and |E| ≈ |T| − 3·perimeter (a little more: corners)
        assert r["pixel_dice"] == pytest.approx(2 * eroded.sum() / (truth.sum() + eroded.sum()))
        approx_e = truth.sum() - 3 * perimeter(truth)
        approx = 2 * approx_e / (truth.sum() + approx_e)
        assert approx <= r["pixel_dice"] <= approx + 0.012
        assert r["pixel_iou"] == pytest.approx(eroded.sum() / truth.sum())
        assert r["object_hausdorff"] >= 3.0  # the boundary moved in by 3 px (more at thin parts)
        if r["fn"] == 0:  # no vanished gland paired with a distant neighbour
            assert r["object_hausdorff"] < 8.0
        assert r["n_truth"] == r["tp"] + r["fn"] and r["n_pred"] == r["tp"] + r["fp"]
    # small glands vanish (FN); two thin glands shrink below half their area (FP + FN); no gland splits
    assert sum(r["object_f1"] == 1.0 for r in rows.values()) == 8
    assert [sum(r[k] for r in rows.values()) for k in ("tp", "fp", "fn")] == [162, 2, 5]
    assert all(r["object_f1"] > 0.94 for r in rows.values())


def test_cli_pairing_warnings_and_errors(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    mask = np.zeros((10, 10), np.uint8)
    mask[2:6, 2:6] = 255
    Image.fromarray(mask).save(truth / "a.jpg")
    Image.fromarray(mask).save(truth / "b.png")
    Image.fromarray(mask).save(truth / "only_truth.png")
    (pred / "a").mkdir()  # eosin segment's layout
    Image.fromarray(mask).save(pred / "a" / "mask.png")
    (pred / "b.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(mask).save(pred / "only_pred.tif")
    code = main(["evaluate", "segmentation", str(pred), str(truth)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "only_pred.tif" in err and "only_truth.png" in err and "b.png" in err and "1 of 2 image(s)" in err
    assert "a " in out and "overall" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "segmentation", str(empty), str(truth)]) == 2
    assert "no prediction" in capsys.readouterr().err


def test_evaluate_dirs_pools_pixels_and_averages_objects(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    big, small = np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)
    big[0:20, 0:20] = 255  # 400 px
    small[0:2, 0:2] = 255  # 4 px
    Image.fromarray(big).save(truth / "x.png")
    Image.fromarray(big).save(pred / "x.png")  # perfect
    Image.fromarray(small).save(truth / "y.png")
    Image.fromarray(np.zeros_like(small)).save(pred / "y.png")  # missed entirely
    result = evaluate_segmentation_dirs(pred, truth)
    # pooled: intersection 400, truth 404, pred 400 -> Dice 800/804; object F1: mean of 1 and 0
    assert result.overall["pixel_dice"] == pytest.approx(800 / 804)
    assert result.overall["object_f1"] == 0.5 and result.overall["object_hausdorff"] == math.inf
    assert result.to_json()["overall"]["object_hausdorff"] is None


def _rows(n: int, seed: int) -> list[dict]:
    """Per-image metric rows of n made-up images (what segmentation_metrics returns, the keys aggregate reads)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t, p = (int(v) for v in rng.integers(1_000, 50_000, 2))
        inter = int(rng.integers(0, min(t, p)))
        row = {"id": f"img{i}", "overlap_pixels": inter, "truth_pixels": t, "pred_pixels": p}
        row.update({k: float(rng.random()) for k in ("object_f1", "object_dice", "aji", "pq", "dq", "sq")})
        row.update({"object_hausdorff": float(rng.random() * 30), "n_truth": 5, "n_pred": 5, "tp": 4, "fp": 1, "fn": 1})
        rows.append(row)
    return rows


def test_image_bootstrap_intervals_match_scipy_and_a_loop():
    """The 95 % intervals over images: for a mean-over-images metric (AJI) against scipy.stats.bootstrap's
    percentile interval (an independent resampler, so within Monte-Carlo error), and for the pooled pixel Dice
    against a loop that re-pools the drawn images' pixel counts, replicate by replicate, with the same draws."""
    from scipy.stats import bootstrap

    from eosin.evaluate._segmentation import aggregate, image_bootstrap

    rows = _rows(25, seed=3)
    ci = image_bootstrap(rows, n_bootstrap=4000, seed=0)
    aji_values = np.array([r["aji"] for r in rows])
    ref = bootstrap((aji_values,), np.mean, n_resamples=4000, method="percentile", random_state=1)
    assert ci["aji"][0] == pytest.approx(ref.confidence_interval.low, abs=0.012)
    assert ci["aji"][1] == pytest.approx(ref.confidence_interval.high, abs=0.012)
    overall = aggregate(rows)
    for name in ("pixel_dice", "pixel_iou", "aji", "pq", "object_f1"):
        assert ci[name][0] < overall[name] < ci[name][1]

    draws = np.random.default_rng(0).integers(0, 25, (4000, 25))  # the draws image_bootstrap makes with seed 0
    dice = [aggregate([rows[i] for i in d])["pixel_dice"] for d in draws]
    assert ci["pixel_dice"] == pytest.approx(list(np.percentile(dice, [2.5, 97.5])), rel=1e-9)

    rows[7]["object_hausdorff"] = math.inf  # a missed object: the mean is infinite in every replicate that draws it
    low, high = image_bootstrap(rows, n_bootstrap=4000, seed=0)["object_hausdorff"]
    assert math.isfinite(low) and high == math.inf  # 36 % of replicates miss image 7: the lower bound is finite


def test_image_bootstrap_needs_two_images_and_is_in_the_cli_json(tmp_path, capsys):
    from eosin.evaluate._segmentation import image_bootstrap

    assert image_bootstrap(_rows(1, seed=0)) == {}
    same = _rows(1, seed=0) * 5
    assert image_bootstrap(same)["aji"] == pytest.approx([same[0]["aji"]] * 2)  # identical images: no spread

    masks = require(GLAS / "masks")
    pred = tmp_path / "pred"
    _write_eroded_glas(pred, radius=3)
    assert main(["evaluate", "segmentation", str(pred), str(masks), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    low, high = out["ci"]["pixel_dice"]
    assert low <= out["overall"]["pixel_dice"] <= high < 1.0
    assert out["ci_method"] == {"level": 0.95, "n_bootstrap": 2000, "seed": 0, "unit": "image", "method": "percentile"}
    assert main(["evaluate", "segmentation", str(pred), str(masks)]) == 0
    assert "95% CI" in capsys.readouterr().out
