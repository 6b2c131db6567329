"""The one factory of a run's moving parts: model, method context and method, as the trainer uses them."""

from __future__ import annotations

import torch

from ..config import Suite
from ..method import Method
from ..models import build_model
from .context import MethodContext
from .distributed import DistInfo


def build_run(suite: Suite, method: type[Method], hparams, device: torch.device, dist: DistInfo = DistInfo(),
              source_histogram=None) -> tuple[MethodContext, Method]:
    """The context a method sees (segmenter built, moved, registered with its optimizer) and the method,
    set up (its own modules registered). ``source_histogram`` computes the source class histogram on demand."""
    model = build_model(suite.model, suite.class_set.num_classes).to(device)
    if suite.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ctx = MethodContext(model, device, suite.class_set, suite.train, dist, source_histogram)
    ctx.register_segmenter()
    plugin = method(hparams, ctx)
    plugin.setup(model, ctx)
    model.train()   # also puts BN in the eval mode ``model.bn_mode`` asks for
    return ctx, plugin
