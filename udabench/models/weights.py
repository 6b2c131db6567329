"""Backbone weight files as their authors published them (``model.pretrained``), loaded without surgery.

The layout of a file is detected from its keys, among the layouts of the backbone (docs/datasets.md):

| layout | backbone | what the file is | input |
|---|---|---|---|
| ``deeplab_init`` | ``deeplab_resnet101`` | ADVENT's ``DeepLab_resnet_pretrained_imagenet.pth``, AdaptSegNet/MaxSquare's ``DeepLab_resnet_pretrained_init-f81d91e8.pth``: every key under one prefix (``Scale.``), the trunk's names after it, the file's own 21-class classifier ``layer5.*`` skipped | ``caffe_bgr`` |
| ``caffe_vgg16`` | ``vgg16`` | the caffe VGG-16 conversion ``vgg16-00b39a1b.pth``: ``features.N.*``, fully connected layers under the pre-2017 torchvision names ``classifier.1`` / ``classifier.4`` | ``caffe_bgr_vgg`` |
| ``torchvision_vgg16`` | ``vgg16`` | torchvision's ``vgg16``: ``features.N.*`` (``classifier.0/3/6`` ignored) | ``imagenet`` |
| ``mmcv_v1c`` | ``resnet101c``, ``resnet50c`` | mmcv's ResNetV1c ImageNet files (``open-mmlab://resnet101_v1c`` = ``resnet101_v1c-e67eebb6.pth``, DAFormer/MIC's DeepLab-V2 init): the deep stem under ``stem.0/1/3/4/6/7``, which timm names ``conv1.0/1/3/4/6`` and ``bn1``; every other tensor under timm's names (``fc.*`` ignored) | ``imagenet`` |
| ``timm`` | timm backbones | the backbone's own names: a timm state dict, or torchvision's ``resnet101-5d3b4d8f.pth`` for ``resnet101`` (same names; ``fc.*`` ignored) | ``imagenet`` |

This is what the official loaders do (ADVENT ``scripts/train.py:95-102``, MaxSquare ``deeplab_multi.py:177-186``,
AdaptSegNet ``train_gta2cityscapes_multi.py:193-201``: drop each key's first component, skip ``layer5``).
BN ``num_batches_tracked`` counters, which files saved before PyTorch 0.4.1 lack, are taken from the
freshly built backbone (0), as PyTorch itself does for such state dicts; they only matter for BN with
``momentum=None``, which no udabench model uses.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, UdabenchError

try:
    from numpy._core import multiarray as _multiarray  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

# A weights file holds tensors in containers; numpy scalars and arrays are allowed as well (MaxSquare's
# checkpoints store best_MIou as a numpy float, udabench's its numpy RNG state), under both module names
# numpy has pickled them with. None of these globals runs code: they rebuild numbers and arrays from bytes.
_NUMPY_GLOBALS = [(getattr(_multiarray, name), f"numpy.{module}.multiarray.{name}")
                  for name in ("scalar", "_reconstruct") for module in ("core", "_core")]
_NUMPY_GLOBALS += [np.ndarray, np.dtype, *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdgU"}]


def read_tensor_file(path: str | Path, what: str) -> Any:
    """The object stored in a PyTorch file, read with ``weights_only=True`` (nothing in it can run code).
    ``what`` names the setting the path came from, for the error messages."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what}: file {str(path)!r} does not exist.")
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file, or objects weights_only refuses
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and found:
            raise UdabenchError(f"{what}: {str(path)!r} holds objects that would run code when loaded "
                                f"({found.group(1)}); udabench reads only tensors, numbers and containers, so "
                                f"nothing in it was run.") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:Check the documentation|$)", str(exc), re.S)
        reason = " ".join(detail.group(1).split()) if detail else (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UdabenchError(f"{what}: cannot read {str(path)!r} as a PyTorch file of tensors ({reason}); it is "
                            f"damaged or not a PyTorch file.") from None


def tensors_of(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, or of the ``state_dict`` entry of a checkpoint dict."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return {k: v for k, v in obj.items() if torch.is_tensor(v)} if isinstance(obj, dict) else {}


def common_prefix(keys) -> str | None:
    """The first component shared by every key (``Scale``, ``module``), None if there is none."""
    firsts = {k.split(".", 1)[0] for k in keys if "." in k}
    if len(firsts) != 1 or any("." not in k for k in keys):
        return None
    return firsts.pop()


@dataclass(frozen=True)
class Layout:
    name: str
    description: str                                     # what such a file is (for error messages)
    input_norm: str                                      # what its weights expect (``input_norm.py``)
    convert: Callable[[dict, dict], dict | None]         # (file tensors, backbone tensors) -> backbone names, or None


def _deeplab_init(state: dict, own: dict) -> dict | None:
    prefix = common_prefix(state)
    if prefix is None or f"{prefix}.conv1.weight" not in state:
        return None
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in state.items() if not k[cut:].startswith("layer5.")}


def _caffe_vgg16(state: dict, own: dict) -> dict | None:
    if "features.0.weight" not in state or not {"classifier.1.weight", "classifier.4.weight"} & set(state):
        return None
    return {k: v for k, v in state.items() if k.startswith("features.")}


def _torchvision_vgg16(state: dict, own: dict) -> dict | None:
    return {k: v for k, v in state.items() if k.startswith("features.")} if "features.0.weight" in state else None


# mmcv's deep stem (``stem`` = conv, BN, ReLU, conv, BN, ReLU, conv, BN, ReLU; MIC ``backbones/resnet.py:589-622``) ->
# timm's (``conv1`` = the three convolutions with their first two BNs, ``bn1`` = the last BN)
MMCV_STEM = {"stem.0.": "conv1.0.", "stem.1.": "conv1.1.", "stem.3.": "conv1.3.", "stem.4.": "conv1.4.",
             "stem.6.": "conv1.6.", "stem.7.": "bn1."}


def _mmcv_v1c(state: dict, own: dict) -> dict | None:
    if "stem.0.weight" not in state:
        return None
    def rename(key: str) -> str:
        prefix = next((p for p in MMCV_STEM if key.startswith(p)), None)
        return MMCV_STEM[prefix] + key[len(prefix):] if prefix else key
    return {rename(k): v for k, v in state.items()}


def _own_names(state: dict, own: dict) -> dict | None:
    return state if set(state) & set(own) else None


DEEPLAB_INIT = Layout("deeplab_init", "a DeepLab init file (keys like 'Scale.conv1.weight', "
                      "'Scale.layer1.0.conv1.weight', its classifier 'Scale.layer5.*' skipped)", "caffe_bgr", _deeplab_init)
CAFFE_VGG16 = Layout("caffe_vgg16", "the caffe VGG-16 conversion vgg16-00b39a1b.pth ('features.N.*' and "
                     "'classifier.1/.4.*')", "caffe_bgr_vgg", _caffe_vgg16)
TORCHVISION_VGG16 = Layout("torchvision_vgg16", "a torchvision vgg16 state dict ('features.N.*')", "imagenet",
                           _torchvision_vgg16)
MMCV_V1C = Layout("mmcv_v1c", "mmcv's ResNetV1c ImageNet file resnet101_v1c-e67eebb6.pth (open-mmlab://resnet101_v1c; "
                  "keys like 'stem.0.weight', 'layer1.0.conv1.weight')", "imagenet", _mmcv_v1c)
TIMM = Layout("timm", "a state dict with the backbone's own names (timm's, or torchvision's for a ResNet)",
              "imagenet", _own_names)

# The layouts each backbone reads, most specific first; any other name is a timm backbone.
BACKBONE_LAYOUTS = {"deeplab_resnet101": (DEEPLAB_INIT,), "vgg16": (CAFFE_VGG16, TORCHVISION_VGG16),
                    "resnet101c": (MMCV_V1C, TIMM), "resnet50c": (MMCV_V1C, TIMM)}


def layouts_for(backbone: str) -> tuple[Layout, ...]:
    return BACKBONE_LAYOUTS.get(backbone, (TIMM,))


def load_backbone_weights(backbone: nn.Module, name: str, path: str) -> Layout:
    """Load the weights file ``path`` into the backbone ``name``; returns the layout it was read as.

    Every tensor of the backbone must be in the file with its shape (after the layout's renaming),
    except the backbone's ``new_layers`` (layers the ImageNet network does not have); other keys
    (classifiers) are ignored.
    """
    if not Path(path).is_file():
        raise ConfigError(f"model.pretrained: weights file {path!r} does not exist. Give the path of one of "
                          f"the files of docs/datasets.md, 'timm' for timm's own weights, or 'none' to train "
                          f"from scratch.")
    state = tensors_of(read_tensor_file(path, "model.pretrained"))
    own = {k: v for k, v in backbone.state_dict().items() if not k.startswith(getattr(backbone, "new_layers", ()))}
    for layout in layouts_for(name):
        mapped = layout.convert(state, own)
        if mapped is not None:
            break
    else:
        raise UdabenchError(no_layout_message(path, name, state))
    mapped = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **mapped}
    missing = [k for k in own if k not in mapped]
    shape = lambda t: tuple(t.shape)
    wrong = [f"{k} {shape(mapped[k])} (model: {shape(v)})" for k, v in own.items()
             if k in mapped and shape(mapped[k]) != shape(v)]
    if missing or wrong:
        problems = [f"{len(missing)} missing, e.g. {', '.join(missing[:3])}"] if missing else []
        problems += [f"{len(wrong)} with another shape, e.g. {', '.join(wrong[:3])}"] if wrong else []
        raise UdabenchError(f"model.pretrained: {path!r}, read as {layout.description}, does not fit backbone "
                            f"{name!r}: {'; '.join(problems)}. Use the file of docs/datasets.md for this backbone.")
    backbone.load_state_dict({k: mapped[k] for k in own}, strict=False)
    _detected[_file_key(path, name)] = layout
    return layout


