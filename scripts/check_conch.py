#!/usr/bin/env python3
"""Check eosin's CONCH against MahmoodLab's own ``conch`` package, without the gated weights.

CONCH's model code is not on PyPI, so the test suite cannot install it; run this where it is installed
(``pip install git+https://github.com/Mahmoodlab/CONCH.git``). It builds CONCH's CoCa from the package's own
``conch_ViT-B-16`` configuration with random weights (seeded), saves them as ``pytorch_model.bin`` in a temporary
folder (the file name of the gated release), loads that folder with ``eosin.vl.load_vl_model("conch", weights=...)``
and compares, on real tiles of ../shared/data and a few prompts:

- images: eosin's ``encode_images`` against the package's preprocessing (``create_model_from_pretrained``'s
  transform on PIL images) + ``model.encode_image(..., proj_contrast=True, normalize=True)``;
- texts: eosin's ``encode_text`` against ``model.encode_text`` of the package's tokenizer (``max_length`` 127 +
  the ``<pad>`` placeholder for the class token), normalised;
- the image tower of ``eosin embed --model conch`` (eosin's own timm ViT + attentional pooler, loaded from the
  same file) against ``model.encode_image(..., proj_contrast=False, normalize=False)`` on the same batch.

Usage:  python scripts/check_conch.py [--tiles FOLDER]
Prints one JSON object with the largest absolute differences; exit 1 when they exceed 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TILES = Path(os.environ.get("EOSIN_DATA", ROOT.parent / "shared" / "data")) / "tiles" / "kather2016"
PROMPTS = ["an H&E image of tumor.", "an H&E image of adipose tissue.", "lymphocytes", "stroma " * 60]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=Path, default=TILES)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from conch.open_clip_custom import create_model_from_pretrained, get_tokenizer
    from conch.open_clip_custom.coca_model import CoCa
    from conch.open_clip_custom.factory import CFG_DIR
    from PIL import Image

    from eosin.models import create_encoder
    from eosin.vl import load_vl_model

    config = json.loads((CFG_DIR / "conch_ViT-B-16.json").read_text())
    config.pop("custom_text", None)
    torch.manual_seed(0)
    files = sorted(p for p in args.tiles.rglob("*") if p.suffix.lower() in (".tif", ".png", ".jpg"))[:8]
    if not files:
        raise SystemExit(f"no tiles under {args.tiles}")
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(CoCa(**config).state_dict(), Path(tmp) / "pytorch_model.bin")
        weights = str(Path(tmp) / "pytorch_model.bin")
        ref, preprocess = create_model_from_pretrained("conch_ViT-B-16", checkpoint_path=weights)
        ref.eval()
        ours = load_vl_model("conch", weights=tmp, device="cpu", precision="fp32")
        pil = [Image.open(f).convert("RGB") for f in files]
        with torch.inference_mode():
            batch = torch.stack([preprocess(p) for p in pil])
            want_img = ref.encode_image(batch, proj_contrast=True, normalize=True)
            tok = get_tokenizer()
            ids = tok(PROMPTS, max_length=127, truncation=True, padding="max_length", return_tensors="pt")
            ids = F.pad(ids["input_ids"], (0, 1), value=tok.pad_token_id)
            want_txt = F.normalize(ref.encode_text(ids), dim=-1)
            want_tower = ref.encode_image(batch, proj_contrast=False, normalize=False)
            tower = create_encoder("conch", weights=weights)  # `eosin embed --model conch`: eosin's own timm tower
            got_tower = tower(batch)
        got_img = ours.encode_images([np.asarray(p) for p in pil])
        got_txt = ours.encode_text(PROMPTS)
    result = {
        "tiles": len(files),
        "prompts": len(PROMPTS),
        "image_max_abs_diff": float(np.abs(got_img - want_img.numpy()).max()),
        "text_max_abs_diff": float(np.abs(got_txt - want_txt.numpy()).max()),
        "image_cosine_min": float((got_img * want_img.numpy()).sum(1).min()),
        "embed_tower_max_abs_diff": float((got_tower - want_tower).abs().max()),
        "embed_tower_max_abs": float(want_tower.abs().max()),
        "weights_id": ours.weights_id,
    }
    print(json.dumps(result))
    worst = max(result["image_max_abs_diff"], result["text_max_abs_diff"])
    return 0 if worst < 1e-4 and result["embed_tower_max_abs_diff"] < 1e-3 * result["embed_tower_max_abs"] else 1


if __name__ == "__main__":
    sys.exit(main())
