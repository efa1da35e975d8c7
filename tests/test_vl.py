"""Zero-shot, retrieval, heatmaps and contrastive training of eosin.vl, on real tiles and a real slide."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA, fake_calibration_timings, require
from vl_fixtures import tiny_clip

from eosin.cli import main
from eosin.errors import DataError, UsageError
from eosin.vl import build_index, class_embeddings, load_prompts, load_vl_model, recall_at_k, zero_shot

CRC = DATA / "tiles" / "crc-val-he-7k"
CMU = DATA / "slides" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def plip_folder(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("vl") / "plip")


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "crc.json"
    names = {
        "ADI": ["adipose tissue", "fat"],
        "DEB": ["debris"],
        "LYM": ["lymphocytes"],
        "MUC": ["mucus"],
        "MUS": ["smooth muscle"],
        "NORM": ["normal mucosa"],
        "STR": ["stroma"],
        "TUM": ["tumour epithelium"],
    }
    path.write_text(
        json.dumps({"classnames": names, "templates": ["an H&E image of CLASSNAME.", "CLASSNAME"]})
    )
    return path


class _FixedText:
    """encode_text returns fixed unit vectors per prompt, so the ensemble can be checked by hand."""

    embedding_dim = 2

    def __init__(self, table):
        self.table = table

    def encode_text(self, texts):
        return np.asarray([self.table[t] for t in texts], dtype=np.float32)


def test_prompt_ensemble_arithmetic():
    s = np.sqrt(0.5)
    model = _FixedText({"a1": [1, 0], "a2": [0, 1], "b1": [s, -s]})
    got = class_embeddings(model, {"a": ["a1", "a2"], "b": ["b1"]})
    # class a: mean of (1, 0) and (0, 1) = (0.5, 0.5), renormalised to (0.7071, 0.7071); class b is its one prompt
    np.testing.assert_allclose(got, [[s, s], [s, -s]], atol=1e-6)
    # zero-shot on embeddings: logits = scale * cosine, softmax over the two classes
    import torch

    from eosin.vl._models import VLModel

    class M(VLModel):
        name, logit_scale, embedding_dim = "fixed", 10.0, 2

        def _text_features(self, texts):
            return torch.tensor([model.table[t] for t in texts], dtype=torch.float32)

    result = zero_shot(np.asarray([[1.0, 0.0]]), {"a": ["a1", "a2"], "b": ["b1"]}, model=M(), embeddings=True)
    np.testing.assert_allclose(result.logits, [[10 * s, 10 * s]], atol=1e-5)
    np.testing.assert_allclose(result.proba, [[0.5, 0.5]], atol=1e-6)


def test_prompt_files_both_forms_and_errors(tmp_path):
    assert load_prompts({"tumour": "a tumour", "fat": ["fat", "adipose"]}) == {
        "tumour": ["a tumour"],
        "fat": ["fat", "adipose"],
    }
    conch = {
        "classnames": {"ADI": ["adipose", "fat"], "TUM": ["tumour"]},
        "templates": ["an image of CLASSNAME.", "{}"],
    }
    assert load_prompts(conch) == {
        "ADI": ["an image of adipose.", "adipose", "an image of fat.", "fat"],
        "TUM": ["an image of tumour.", "tumour"],
    }
    bad = tmp_path / "bad.json"
    bad.write_text("ADI: fat")
    with pytest.raises(DataError, match="not JSON") as err:
        load_prompts(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(DataError, match="'STR' has no prompts"):
        load_prompts({"ADI": ["fat"], "STR": []})
    with pytest.raises(DataError, match="placeholder"):
        load_prompts({"classnames": {"ADI": ["fat"]}, "templates": ["an H&E image"]})


def test_recall_at_k_by_hand():
    # three queries; their classes; the classes of their top-3 results
    q = ["a", "b", "a"]
    got = np.array([["a", "b", "b"], ["a", "a", "b"], ["b", "b", "b"]])
    r = recall_at_k(q, got, ks=(1, 2, 3), n_bootstrap=200)
    # R@1: only query 0 has its class first -> 1/3; R@2: query 0 -> 1/3; R@3: queries 0, 1 -> 2/3
    assert r["R@1"]["value"] == pytest.approx(1 / 3)
    assert r["R@2"]["value"] == pytest.approx(1 / 3)
    assert r["R@3"]["value"] == pytest.approx(2 / 3)
    assert r["R@3"]["ci_low"] <= 2 / 3 <= r["R@3"]["ci_high"]


def test_index_search_exclusion_and_bad_input(tmp_path):
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]] + np.float32(0.01)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_index(vectors, {"labels": ["x", "x", "y", "z"]}, meta={"model": "m", "weights_id": "w"})
    scores, rows = index.query(vectors[:2], 2, exclude_self=True)
    assert rows[:, 0].tolist() == [1, 0]  # each query's nearest other tile is its twin, not itself
    path = index.save(tmp_path / "idx.npz")
    from eosin.vl import load_index

    again = load_index(path)
    assert again.meta["model"] == "m" and len(again) == 4
    assert again.columns["labels"].tolist() == ["x", "x", "y", "z"]
    with pytest.raises(UsageError, match="dimension 3"):
        again.query(np.ones((1, 3)), 1)
    with pytest.raises(DataError, match="empty"):
        build_index(np.zeros((0, 4))).query(np.ones((1, 4)), 1)
    with pytest.raises(UsageError, match=".npz"):
        index.save(tmp_path / "idx.bin")
    (tmp_path / "junk.npz").write_bytes(b"not an index")
    with pytest.raises(DataError, match="not an eosin index"):
        load_index(tmp_path / "junk.npz")


def test_large_index_scans_codes_and_reranks_to_the_exact_neighbours(monkeypatch):
    """Above EXACT_MAX the index scans 4-bit PQ codes and re-ranks: the neighbours of unclustered vectors (the
    hardest case) are nearly all the exact ones, their scores are the exact inner products, and self-exclusion
    and batch queries still work."""
    from eosin.vl import _index

    monkeypatch.setattr(_index, "EXACT_MAX", 1_000)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20_000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:40] + 0.5 * rng.standard_normal((40, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = build_index(x)
    assert index.method == "pq-fastscan+rerank"
    scores, rows = index.query(q, 10)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])
    assert recall >= 0.95
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", q, x[rows]), rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    _, own = index.query(x[:5], 3, exclude_self=True)
    assert not (own == np.arange(5)[:, None]).any() and own.shape == (5, 3)
    assert build_index(x[:500]).method == "exact"


def test_cli_zeroshot_index_search_retrieval(tmp_path, plip_folder, prompt_file, capsys):
    require(CRC)
    out = tmp_path / "pred.csv"
    args = ["--model", "plip", "--weights", str(plip_folder)]
    assert main(["zeroshot", str(CRC), *args, "--classes", str(prompt_file), "--out", str(out), "-q"]) == 0
    from eosin.evaluate._classif_io import read_predictions_csv

    preds = read_predictions_csv(out)
    assert len(preds) == 32 and set(preds.y_true) == {"ADI", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"}
    np.testing.assert_allclose(preds.proba.sum(axis=1), 1.0, atol=1e-4)
    # the CSV equals the Python API's answer on the same tiles
    from eosin.vl._sources import read_image

    tiles = np.stack([read_image(p) for p in preds.ids])
    model = load_vl_model("plip", weights=plip_folder)
    api = zero_shot(tiles, prompt_file, model=model)
    np.testing.assert_allclose(preds.proba, api.proba, atol=1e-5)
    assert main(["evaluate", "classification", str(out), "--json"]) == 0
    # bad prompt file: exit 1, one line, nothing written
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    capsys.readouterr()
    assert main(["zeroshot", str(CRC), *args, "--classes", str(bad), "--out", str(tmp_path / "p2.csv")]) == 1
    assert "not JSON" in capsys.readouterr().err and not (tmp_path / "p2.csv").exists()
    # index, search by text and by image, contact sheet, retrieval evaluation
    idx = tmp_path / "idx.npz"
    assert main(["index", str(CRC), *args, "--out", str(idx), "-q"]) == 0
    capsys.readouterr()
    sheet = tmp_path / "sheet.png"
    assert (
        main(
            [
                "search",
                str(idx),
                "--text",
                "fat",
                "--weights",
                str(plip_folder),
                "--k",
                "4",
                "--sheet",
                str(sheet),
            ]
        )
        == 0
    )
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4] and sheet.stat().st_size > 1000
    assert hits[0]["score"] >= hits[-1]["score"]
    query = sorted(CRC.iterdir())[0]
    assert main(["search", str(idx), "--image", str(query), "--weights", str(plip_folder), "--k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == str(query)  # a tile finds itself first
    assert main(["search", str(idx), "--image", str(prompt_file), "--weights", str(plip_folder)]) == 1
    assert "not an image" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "retrieval",
                str(idx),
                "--classes",
                str(prompt_file),
                "--weights",
                str(plip_folder),
                "--bootstrap",
                "50",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["n_text_queries"] == 18 and 0 <= report["image_to_image"]["R@1"]["value"] <= 1


def test_index_refuses_another_model(tmp_path, plip_folder):
    require(CRC)
    from eosin.vl._index import index_sources, search

    model = load_vl_model("plip", weights=plip_folder)
    index = index_sources([sorted(CRC.iterdir())[0]], model=model)
    other = tiny_clip(tmp_path / "other")  # same architecture and name, other weights
    import torch

    from eosin.models import read_state_dict

    state = read_state_dict(other / "pytorch_model.bin")
    torch.save(
        {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, other / "pytorch_model.bin"
    )
    with pytest.raises(UsageError, match="not comparable"):
        search(index, text="fat", model=load_vl_model("plip", weights=other))


def test_heatmap_on_a_real_slide(tmp_path, plip_folder, capsys):
    require(CMU)
    assert main(["tile", str(CMU), "--out", str(tmp_path), "--mpp", "2", "--size", "64", "-q"]) in (0, None)
    store = tmp_path / "CMU-1-Small-Region" / "store.zarr"
    capsys.readouterr()
    png = tmp_path / "hm.png"
    args = ["--model", "plip", "--weights", str(plip_folder), "--png", str(png), "-q"]
    assert main(["heatmap", str(store), "--text", "tumour", "--text", "stroma", *args]) == 0
    record = json.loads(capsys.readouterr().out)
    from eosin.io import SlideStore

    group = SlideStore.open(store).read_group("text_heatmap", record["key"])
    sim, proba = np.asarray(group["similarity"]), np.asarray(group["proba"])
    assert sim.shape == (record["n_tiles"], 2) and record["n_tiles"] > 10
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert group.attrs["prompts"] == ["tumour", "stroma"] and group.attrs["weights_id"]
    # the stored similarities are the model's own cosine similarities of the tiles read through the grid
    from eosin.vl._sources import iter_sources

    model = load_vl_model("plip", weights=plip_folder)
    tiles = np.concatenate([c.images for c in iter_sources([store], input_size=model.input_size)])
    want = model.encode_images(tiles) @ model.encode_text(["tumour", "stroma"]).T
    np.testing.assert_allclose(sim, want, atol=2e-2)  # bf16 autocast on native-bf16 CPUs
    assert png.stat().st_size > 1000
    # the viewer offers the stored scores as per-tile layers, one per prompt
    from eosin.viewer import find_layers

    names = {layer.name for layer in find_layers([store])}
    assert {"text_heatmap: similarity[tumour]", "text_heatmap: proba[stroma]"} <= names


def test_trained_two_tower_beats_chance_on_its_classes(tmp_path):
    require(CRC)
    from eosin.vl import train_clip
    from eosin.vl._sources import read_image

    files = [p for p in sorted(CRC.iterdir()) if p.name.split("-")[0] in ("ADI", "LYM", "MUC", "TUM")][::2]
    words = {
        "ADI": ["adipose tissue", "fat"],
        "LYM": ["lymphocytes", "lymphoid cells"],
        "MUC": ["mucus", "mucin"],
        "TUM": ["tumour epithelium", "carcinoma"],
    }
    images, captions, labels = [], [], []
    for f in files:
        for w in words[f.name.split("-")[0]]:
            images.append(f), captions.append(f"an H&E image of {w}."), labels.append(f.name.split("-")[0])
    model, record = train_clip(
        (images, captions, labels),
        image_encoder="resnet18",
        image_weights=None,
        out=tmp_path / "clip",
        embed_dim=32,
        epochs=150,
        augment=False,
        precision="fp32",
    )
    tiles = np.stack([read_image(f) for f in files])
    truth = np.asarray([f.name.split("-")[0] for f in files])
    prompts = {c: [f"an H&E image of {w}." for w in ws] for c, ws in words.items()}
    acc = float(np.mean(zero_shot(tiles, prompts, model=model).pred == truth))
    assert acc > 0.25 + 0.25  # chance is 1/4: the heads learned the pairing (8 tiles, 4 classes)
    again = load_vl_model(tmp_path / "clip", precision="fp32")  # reloads from the folder
    np.testing.assert_allclose(again.encode_text(["fat"]), model.encode_text(["fat"]), atol=1e-5)
    np.testing.assert_allclose(again.encode_images(tiles[:2]), model.encode_images(tiles[:2]), atol=1e-4)
    # an index built with the trained model is searched with it by default (its folder is recorded)
    from eosin.vl._index import index_sources

    index_sources([files[0]], model=again, out=tmp_path / "idx.npz")
    assert (
        main(["search", str(tmp_path / "idx.npz"), "--text", "fat", "--k", "1", "--precision", "fp32"]) == 0
    )
    assert record["training"]["seed"] == 0 and record["frozen"] == {"image": True, "text": True}


def test_clip_training_precision_is_measured_not_read_from_cpu_flags(tmp_path, monkeypatch):
    """``train_clip(precision="auto")`` times a training step per candidate precision (as tile and U-Net training
    do): a CPU whose flags promise bf16 trains in float32 when bf16 measures slower, and the record says so."""
    require(CRC)
    from eosin.vl import train_clip

    tasks = fake_calibration_timings(monkeypatch, tmp_path / "home", {"torch-fp32": 1.0, "torch-bf16": 3.0})
    files = [p for p in sorted(CRC.iterdir()) if p.name.split("-")[0] in ("ADI", "TUM")][:4]
    labels = [f.name.split("-")[0] for f in files]
    _, record = train_clip(
        (files, [f"an H&E image of {w}." for w in labels], labels),
        image_encoder="resnet18",
        image_weights=None,
        embed_dim=8,
        epochs=2,
        augment=False,
    )
    both = ["torch-fp32", "torch-bf16"]
    assert ("vl-train-images", both) in tasks and ("train-clip", both) in tasks
    training = record["training"]
    assert training["precision"] == "fp32" and training["frozen_image_precision"] == "fp32"
    assert training["calibration"]["choice"] == "torch-fp32"
    assert set(training["calibration"]["ms_per_item"]) == set(both)


def test_a_single_query_does_not_leave_faiss_on_one_thread_for_later_batches(monkeypatch):
    faiss = pytest.importorskip("faiss")
    from eosin.vl import _index

    before = faiss.omp_get_max_threads()
    monkeypatch.setattr(_index, "_THREADS", None)
    faiss.omp_set_num_threads(3)
    try:
        x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
        index = build_index(x / np.linalg.norm(x, axis=1, keepdims=True))
        index.query(x[:1], 3)  # one query runs on one thread...
        assert faiss.omp_get_max_threads() == 1
        index.query(x[:16], 3)  # ...and a batch on all of them again
        assert faiss.omp_get_max_threads() == 3
    finally:
        faiss.omp_set_num_threads(before)


def test_conch_prompts_become_127_tokens_and_the_class_token_placeholder():
    """The `conch` package's tokenize() (batch_encode_plus) is gone in transformers 5; eosin's call gives the same
    layout: <start_of_text> words <end_of_text> <pad>... truncated to 127, then one <pad> for CoCa's class token."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from eosin.vl._models import conch_token_ids

    vocab = {"<pad>": 0, "<start_of_text>": 1, "<end_of_text>": 2, "[UNK]": 3, "tumor": 4, "stroma": 5}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<start_of_text> $A <end_of_text>", special_tokens=[("<start_of_text>", 1), ("<end_of_text>", 2)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<start_of_text>", eos_token="<end_of_text>", pad_token="<pad>"
    )
    ids = conch_token_ids(tok, ["tumor stroma", "stroma " * 300]).numpy()
    assert ids.shape == (2, 128)
    assert ids[0, :4].tolist() == [1, 4, 5, 2] and not ids[0, 4:].any()
    assert ids[1, 0] == 1 and ids[1, 126] == 2 and (ids[1, 1:126] == 5).all() and ids[1, 127] == 0
