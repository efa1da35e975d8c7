"""Slide-level aggregators through one fit/predict interface, on bags built from the real tiles.

How the bags are made (``real_bags``): the 74 labelled tiles in ``tiles/`` (CRC-VAL-HE-7K, NCT-CRC-HE-100K and
Kather 2016; 7 of them tumour: 4 + 1 + 2) are split per class into two disjoint halves (alternate tiles in sorted
order): training tiles and held-out tiles, so no test bag shares a tile with a training bag. Each tile gives 18
instances: 9 overlapping half-size crops (3 x 3 at quarter-size steps), each as read and once HED-jittered
(``eosin.stain.HEDJitter``, sigma 0.05). An instance's features are 12 colour statistics: mean and standard
deviation of R, G, B (0-1) and of the H, E, D channels of ``skimage.color.rgb2hed``, standardized with the
training instances' mean and std. A "slide" (bag) holds 16-40 instances drawn at random from one half: a
negative bag only non-tumour instances, a positive bag 30-60 % tumour instances and the rest non-tumour. There
are 60 training and 40 held-out bags, half positive. Probability bags come from a tile classifier (logistic
regression, tumour vs. the rest, or over all tile classes) fitted on the training instances only.

Flips and 90-degree rotations are not used: they leave these colour statistics unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from conftest import DATA, require
from eosin.aggregate import (
    MajorityVote,
    SummaryClassifier,
    Thresholds,
    get_aggregator,
    list_aggregators,
)
from eosin.errors import NotFittedError, UnknownNameError, UsageError

TILES = DATA / "tiles"
SMALL_MIL = {
    "abmil": {"hidden": 64, "attention_dim": 32},
    "clam_sb": {"hidden": 64, "attention_dim": 32, "k_sample": 4},
    "clam_mb": {"hidden": 64, "attention_dim": 32, "k_sample": 4},
    "transmil": {"hidden": 64, "heads": 4, "landmarks": 16},
}


def _tile_paths() -> list[tuple[str, object]]:
    root = require(TILES)
    out = [(p.name.split("-")[0], p) for p in sorted((root / "crc-val-he-7k").glob("*.png"))]
    out += [(p.name.split("-")[0], p) for p in sorted((root / "nct-crc-he-100k").glob("*.tif"))]
    for p in sorted((root / "kather2016").glob("*/*.jpg")):
        out.append(("TUM" if "TUMOR" in p.parent.name else p.parent.name.split("_")[1], p))
    return out


def _instance_features(image: np.ndarray, jitter) -> np.ndarray:
    from skimage.color import rgb2hed

    rows = []
    half = image.shape[0] // 2
    for y in (0, half // 2, half):
        for x in (0, half // 2, half):
            crop = image[y : y + half, x : x + half]
            for version in (crop, jitter.transform(crop)):
                pixels = np.concatenate(
                    [version.reshape(-1, 3) / 255.0, rgb2hed(version).reshape(-1, 3)], axis=1
                )
                rows.append(np.concatenate([pixels.mean(0), pixels.std(0)]))
    return np.array(rows, dtype=np.float32)


TUMOUR_FRACTION = (0.3, 0.6)


@pytest.fixture(scope="module")
def real_bags() -> dict:
    return make_real_bags()


def make_real_bags() -> dict:
    from skimage.io import imread

    from eosin.stain import HEDJitter

    tiles = _tile_paths()
    jitter = HEDJitter(sigma=0.05, bias=0.01, seed=0)
    feats, classes, half = [], [], []
    seen: dict[str, int] = {}
    for label, path in tiles:
        feats.append(_instance_features(imread(path)[..., :3], jitter))
        classes.append(label)
        half.append(seen.get(label, 0) % 2)  # alternate tiles of each class into the two halves
        seen[label] = seen.get(label, 0) + 1
    half = np.array(half)
    train_inst = np.concatenate([f for f, h in zip(feats, half) if h == 0])
    mean, std = train_inst.mean(0), train_inst.std(0)
    feats = [(f - mean) / std for f in feats]
    rng = np.random.default_rng(0)

    def make(h: int, n_bags: int):
        tum = np.concatenate([f for f, c, hh in zip(feats, classes, half) if hh == h and c == "TUM"])
        other_f = [(f, c) for f, c, hh in zip(feats, classes, half) if hh == h and c != "TUM"]
        other = np.concatenate([f for f, _ in other_f])
        other_cls = np.concatenate([[c] * len(f) for f, c in other_f])
        bags, is_tum, inst_cls, y = [], [], [], []
        for i in range(n_bags):
            n = int(rng.integers(16, 41))
            k = round(n * rng.uniform(*TUMOUR_FRACTION)) if i % 2 else 0
            o = rng.choice(len(other), n - k, replace=False)
            t = rng.choice(len(tum), k, replace=False)
            bags.append(np.concatenate([tum[t], other[o]]))
            is_tum.append(np.r_[np.ones(k, bool), np.zeros(n - k, bool)])
            inst_cls.append(np.r_[["TUM"] * k, other_cls[o]])
            y.append("tumour" if k else "normal")
        return bags, np.array(y), is_tum, inst_cls

    train, test = make(0, 60), make(1, 40)
    # tile classifiers fitted on the training instances only
    x_tr = np.concatenate(train[0])
    binary = LogisticRegression(max_iter=2000, class_weight="balanced").fit(x_tr, np.concatenate(train[2]))
    multi = LogisticRegression(max_iter=2000).fit(x_tr, np.concatenate(train[3]))
    return {
        "train": train,
        "test": test,
        "p_train": [binary.predict_proba(b) for b in train[0]],  # columns: normal, tumour
        "p_test": [binary.predict_proba(b) for b in test[0]],
        "m_train": [multi.predict_proba(b) for b in train[0]],  # columns: every tile class
        "m_test": [multi.predict_proba(b) for b in test[0]],
    }


def _auc(agg, bags, y) -> float:
    proba = agg.predict_proba(bags)
    assert proba.shape == (len(bags), 2)
    assert np.allclose(proba.sum(1), 1.0)
    return roc_auc_score(y == "tumour", proba[:, list(agg.classes_).index("tumour")])


# (name, parameters, bags, minimum held-out AUC, minimum held-out balanced accuracy or None)
# bags: "p" tumour-vs-rest tile probabilities, "m" probabilities over all 11 tile classes, "f" tile features.
# The 11-class tile classifier, fitted on 37 tiles, is poor; its summaries beat chance but no more (AUC ~0.7).
NON_MIL_CASES = [
    ("majority", {}, "p", 0.9, None),
    ("mean", {}, "p", 0.9, None),
    ("thresholds", {}, "p", 0.9, 0.8),
    ("summary", {"model": "logistic"}, "p", 0.9, 0.8),
    ("summary", {"model": "forest"}, "p", 0.9, 0.8),
    ("summary", {"model": "logistic"}, "m", 0.6, None),
    ("summary", {"model": "logistic", "bag_kind": "features"}, "f", 0.85, 0.7),
    ("summary", {"model": "forest", "bag_kind": "features"}, "f", 0.85, 0.7),
]


@pytest.mark.parametrize(("name", "params", "kind", "min_auc", "min_bacc"), NON_MIL_CASES)
def test_non_mil_aggregators_rank_held_out_slides(real_bags, name, params, kind, min_auc, min_bacc):
    key = {"p": ("p_train", "p_test"), "m": ("m_train", "m_test")}.get(kind)
    tr, te = (
        (real_bags["train"][0], real_bags["test"][0])
        if key is None
        else (real_bags[key[0]], real_bags[key[1]])
    )
    y_tr, y_te = real_bags["train"][1], real_bags["test"][1]
    agg = get_aggregator(name, **params)
    assert agg.fit(tr, y_tr) is agg
    assert list(agg.classes_) == ["normal", "tumour"]
    assert _auc(agg, te, y_te) > min_auc
    if min_bacc is not None:  # the learned rules also put their cut where it separates the classes
        assert balanced_accuracy_score(y_te, agg.predict(te)) > min_bacc


@pytest.fixture
def one_thread():
    """Bags of ~30 instances train faster on one thread than on contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained() -> dict:
    return {}


