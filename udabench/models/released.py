"""Trained checkpoints as their authors released them -> a state dict of udabench's ``DeepLabV2``, plus the
suite settings (network and evaluation options) each format implies. Pure functions; ``udabench eval``
(``engine/evalrun.py``) scores the result. Layouts read from the official code (docs/datasets.md):

- ``udabench``: a udabench run's ``checkpoints/last.pt`` (``engine/checkpoint.py``: the segmenter's state dict
  under ``slots``). Network and evaluation options: the suite's.
- ``advent``: ADVENT's released models (``GTA2Cityscapes_advent.pth``, ``GTA2Cityscapes_minent_ER.pth``) and
  snapshots, ``torch.save(model.state_dict())`` of ``get_deeplab_v2`` (``train_UDA.py:184``): the caffe-style
  trunk's names, ``layer5`` = aux head on layer3, ``layer6`` = main head on layer4, branches
  ``conv2d_list.0-3`` (dilations 6/12/18/24). Evaluated as ``eval_UDA.py:40-69``: caffe BGR input, main
  head, bilinear ``align_corners=True`` to the native labels, no flip (``fast_hist`` + nan-mean).
- ``maxsquare``: MaxSquare's checkpoints (``train_source.py:465-481``): ``{"epoch", "iteration", "state_dict",
  "optimizer", "best_MIou"}``, the state dict of ``nn.DataParallel(DeeplabMulti)`` (``module.`` prefix), or
  a plain state dict (``evaluate.py:207-216``). The names are ADVENT's, but only branches 0 and 1 (dilations 6,
  12) of each head ever ran (the early ``return`` of ``deeplab_multi.py:62-66``), so the model gets
  ``aspp_dilations: [6, 12]``. Evaluated as ``tools/evaluate.py``: the softmax averaged with the flipped
  image's (``--flip True`` in the README's command), labels resized (nearest) to the 1024×512 input, logits
  up-sampled with ``align_corners=True`` (inside the model, ``deeplab_multi.py:124-128``).
- ``fada``: FADA's checkpoints (``train_adv.py:249``): ``{"iteration", "feature_extractor", "classifier", ...}``,
  ``module.`` prefixes under DDP (stripped as ``test.py:23-30`` does). ResNet-101: ``backbone.`` + torchvision's
  names, ``FrozenBatchNorm2d`` without ``num_batches_tracked``, -> timm ``resnet101`` (the same trunk),
  ImageNet input; VGG-16: ``backbone.N`` of the pool4/pool5-less ``nn.Sequential`` (``feature_extractor.py:8-32``)
  -> ``vgg16``, caffe VGG input. One head, ``classifier.conv2d_list.0-3``. Evaluated as ``test.py:32-44`` and ``:151-153``:
  ``align_corners=True`` to the native labels, no flip. FADA's mIoU is a plain mean (+1e-10) where udabench
  takes the nan-mean: they differ only for a class absent from both the labels and the predictions.

Both DeepLab heads of ADVENT/MaxSquare map onto udabench's ``head`` (main) and ``aux_head``; the trunk keeps
its names (``deeplab_resnet.py``). BN ``num_batches_tracked`` counters missing from a file are taken from
the freshly built model (see ``weights.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..checkpoint import segmenter_state
from ..errors import UdabenchError
from .weights import common_prefix, read_tensor_file

FORMATS = ("udabench", "advent", "maxsquare", "fada")
EVAL_AS_OFFICIAL = {   # the official evaluation of each released format, as suite overrides
    "advent": ["eval.flip=false", "eval.label_size=native", "eval.align_corners=true"],
    "maxsquare": ["eval.flip=true", "eval.label_size=input", "eval.align_corners=true"],
    "fada": ["eval.flip=false", "eval.label_size=native", "eval.align_corners=true"],
}


@dataclass
class Converted:
    state: dict[str, torch.Tensor]                        # a DeepLabV2 state dict (backbone., head., aux_head.)
    overrides: list[str] = field(default_factory=list)    # suite settings the format implies ("key=value")
    step: int | None = None                               # the training step the file records, if any


def convert_checkpoint(path: str, fmt: str) -> Converted:
    """Read ``path`` as a checkpoint of format ``fmt`` (one of ``FORMATS``)."""
    if fmt not in FORMATS:
        raise UdabenchError(f"--format {fmt!r} is not a checkpoint format; use one of {', '.join(FORMATS)}.")
    obj = read_tensor_file(path, "--checkpoint")
    converted = CONVERTERS[fmt](obj)
    if converted is None:
        guess = next((f for f in FORMATS if f != fmt and CONVERTERS[f](obj) is not None), None)
        raise UdabenchError(f"--checkpoint {path!r} is not a {fmt!r} checkpoint ({EXPECTED[fmt]}); its keys look "
                            f"like {_sample_keys(obj)}."
                            + (f" It reads as a {guess!r} checkpoint: pass --format {guess}." if guess else
                               " See docs/datasets.md for the layouts udabench reads."))
    return converted


def load_converted(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load a converted state dict strictly, BN counters the file lacks taken from the model."""
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        problems = [f"{len(items)} {what}, e.g. {', '.join(items[:3])}" for items, what in
                    ((missing, "missing"), (unexpected, "unexpected"), (wrong, "with another shape")) if items]
        raise UdabenchError(f"--checkpoint {path!r} does not fit the model the suite builds: {'; '.join(problems)}. "
                            f"Check the suite's classes (the heads' first dimension) and its model settings; "
                            f"--set changes them.")
    model.load_state_dict(state)


