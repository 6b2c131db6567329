"""The backbones ``udabench list backbones`` shows, with their role; the paper configuration first."""

BACKBONES = {
    "deeplab_resnet101": "paper configuration: the caffe-style DeepLab-V2 ResNet-101 of ADVENT/AdaptSegNet/MaxSquare; "
                         "reads the official DeepLab init files, caffe BGR input",
    "resnet101": "timm/torchvision ResNet-101 (FADA's trunk): torchvision resnet101-5d3b4d8f.pth or timm weights, "
                 "ImageNet input",
    "resnet101c": "timm's ResNet-101-C (deep stem 32-32-64, stride in the 3x3 conv): mmcv's ResNetV1c, the DeepLab-V2 "
                  "trunk of DAFormer/MIC; reads mmcv's resnet101_v1c-e67eebb6.pth or timm weights, ImageNet input",
    "vgg16": "udabench's DeepLab-V2 VGG-16 (papers' VGG rows): single level; caffe vgg16-00b39a1b.pth or "
             "torchvision vgg16 weights",
    "resnet50": "lighter DeepLab-V2 for ablations",
    "resnet18": "small; CPU experiments",
    "resnet10t": "tiny; the embedded toy suite and the tests",
}
