"""The method plugin contract (docs/adding-a-method.md).

A method is one class in one file under ``methods/``::

    @register
    class MinEnt(Method):
        name = "minent"
        paper = "Vu et al., ADVENT, CVPR'19"
        description = "entropy minimisation on target predictions"

        @dataclass
        class Hparams:
            lambda_ent: float = 1e-3

        def train_step(self, source, target, step):
            ...
            self.ctx.backward(loss)
            return {"loss_seg": ...}

The harness owns everything else: before ``train_step`` it zeroes the gradients of every registered
module and sets their learning rates; after it, it steps every optimizer, then moves each mean teacher
(``register_teacher``) towards the segmenter. Gradients of several
``ctx.backward`` calls therefore accumulate into one update, as in the official ADVENT/FADA loops.
Batches are dicts ``{"image": N×3×H×W, "label": N×H×W, "name": [...]}`` already on the device;
``target`` carries no "label" unless the method declares ``uses_target_labels``, and a "pseudo_label" (a
teacher run's hard labels) when it declares ``uses_teacher_labels``.
"""

from __future__ import annotations

import contextlib
import inspect
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .errors import PluginError
from .schema import show
from .vocabulary import Role

if TYPE_CHECKING:   # torch is imported where a run is built, not by `import udabench` (the CLI starts fast)
    from torch import nn


class Method:
    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    description: ClassVar[str] = ""
    display_name: ClassVar[str] = ""     # row label in tables (defaults to the name; not inherited by another name)
    role: ClassVar[str] = Role.UDA       # in tables: what the method is for (vocabulary.Role), checked at registration
    uses_source: ClassVar[bool] = True
    uses_target: ClassVar[bool] = True   # False: target images never reach the model in training
    uses_target_labels: ClassVar[bool] = False  # True only for the oracle: labels are withheld otherwise
    # True: target batches carry "pseudo_label", the hard argmax of a teacher run's final model (the suite names
    # it: stages.<method>.teacher; engine/pseudo.py), e.g. self-distillation
    uses_teacher_labels: ClassVar[bool] = False

    @dataclass
    class Hparams:
        pass

    def __init__(self, hparams, ctx):
        self.hp = hparams
        self.ctx = ctx

    @classmethod
    def check(cls, hparams, suite) -> None:
        """Refuse a configuration this method cannot train with: raise a ``ConfigError`` naming the setting and the
        fix. Called when runs are planned, before anything is built or trained (Dassl's ``check_cfg``);
        ``suite`` is the run's own (its stage's settings merged). Default: every configuration is fine."""

    def setup(self, model: nn.Module, ctx) -> None:
        """Build extra modules and register them with ``self.register_module``; default: none."""

    def train_step(self, source: dict | None, target: dict | None, step: int) -> dict[str, float]:
        raise NotImplementedError

    def domain_logits(self, out, image):
        """For the discriminator-accuracy validator (udabench/validators.py): the method's domain discriminator's
        logits on the segmenter's output ``out`` for the images ``image`` (any shape; > 0 says "target"), or None
        for a method without a discriminator (the default)."""
        return None

    def register_module(self, name: str, module: nn.Module, optimizer: str | None = "adam", lr: float = 1e-4,
                        **optim_kwargs) -> nn.Module:
        """Hand a module to the harness: it is moved to the device, optimised with the poly schedule,
        checkpointed and resumed; its gradients are averaged across ranks. ``optimizer=None`` registers a
        frozen module (e.g. a teacher): checkpointed and resumed, never optimised. Returns the module."""
        return self.ctx.register_module(name, module, optimizer=optimizer, lr=lr, **optim_kwargs)

    def register_teacher(self, name: str = "teacher", alpha: float = 0.99, step_offset: int = 0) -> nn.Module:
        """A mean teacher of the segmenter (DACS, DAFormer): a frozen copy that the harness moves towards the
        segmenter after every optimizer step, ``θ' ← a θ' + (1 − a) θ`` with ``a = min(1 − 1/(i + step_offset + 1),
        alpha)`` after step ``i``; checkpointed and resumed with the run (``engine/context.py``, ``EmaTeacher``).
        Returns the module; call it under ``torch.no_grad()``."""
        return self.ctx.register_teacher(name, alpha, step_offset)

    @staticmethod
    @contextlib.contextmanager
    def frozen(*modules: nn.Module) -> Iterator[None]:
        """No gradient reaches the parameters of ``modules`` inside the block (e.g. a discriminator while the
        segmenter learns to fool it); their ``requires_grad`` flags are restored afterwards."""
        params = [p for m in modules for p in m.parameters()]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)

    @classmethod
    def row_label(cls) -> str:
        """``display_name``, unless it was given to a parent of another name (a plugin that subclasses MaxSquare is
        not labelled "MaxSquare"); else the name."""
        labelled = next(c for c in cls.__mro__ if "display_name" in vars(c))
        return cls.display_name if cls.display_name and labelled.name == cls.name else cls.name


def check_logs(logs, method: type[Method], step: int) -> dict[str, float]:
    """What ``train_step`` returned, as the harness logs it: a dict of names to floats; else a ``PluginError``
    naming the plugin file (a tensor kept in the logs would also keep its autograd graph alive)."""
    fix = "train_step must return a dict of loss names to Python floats, e.g. {'loss_seg': loss.item()}"
    if not isinstance(logs, dict):
        raise PluginError(f"{plugin_file(method)}: {method.__name__}.train_step returned {type(logs).__name__} "
                          f"{show(logs)} at step {step}; {fix}.")
    bad = [f"{k!r}: {type(v).__name__} {show(v)}" for k, v in logs.items()
           if not isinstance(k, str) or not isinstance(v, numbers.Real) or isinstance(v, bool)]
    if bad:
        raise PluginError(f"{plugin_file(method)}: {method.__name__}.train_step returned {'; '.join(bad[:3])} at "
                          f"step {step}; {fix} (call .item() on a tensor).")
    return {k: float(v) for k, v in logs.items()}


def plugin_file(method: type[Method]) -> str:
    try:
        return inspect.getfile(method)
    except TypeError:   # a class without a source file (defined interactively)
        return f"method {method.name!r}"