def _train(real_bags, trained, name):
    """Each MIL model trained once per module (20 epochs, lr 1e-3) on the training bags."""
    if name not in trained:
        tr, y_tr = real_bags["train"][:2]
        trained[name] = get_aggregator(name, epochs=20, lr=1e-3, device="cpu", **SMALL_MIL[name]).fit(
            tr, y_tr
        )
    return trained[name]


@pytest.mark.torch
@pytest.mark.parametrize(
    "name", ["abmil", "clam_sb", "clam_mb", pytest.param("transmil", marks=pytest.mark.slow)]
)
def test_mil_aggregators_rank_held_out_slides(real_bags, trained, one_thread, name):
    """Held-out AUC is high; the argmax cut is less well placed (the held-out tiles differ), so accuracy is lower."""
    te, y_te = real_bags["test"][:2]
    agg = _train(real_bags, trained, name)
    assert len(agg.history_) == 20
    assert _auc(agg, te, y_te) > 0.85
    assert balanced_accuracy_score(y_te, agg.predict(te)) > 0.6
    att = agg.attention(te[1])
    assert att.shape == (len(te[1]),) and np.isclose(att.sum(), 1.0)


@pytest.mark.torch
def test_abmil_attends_to_tumour_tiles(real_bags, trained, one_thread):
    te, y_te, is_tum = real_bags["test"][:3]
    agg = _train(real_bags, trained, "abmil")
    ratios = []
    for bag, label, tum in zip(te, y_te, is_tum):
        if label == "tumour":
            att = agg.attention(bag)
            ratios.append(att[tum].mean() / att[~tum].mean())
    assert np.mean(ratios) > 1.5, ratios
    assert np.mean(np.array(ratios) > 1) > 0.8


