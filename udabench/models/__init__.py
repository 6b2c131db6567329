"""Segmentation models: DeepLab-V2 over timm backbones or udabench's own trunks (the papers' DeepLab ResNet-101,
the DeepLab-V2 VGG-16), the input normalisation of their weights, and the readers of weight files."""

from .backbones import BACKBONES
from .deeplab_resnet import DeepLabResNet
from .deeplabv2 import OWN_BACKBONES, ASPPClassifier, DeepLabV2, SegOutput, build_model
from .input_norm import INPUT_NORMS, InputNorm
from .vgg import VGG16DeepLab

__all__ = ["BACKBONES", "INPUT_NORMS", "OWN_BACKBONES", "ASPPClassifier", "DeepLabResNet", "DeepLabV2",
           "InputNorm", "SegOutput", "VGG16DeepLab", "build_model"]
