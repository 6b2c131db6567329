"""Segmentation models: DeepLab-V2 over timm backbones or udabench's own DeepLab-V2 VGG-16."""

from .deeplabv2 import OWN_BACKBONES, ASPPClassifier, DeepLabV2, SegOutput, build_model
from .vgg import VGG16DeepLab

__all__ = ["OWN_BACKBONES", "ASPPClassifier", "DeepLabV2", "SegOutput", "VGG16DeepLab", "build_model"]