@pytest.mark.torch
def test_early_stopping_keeps_the_best_validation_epoch(real_bags, one_thread):
    (tr, y_tr, *_), (te, y_te, *_) = real_bags["train"], real_bags["test"]
    agg = get_aggregator("abmil", epochs=40, lr=3e-3, patience=2, device="cpu", **SMALL_MIL["abmil"])
    agg.fit(tr[:30], y_tr[:30], val=(te[:20], y_te[:20]))
    losses = [h["val_loss"] for h in agg.history_]
    assert len(losses) < 40  # stopped early
    best = int(np.argmin(losses))
    assert len(losses) == best + 3  # patience 2 after the best epoch
    from eosin.aggregate._mil import MILAggregator

    assert isinstance(agg, MILAggregator)
    assert agg._val_loss(agg.model_, te[:20], (y_te[:20] == "tumour").astype(int), 12, None, agg.device_) == (
        pytest.approx(losses[best], rel=1e-4)
    )


@pytest.mark.torch
def test_class_weights_scale_each_bag_loss(one_thread):
    """Balanced weights are n / (n_classes * count): 12 bags, 10 of class a -> a 0.6, b 3.0 per bag."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(12)]
    agg = get_aggregator("abmil", epochs=1, hidden=8, attention_dim=4, dropout=0.0, device="cpu")
    agg.fit(bags, ["a"] * 10 + ["b"] * 2)
    weight = torch.tensor([0.6, 3.0])
    x, label = torch.from_numpy(bags[0]), torch.tensor(1)
    with torch.no_grad():
        plain = F.cross_entropy(agg.model_(x)[0][None], label[None])
        weighted = agg._loss(agg.model_, x, label, weight)
    assert float(weighted) == pytest.approx(3.0 * float(plain), rel=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SMALL_MIL))
def test_save_load_round_trip(real_bags, tmp_path, one_thread, name):
    from eosin.aggregate import load_aggregator

    (tr, y_tr, *_), (te, *_) = real_bags["train"], real_bags["test"]
    agg = get_aggregator(name, epochs=1, device="cpu", **SMALL_MIL[name]).fit(tr[:10], y_tr[:10])
    out = agg.save(tmp_path / "agg")
    config = json.loads((out / "config.json").read_text())
    assert config["aggregator"] == name and config["classes"] == ["normal", "tumour"]
    assert config["n_features"] == 12 and config["params"] == agg.get_params()
    back = load_aggregator(out)
    assert type(back) is type(agg) and back.get_params() == agg.get_params()
    np.testing.assert_array_equal(back.predict_proba(te[:5]), agg.predict_proba(te[:5]))
    np.testing.assert_array_equal(back.attention(te[1]), agg.attention(te[1]))
    agg.save(out)  # overwriting an existing checkpoint leaves one folder and no temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agg"]
    assert type(agg).load(out).classes_.tolist() == ["normal", "tumour"]


def test_thresholds_grid_search_finds_the_separating_thresholds():
    """Hand-made probability bags, two classes A and B; a row is one tile's (p_A, p_B).

    A slides: 40 % of tiles confidently A (0.95) and 60 % weakly B (0.65). B slides: 30 % confidently-ish B (0.75)
    and 70 % weakly A (0.55). A tile counts only above its class's threshold, so both classes are right only with
    0.55 < t_A < 0.95 and 0.65 < t_B < 0.75; on the grid 0.0, 0.1, ..., 0.9 the lowest such are t_A = 0.6,
    t_B = 0.7. Majority vote gets every slide wrong.
    """
    a_slide = np.array([[0.95, 0.05]] * 4 + [[0.35, 0.65]] * 6)
    b_slide = np.array([[0.25, 0.75]] * 3 + [[0.55, 0.45]] * 7)
    bags, y = [a_slide, b_slide] * 3, np.array(["A", "B"] * 3)
    agg = Thresholds().fit(bags, y)
    np.testing.assert_allclose(agg.thresholds_, [0.6, 0.7])
    assert agg.score_ == 1.0
    assert agg.predict(bags).tolist() == y.tolist()
    np.testing.assert_allclose(agg.predict_proba([a_slide, b_slide]), [[1, 0], [0, 1]])
    # DeepSlide's own search (one threshold shared by the classes) gets 0.7 right as well
    assert Thresholds(rounds=0).fit(bags, y).thresholds_.tolist() == [0.7, 0.7]
    assert MajorityVote().fit(bags, y).predict(bags).tolist() == ["B", "A"] * 3
    # no tile above its threshold: the mean probability decides
    np.testing.assert_allclose(agg.predict_proba([np.array([[0.5, 0.5], [0.45, 0.55]])]), [[0.475, 0.525]])


def test_majority_vote_breaks_ties_by_mean_probability():
    bag = np.array([[0.9, 0.1, 0.0], [0.1, 0.5, 0.4], [0.0, 0.4, 0.6], [0.3, 0.3, 0.4]])
    # votes: class 0 once, class 1 once, class 2 twice -> 2; drop the last tile: a 1-1-1 tie
    agg = MajorityVote(classes=["x", "y", "z"]).fit([bag, bag, bag], ["x", "y", "z"])
    assert agg.predict([bag, bag[:3]]).tolist() == ["z", "x"]  # tie: x has the highest mean (0.33)
    np.testing.assert_allclose(agg.predict_proba([bag]), [[0.25, 0.25, 0.5]])


def test_ragged_bags_and_bad_input():
    rng = np.random.default_rng(0)
    bags = [rng.dirichlet([1, 1], size=n) for n in (1, 5, 200, 3)]
    y = ["a", "b", "a", "b"]
    agg = SummaryClassifier(model="forest", n_estimators=10).fit(bags, y)
    assert agg.predict_proba(bags).shape == (4, 2)
    with pytest.raises(UsageError, match="bag 1 has 3 columns, expected 2"):
        agg.predict([bags[0], np.ones((4, 3))])
    with pytest.raises(UsageError, match="n_tiles >= 1"):
        agg.predict([np.zeros((0, 2))])
    with pytest.raises(UsageError, match="one label per bag"):
        MajorityVote().fit(bags, y[:3])
    with pytest.raises(UsageError, match="3 classes"):
        MajorityVote().fit(bags[:3], ["a", "b", "c"])
    with pytest.raises(UnknownNameError, match="Did you mean 'abmil'"):
        get_aggregator("abmill")
    with pytest.raises(UnknownNameError, match="forest"):
        SummaryClassifier(model="tree").fit(bags, y)


@pytest.mark.parametrize("name", ["majority", "mean", "thresholds", "summary"])
def test_not_fitted_error(name):
    agg = get_aggregator(name)
    with pytest.raises(NotFittedError, match="call fit"):
        agg.predict([np.ones((3, 2)) / 2])
    assert agg.get_params() == get_aggregator(name).get_params()


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SMALL_MIL))
def test_mil_not_fitted_and_params(name):
    agg = get_aggregator(name, epochs=3)
    assert agg.get_params()["epochs"] == 3 and agg.set_params(lr=0.1) is agg and agg.lr == 0.1
    with pytest.raises(NotFittedError):
        agg.attention(np.ones((3, 4)))
    with pytest.raises(NotFittedError):
        agg.predict_proba([np.ones((3, 4))])


def test_registry_and_no_torch_for_the_simple_aggregators():
    assert list_aggregators() == [
        "abmil",
        "clam_mb",
        "clam_sb",
        "majority",
        "mean",
        "summary",
        "thresholds",
        "transmil",
    ]
    code = (
        "import sys, numpy as np, eosin, eosin.aggregate as a\n"
        "for n in ('majority', 'mean', 'thresholds', 'summary'):\n"
        "    a.get_aggregator(n).fit([np.eye(2), np.eye(2)[::-1] * 0.9 + 0.05], ['p', 'q']).predict([np.eye(2)])\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.torch
def test_nystrom_pseudo_inverse_and_exact_short_sequences():
    import torch

    from eosin.aggregate._mil_nets import NystromAttention, _pinv

    torch.manual_seed(0)
    x = torch.softmax(torch.randn(2, 3, 16, 16), -1)
    np.testing.assert_allclose(
        (x @ _pinv(x, 20)).numpy(), np.broadcast_to(np.eye(16), (2, 3, 16, 16)), atol=1e-3
    )
    # with as many landmarks as tokens, Nystrom's three kernels reduce to the exact attention
    layer = NystromAttention(32, heads=4, landmarks=64)
    tokens = torch.randn(1, 40, 32)
    with torch.no_grad():
        exact, row = layer(tokens, return_cls_attention=True)
    assert row.shape == (1, 40) and float(row.sum()) == pytest.approx(1.0)  # cls and 39 tiles
    layer.landmarks = 20  # 40 tokens over 20 landmarks: an approximation, close on these random tokens
    with torch.no_grad():
        approx = layer(tokens)
    assert approx.shape == exact.shape
    assert torch.corrcoef(torch.stack([approx.flatten(), exact.flatten()]))[0, 1] > 0.9
