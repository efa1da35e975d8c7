"""The registry's ImageNet baselines (torchvision and timm CNNs/ViTs): plain data, registered on import."""

from __future__ import annotations

from eosin.models._registry import HALF, IMAGENET_MEAN, IMAGENET_STD, EncoderSpec

_TV = "https://download.pytorch.org/models/"

#: ImageNet baselines
IMAGENET = [
    EncoderSpec(
        name="resnet18",
        description="ResNet-18, torchvision ImageNet-1k weights (IMAGENET1K_V1)",
        architecture="resnet18",
        loader="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=512,
        pooling="avg",
        licence="BSD-3-Clause",
        weights_url=_TV + "resnet18-f37072fd.pth",
        weights_sha256="f37072fd",
        citation="He, K., Zhang, X., Ren, S. & Sun, J. Deep residual learning for image recognition. CVPR (2016).",
    ),
    EncoderSpec(
        name="resnet50",
        description="ResNet-50, torchvision ImageNet-1k weights (IMAGENET1K_V1)",
        architecture="resnet50",
        loader="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=2048,
        pooling="avg",
        licence="BSD-3-Clause",
        weights_url=_TV + "resnet50-0676ba61.pth",
        weights_sha256="0676ba61",
        citation="He, K., Zhang, X., Ren, S. & Sun, J. Deep residual learning for image recognition. CVPR (2016).",
    ),
    EncoderSpec(
        name="densenet121",
        description="DenseNet-121, torchvision ImageNet-1k weights (the backbone KimiaNet starts from)",
        architecture="densenet121",
        loader="torchvision",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=1024,
        pooling="avg",
        licence="BSD-3-Clause",
        weights_url=_TV + "densenet121-a639ec97.pth",
        weights_sha256="a639ec97",
        citation=(
            "Huang, G., Liu, Z., van der Maaten, L. & Weinberger, K. Q. Densely connected convolutional networks. "
            "CVPR (2017)."
        ),
    ),
    EncoderSpec(
        name="efficientnet_b0",
        description="EfficientNet-B0, timm ImageNet-1k weights (RandAugment recipe)",
        architecture="efficientnet_b0",
        loader="timm",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        embedding_dim=1280,
        pooling="avg",
        licence="Apache-2.0",
        hub_id="timm/efficientnet_b0.ra_in1k",
        weights_file="model.safetensors",
        citation="Tan, M. & Le, Q. V. EfficientNet: rethinking model scaling for convolutional neural networks. ICML (2019).",
    ),
    EncoderSpec(
        name="vit_small_patch16_224",
        description="ViT-S/16, timm ImageNet-21k pretrained, ImageNet-1k fine-tuned (AugReg)",
        architecture="vit_small_patch16_224",
        arch_kwargs={"img_size": 224},
        loader="timm",
        input_size=224,
        mean=HALF,
        std=HALF,
        embedding_dim=384,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
        weights_file="model.safetensors",
        citation=(
            "Steiner, A. et al. How to train your ViT? Data, augmentation, and regularization in vision "
            "transformers. TMLR (2022)."
        ),
    ),
    EncoderSpec(
        name="vit_base_patch16_224",
        description="ViT-B/16, timm ImageNet-21k pretrained, ImageNet-1k fine-tuned (AugReg2)",
        architecture="vit_base_patch16_224",
        arch_kwargs={"img_size": 224},
        loader="timm",
        input_size=224,
        mean=HALF,
        std=HALF,
        embedding_dim=768,
        pooling="cls",
        licence="Apache-2.0",
        hub_id="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        weights_file="model.safetensors",
        citation=(
            "Steiner, A. et al. How to train your ViT? Data, augmentation, and regularization in vision "
            "transformers. TMLR (2022)."
        ),
    ),
]