def no_layout_message(path: str, backbone: str, state: dict) -> str:
    tried = "; ".join(f"{layout.name}: {layout.description}" for layout in layouts_for(backbone))
    keys = ", ".join(repr(k) for k in list(state)[:4]) or "none (no tensors)"
    hint = suggest_backbone(state)
    return (f"model.pretrained: {path!r} fits none of the weight layouts backbone {backbone!r} reads (tried "
            f"{tried}). Its {len(state)} tensors have keys like {keys}."
            + (f" It looks like {hint}." if hint else " See docs/datasets.md for the files each backbone reads."))


def suggest_backbone(state: dict) -> str | None:
    """What a file that fits none of a backbone's layouts looks like, from its key names."""
    if _deeplab_init(state, {}) is not None:
        return "a DeepLab init file, which backbone 'deeplab_resnet101' reads"
    if "stem.0.weight" in state:
        return "mmcv's ResNetV1c (resnet101_v1c), which backbone 'resnet101c' reads"
    if "features.0.weight" in state:
        return "a VGG-16 state dict, which backbone 'vgg16' reads"
    if {"conv1.weight", "layer1.0.conv1.weight"} <= set(state):
        return ("a torchvision/timm ResNet, trained for the torchvision trunk: backbone 'resnet101' (timm) reads it; "
                "'deeplab_resnet101' reads the DeepLab init files")
    return None