def _from_udabench(obj) -> Converted | None:
    """udabench's own checkpoint format (``udabench/checkpoint.py``)."""
    try:
        state = segmenter_state(obj)
    except (KeyError, TypeError):
        return None
    return Converted(dict(state), [], obj.get("step"))


def _deeplab_heads(state: dict, branches: int) -> dict | None:
    """ADVENT/MaxSquare names -> DeepLabV2's: trunk under ``backbone.``, layer6 -> head, layer5 -> aux_head."""
    if "conv1.weight" not in state or "layer6.conv2d_list.0.weight" not in state:
        return None
    out = {}
    for key, value in state.items():
        head = re.match(r"layer([56])\.conv2d_list\.(\d+)\.(weight|bias)$", key)
        if head is None:
            out[f"backbone.{key}"] = value
        elif int(head[2]) < branches:
            out[f"{'head' if head[1] == '6' else 'aux_head'}.branches.{head[2]}.{head[3]}"] = value
    return out


def _deeplab_overrides(state: dict, dilations: str) -> list[str]:
    return ["model.backbone=deeplab_resnet101", "model.input_norm=caffe_bgr", f"model.aspp_dilations={dilations}",
            f"model.multi_level={'true' if any(k.startswith('layer5.') for k in state) else 'false'}"]


def _from_advent(obj) -> Converted | None:
    state = _tensors(obj)
    converted = _deeplab_heads(state, branches=4)
    if converted is None:
        return None
    return Converted(converted, _deeplab_overrides(state, "[6, 12, 18, 24]") + EVAL_AS_OFFICIAL["advent"])


def _from_maxsquare(obj) -> Converted | None:
    nested = isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)
    state = _strip_module(_tensors(obj["state_dict"] if nested else obj))
    converted = _deeplab_heads(state, branches=2)    # branches 2 and 3 exist but never ran
    if converted is None:
        return None
    return Converted(converted, _deeplab_overrides(state, "[6, 12]") + EVAL_AS_OFFICIAL["maxsquare"],
                     obj.get("iteration") if nested else None)


def _from_fada(obj) -> Converted | None:
    if not (isinstance(obj, dict) and isinstance(obj.get("feature_extractor"), dict)
            and isinstance(obj.get("classifier"), dict)):
        return None
    trunk, head = _strip_module(_tensors(obj["feature_extractor"])), _strip_module(_tensors(obj["classifier"]))
    if "backbone.conv1.weight" in trunk:
        backbone, model = dict(trunk), ["model.backbone=resnet101", "model.input_norm=imagenet"]
    elif "backbone.0.weight" in trunk:
        backbone, model = {_fada_vgg_name(k): v for k, v in trunk.items()}, ["model.backbone=vgg16",
                                                                              "model.input_norm=caffe_bgr_vgg"]
    else:
        return None
    branches = {f"head.branches.{m[1]}.{m[2]}": v for k, v in head.items()
                if (m := re.match(r"conv2d_list\.(\d+)\.(weight|bias)$", k))}
    return Converted({**backbone, **branches},
                     model + ["model.multi_level=false", "model.aspp_dilations=[6, 12, 18, 24]"]
                     + EVAL_AS_OFFICIAL["fada"], obj.get("iteration"))


def _fada_vgg_name(key: str) -> str:
    """FADA's VGG-16 ``backbone.N`` (pool4 removed, so conv5 and later shift by one) -> udabench's ``vgg16``."""
    index, rest = key.split(".", 2)[1:]
    index = int(index)
    if index == 29:
        return f"backbone.fc6.0.{rest}"
    if index == 31:
        return f"backbone.fc7.0.{rest}"
    return f"backbone.features.{index if index < 23 else index + 1}.{rest}"


CONVERTERS = {"udabench": _from_udabench, "advent": _from_advent, "maxsquare": _from_maxsquare, "fada": _from_fada}
EXPECTED = {
    "udabench": "a udabench run's checkpoints/last.pt, with the model under slots.model.module",
    "advent": "a plain state dict with keys like 'conv1.weight', 'layer5.conv2d_list.0.weight' (aux head) and "
              "'layer6.conv2d_list.0.weight' (main head)",
    "maxsquare": "a dict with 'state_dict' (keys like 'module.conv1.weight', 'module.layer6.conv2d_list.0.weight') "
                 "or that state dict itself",
    "fada": "a dict with 'feature_extractor' (keys like 'module.backbone.conv1.weight') and 'classifier' "
            "('module.conv2d_list.0.weight')",
}


def _tensors(obj) -> dict[str, torch.Tensor]:
    return {k: v for k, v in obj.items() if torch.is_tensor(v)} if isinstance(obj, dict) else {}


def _strip_module(state: dict) -> dict:
    """Drop the ``module.`` of (Distributed)DataParallel when every key has it."""
    return {k[len("module."):]: v for k, v in state.items()} if common_prefix(state) == "module" else state


def _sample_keys(obj, n: int = 4) -> str:
    if not isinstance(obj, dict) or not obj:
        return f"none (the file holds a {type(obj).__name__})"
    keys = []
    for key, value in obj.items():   # one level down into nested dicts (checkpoint entries)
        keys += [f"{key}.{k}" for k in list(value)[:2]] if isinstance(value, dict) and value else [key]
    return ", ".join(repr(k) for k in keys[:n])
