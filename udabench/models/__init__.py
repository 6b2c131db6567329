"""Segmentation models: DeepLab-V2 over timm backbones."""

from .deeplabv2 import ASPPClassifier, DeepLabV2, SegOutput, build_model

__all__ = ["ASPPClassifier", "DeepLabV2", "SegOutput", "build_model"]
