"""Checkpoints in other libraries' layouts load to the same outputs as those libraries give (tiny random models).

transformers and open_clip are test-only references here: eosin converts their checkpoints to timm models and needs
neither at run time.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
import transformers

from eosin.models import create_encoder

pytestmark = pytest.mark.torch


def _x(size: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _hf_vit_config(**extra):
    return dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128, **extra)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("phikon", lambda: transformers.ViTModel(transformers.ViTConfig(**_hf_vit_config(patch_size=16, layer_norm_eps=1e-12)), add_pooling_layer=False)),
        ("phikon-v2", lambda: transformers.Dinov2Model(transformers.Dinov2Config(**_hf_vit_config(patch_size=16, image_size=224)))),
        ("hibou-b", lambda: transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(**_hf_vit_config(patch_size=14, image_size=224, num_register_tokens=4)))),
    ],
)  # fmt: skip
def test_transformers_vit_checkpoints_match_transformers(tmp_path, name, make):
    torch.manual_seed(0)
    reference = make().eval()
    for param in reference.parameters():  # random non-trivial values everywhere (layer scales, norms)
        param.data.normal_(0, 0.2)
    reference.save_pretrained(tmp_path / name)
    encoder = create_encoder(name, weights=tmp_path / name, tiny=True)
    with torch.inference_mode():
        expected = reference(pixel_values=_x(224)).last_hidden_state[:, 0]
        _close(encoder(_x(224)), expected)


def test_transformers_clip_checkpoint_matches_transformers(tmp_path):
    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(
        **_hf_vit_config(patch_size=32, image_size=224, hidden_act="quick_gelu", projection_dim=16)
    )
    reference = transformers.CLIPVisionModelWithProjection(config).eval()
    reference.save_pretrained(tmp_path / "plip")
    encoder = create_encoder("plip", weights=tmp_path / "plip", tiny=True)
    with torch.inference_mode():
        _close(encoder(_x(224)), reference(pixel_values=_x(224)).image_embeds)


def test_transformers_siglip_checkpoint_matches_transformers(tmp_path):
    torch.manual_seed(0)
    config = transformers.SiglipVisionConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=119,
        patch_size=14,
        image_size=448,
    )
    reference = transformers.SiglipVisionModel(config).eval()
    reference.save_pretrained(tmp_path / "medsiglip")
    encoder = create_encoder("medsiglip-448", weights=tmp_path / "medsiglip", tiny=True)
    with torch.inference_mode():
        _close(encoder(_x(448)), reference(pixel_values=_x(448)).pooler_output)


def test_open_clip_checkpoint_matches_open_clip(tmp_path):
    torch.manual_seed(0)
    reference = open_clip.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=32, image_size=224),
        text_cfg=open_clip.CLIPTextCfg(layers=1, width=32, heads=2, context_length=8, vocab_size=64),
    ).eval()
    torch.save(reference.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    encoder = create_encoder("quiltnet-b-32", weights=tmp_path, tiny=True)
    with torch.inference_mode():
        _close(encoder(_x(224)), reference.encode_image(_x(224)))


def test_conch_pooler_matches_open_clip():
    source = create_encoder("conch", weights=None, tiny=True)
    pooler = source.model.attn_pool_contrast
    oracle = open_clip.transformer.AttentionalPooler(
        16, 32, n_head=8, n_queries=1, norm_layer=torch.nn.LayerNorm
    )
    oracle.load_state_dict(pooler.state_dict())
    tokens = torch.randn(2, 50, 32)
    with torch.inference_mode():
        _close(pooler(tokens), oracle(tokens))
