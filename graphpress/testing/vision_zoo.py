"""torchvision and timm models with random weights and small example images, for sweeping graphpress over vision
model zoos nobody tuned it for (``benchmarks/vision_zoo_sweep.py``).

Needs torchvision and timm (neither is a graphpress dependency, nor installed in CI). Nothing is downloaded:
every model is built with ``weights=None`` / ``pretrained=False``. Inputs are one image (batch 1) at the smallest
size the model accepts, 64 px where it can, so a sweep fits a small shared CPU; models whose size is baked into
the architecture (window partitions, position tables) get ``img_size`` where the builder takes it, else the size
they need. ``vision_case_names()`` lists them; ``vision_case(name)`` builds one (seeded, eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .zoo import ZooCase, randomize_batchnorm

__all__ = ["vision_case", "vision_case_names"]

_CLASSES = 10


@dataclass(frozen=True)
class _Spec:
    """How to build one zoo model: ``source`` is ``torchvision`` (a ``torchvision.models`` builder), ``segment``
    (``torchvision.models.segmentation``), ``detect`` (``torchvision.models.detection``) or ``timm``."""

    source: str
    builder: str
    size: int = 64
    options: dict[str, Any] = field(default_factory=dict)


def _tv(builder: str, size: int = 64, **options: Any) -> _Spec:
    return _Spec("torchvision", builder, size, options)


def _timm(builder: str, size: int = 64, img_size: bool = True, **options: Any) -> _Spec:
    # img_size=True: the model's position tables / windows are sized from img_size, so build it at the input size.
    return _Spec("timm", builder, size, {**({"img_size": size} if img_size else {}), **options})


_SPECS: dict[str, _Spec] = {
    # torchvision classification
    "tv_resnet18": _tv("resnet18"),
    "tv_resnet50": _tv("resnet50"),
    "tv_resnext50_32x4d": _tv("resnext50_32x4d"),
    "tv_wide_resnet50_2": _tv("wide_resnet50_2"),
    "tv_mobilenet_v2": _tv("mobilenet_v2"),
    "tv_mobilenet_v3_small": _tv("mobilenet_v3_small"),
    "tv_mobilenet_v3_large": _tv("mobilenet_v3_large"),
    "tv_efficientnet_b0": _tv("efficientnet_b0"),
    "tv_efficientnet_v2_s": _tv("efficientnet_v2_s"),
    "tv_regnet_x_400mf": _tv("regnet_x_400mf"),
    "tv_regnet_y_400mf": _tv("regnet_y_400mf"),
    "tv_convnext_tiny": _tv("convnext_tiny"),
    "tv_vit_b_16": _tv("vit_b_16", 64, image_size=64),
    "tv_swin_t": _tv("swin_t"),
    "tv_swin_v2_t": _tv("swin_v2_t"),
    "tv_maxvit_t": _tv("maxvit_t", 224),  # partition size 7 at every stage: 224 is the smallest input
    "tv_densenet121": _tv("densenet121"),
    "tv_googlenet": _tv("googlenet", 64, aux_logits=False, init_weights=True),
    "tv_inception_v3": _tv("inception_v3", 96, aux_logits=False, init_weights=True),  # 75 px at least
    "tv_shufflenet_v2_x0_5": _tv("shufflenet_v2_x0_5"),
    "tv_squeezenet1_0": _tv("squeezenet1_0"),
    "tv_mnasnet0_5": _tv("mnasnet0_5"),
    "tv_alexnet": _tv("alexnet"),
    "tv_vgg11": _tv("vgg11", 32),  # adaptive pooling to 7x7 after five halvings: 32 px is enough
    # torchvision segmentation and detection
    "tv_fcn_resnet50": _Spec("segment", "fcn_resnet50", 64, {"num_classes": 5, "weights_backbone": None}),
    "tv_deeplabv3_mobilenet_v3_large": _Spec("segment", "deeplabv3_mobilenet_v3_large", 64,
                                             {"num_classes": 5, "weights_backbone": None}),
    "tv_lraspp_mobilenet_v3_large": _Spec("segment", "lraspp_mobilenet_v3_large", 64,
                                          {"num_classes": 5, "weights_backbone": None}),
    "tv_fasterrcnn_mobilenet_v3_large_320_fpn": _Spec("detect", "fasterrcnn_mobilenet_v3_large_320_fpn", 128,
                                                      {"num_classes": 5, "weights_backbone": None}),
    # timm: the smallest variant of each family
    "timm_resnet10t": _timm("resnet10t", img_size=False),
    "timm_efficientnet_b0": _timm("efficientnet_b0", img_size=False),
    "timm_mobilenetv3_small_050": _timm("mobilenetv3_small_050", img_size=False),
    "timm_mobilenetv4_conv_small_050": _timm("mobilenetv4_conv_small_050", img_size=False),
    "timm_convnext_atto": _timm("convnext_atto", img_size=False),
    "timm_convnextv2_atto": _timm("convnextv2_atto", img_size=False),
    "timm_vit_tiny_patch16": _timm("vit_tiny_patch16_224"),
    "timm_deit_tiny_distilled": _timm("deit_tiny_distilled_patch16_224"),
    "timm_swin_tiny": _timm("swin_tiny_patch4_window7_224", window_size=4),
    "timm_swinv2_tiny": _timm("swinv2_tiny_window8_256", window_size=4),
    "timm_regnetx_002": _timm("regnetx_002", img_size=False),
    "timm_ghostnet_050": _timm("ghostnet_050", img_size=False),
    "timm_repvgg_a0": _timm("repvgg_a0", img_size=False),
    "timm_dla46_c": _timm("dla46_c", img_size=False),
    "timm_hrnet_w18_small": _timm("hrnet_w18_small", img_size=False),
    "timm_nf_regnet_b0": _timm("nf_regnet_b0", img_size=False),
    "timm_edgenext_xx_small": _timm("edgenext_xx_small", img_size=False),
    "timm_levit_128s": _timm("levit_128s"),
    "timm_poolformerv2_s12": _timm("poolformerv2_s12", img_size=False),
    "timm_mixer_s16": _timm("mixer_s16_224"),
    "timm_resmlp_12": _timm("resmlp_12_224"),
    "timm_gmlp_ti16": _timm("gmlp_ti16_224"),
    "timm_cait_xxs24": _timm("cait_xxs24_224"),
    "timm_xcit_nano_12_p16": _timm("xcit_nano_12_p16_224"),
    "timm_coat_lite_tiny": _timm("coat_lite_tiny"),
    "timm_pvt_v2_b0": _timm("pvt_v2_b0", img_size=False),
    "timm_mobilevit_xxs": _timm("mobilevit_xxs", img_size=False),
    "timm_tiny_vit_5m": _timm("tiny_vit_5m_224", img_size=False),
    "timm_efficientformer_l1": _timm("efficientformer_l1", 224, img_size=False),  # attention biases for 7x7
    "timm_fastvit_t8": _timm("fastvit_t8", img_size=False),
    "timm_eva02_tiny": _timm("eva02_tiny_patch14_224", 56),
    "timm_beit_base": _timm("beit_base_patch16_224"),
    "timm_focalnet_tiny_srf": _timm("focalnet_tiny_srf", img_size=False),
    "timm_davit_tiny": _timm("davit_tiny", img_size=False),
    "timm_maxvit_pico": _timm("maxvit_pico_rw_256"),
    "timm_coatnet_pico": _timm("coatnet_pico_rw_224"),
    "timm_hiera_tiny": _timm("hiera_tiny_224"),
    "timm_mambaout_femto": _timm("mambaout_femto", img_size=False),
    "timm_efficientvit_m0": _timm("efficientvit_m0"),
    "timm_repvit_m1": _timm("repvit_m1", img_size=False),
}


def vision_case_names() -> list[str]:
    return list(_SPECS)


def _build(spec: _Spec) -> torch.nn.Module:
    if spec.source == "timm":
        import timm

        return timm.create_model(spec.builder, pretrained=False, num_classes=_CLASSES, **spec.options)
    import torchvision.models as models

    if spec.source == "segment":
        return getattr(models.segmentation, spec.builder)(weights=None, **spec.options)
    if spec.source == "detect":
        return getattr(models.detection, spec.builder)(weights=None, **spec.options)
    return getattr(models, spec.builder)(weights=None, num_classes=_CLASSES, **spec.options)


def _randomize_zero_weights(model: torch.nn.Module) -> torch.nn.Module:
    # Several builders zero-initialize the classifier (torchvision's ViT, timm's MLP-Mixers): the output is then
    # 0 for every input, and no comparison against it means anything. Small random values stand in.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2 and not parameter.any():
                parameter.normal_(0.0, 0.02)
    return model


def vision_case(name: str, seed: int = 0) -> ZooCase:
    """Build the named zoo model (eval mode, weights seeded by ``seed``, BatchNorm statistics randomized so a
    wrong BatchNorm lowering shows) with one example image; a detection model takes a list of images."""
    if name not in _SPECS:
        raise KeyError(f"no vision model {name!r}; choose one of {', '.join(_SPECS)}")
    spec = _SPECS[name]
    torch.manual_seed(seed)
    model = _randomize_zero_weights(randomize_batchnorm(_build(spec))).eval()
    image = torch.randn(1, 3, spec.size, spec.size, generator=torch.Generator().manual_seed(2))
    inputs = ([image[0]],) if spec.source == "detect" else (image,)
    return ZooCase(name, model, inputs)