_detected: dict[tuple, Layout] = {}     # layouts of files read in this process, by (path, mtime, size, backbone)


def _file_key(path: str, backbone: str) -> tuple:
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, backbone


def detect_layout(path: str, backbone: str) -> Layout:
    """The layout of a weights file for a backbone with several layouts (VGG-16), remembered once the file
    was read in this process."""
    key = _file_key(path, backbone)
    if key not in _detected:
        state = tensors_of(read_tensor_file(path, "model.pretrained"))
        layout = next((l for l in layouts_for(backbone) if l.convert(state, {}) is not None), None)
        if layout is None:
            raise UdabenchError(no_layout_message(path, backbone, state))
        _detected[key] = layout
    return _detected[key]


def default_input_norm(backbone: str, pretrained: str) -> str:
    """``model.input_norm: auto``: what the backbone's weights expect (the layout of its file where the
    backbone reads layouts that differ, i.e. VGG-16's caffe or torchvision weights)."""
    layouts = layouts_for(backbone)
    if len({layout.input_norm for layout in layouts}) == 1:
        return layouts[0].input_norm
    if pretrained in ("none", "timm"):
        return layouts[-1].input_norm       # the least specific layout: torchvision's for VGG-16
    if not Path(pretrained).is_file():
        raise ConfigError(f"model.input_norm: 'auto' follows the weights file of backbone {backbone!r}, but "
                          f"{pretrained!r} does not exist here. Set model.input_norm to "
                          f"{' or '.join(sorted({l.input_norm for l in layouts}))} (docs/protocol.md).")
    return detect_layout(pretrained, backbone).input_norm


def resolve_input_norm(cfg) -> str:
    """The input normalisation of a ``ModelConfig``: ``model.input_norm``, or its ``auto`` default."""
    return cfg.input_norm if cfg.input_norm != "auto" else default_input_norm(cfg.backbone, cfg.pretrained)
