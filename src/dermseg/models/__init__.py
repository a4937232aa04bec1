"""Segmentation models: the thesis's UNetASPP and smp baselines, all on timm encoders.

Build models with :func:`create_model`; every model returns logits.
"""

from __future__ import annotations

from dermseg.models.aspp import ASPP
from dermseg.models.decoder import UNetDecoder
from dermseg.models.encoders import TimmEncoder
from dermseg.models.factory import MODELS, UnknownArchError, create_model, model_spec, parameter_groups
from dermseg.models.heads import PresenceHead, SegmentationHead
from dermseg.models.pretrained import load_encoder_weights, resolve_imagenet_available
from dermseg.models.smp_models import SmpSegmenter
from dermseg.models.unet_aspp import UNetASPP

__all__ = [
    "ASPP",
    "MODELS",
    "PresenceHead",
    "SegmentationHead",
    "SmpSegmenter",
    "TimmEncoder",
    "UNetASPP",
    "UNetDecoder",
    "UnknownArchError",
    "create_model",
    "load_encoder_weights",
    "model_spec",
    "parameter_groups",
    "resolve_imagenet_available",
]
