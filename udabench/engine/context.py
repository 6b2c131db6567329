"""What the harness hands a method (``ctx``): model, device, class set, losses, optimisation services."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..checkpoint import SEGMENTER
from ..classes import ClassSet
from ..losses import segmentation_loss, upsample
from .distributed import DistInfo, average_gradients
from .listing import segmenter_optimizer


def lr_factor(step: int, horizon: int, train_cfg) -> float:
    """The LR of ``step`` as a fraction of the base LR: poly over ``horizon`` steps, times mmcv's linear warm-up
    (``LrUpdaterHook.get_warmup_lr``: ``1 − (1 − i/W)(1 − ratio)`` of the regular LR for ``i < W``)."""
    factor = (1 - step / horizon) ** train_cfg.poly_power
    warmup = train_cfg.warmup_iters
    if step < warmup:
        factor *= 1 - (1 - step / warmup) * (1 - train_cfg.warmup_ratio)
    return factor


@dataclass
class Slot:
    """A module the harness optimises: its optimizer and the base LR of each parameter group."""

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer | None      # None: a frozen module (e.g. a teacher), checkpointed only
    base_lrs: list[float] = field(default_factory=list)


@dataclass
class EmaTeacher:
    """A mean teacher: a frozen copy of the segmenter that follows it after every optimizer step (DACS, DAFormer,
    MIC). After step ``i`` (0-based) each parameter becomes ``a · teacher + (1 − a) · segmenter`` with
    ``a = min(1 − 1/(i + step_offset + 1), alpha)``: the true average of the steps so far until the exponential one
    weighs more. ``step_offset`` 0 is DACS (``trainUDA.py:508-511``: ``update_ema_variables(..., iteration=i_iter)``
    right after ``optimizer.step()`` of iteration ``i_iter``, so the first update copies the segmenter); 1 is
    DAFormer/MIC (``dacs.py:315-321``: ``_update_ema(self.local_iter)`` at the start of the next iteration).
    Parameters only, as both (buffers: the teacher's own; both codes run the teacher with BN in train mode)."""

    module: nn.Module
    alpha: float
    step_offset: int = 0

    def factor(self, step: int) -> float:
        return min(1 - 1 / (step + self.step_offset + 1), self.alpha)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        a = self.factor(step)
        for t, s in zip(self.module.parameters(), student.parameters()):
            t.copy_(a * t + (1 - a) * s)   # the official expression, so the rounding is theirs

    @torch.no_grad()
    def copy_from(self, student: nn.Module) -> None:
        self.module.load_state_dict(student.state_dict())


class MethodContext:
    def __init__(self, model: nn.Module, device: torch.device, class_set: ClassSet, train_cfg,
                 dist_info: DistInfo, source_histogram: Callable[[], torch.Tensor] | None = None):
        """``source_histogram``: computes the source class histogram (``RunData.source_class_histogram``), called
        the first time a method asks for it."""
        self.model = model
        self.device = device
        self.class_set = class_set
        self.num_classes = class_set.num_classes
        self.iterations = train_cfg.iterations
        self.poly_horizon = train_cfg.poly_horizon or train_cfg.iterations   # LR decays as over this many steps
        self.seg_aux_weight = train_cfg.seg_aux_weight
        self.dist = dist_info
        self.slots: dict[str, Slot] = {}
        self.teachers: dict[str, EmaTeacher] = {}
        self._step = 0   # the step in progress (start_step), whose index the teachers' EMA factor reads
        self._train_cfg = train_cfg
        self._source_histogram = source_histogram
        self._class_histogram: torch.Tensor | None = None
        amp = train_cfg.amp
        self._amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" and device.type == "cuda" else None

    # -- services for plugins ------------------------------------------------------------------
    def autocast(self):
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def upsample(self, logits: torch.Tensor, size) -> torch.Tensor:
        """Bilinear up-sampling of logits to ``size`` (H, W) for a training loss, as the suite asks
        (``train.align_corners``: False in udabench's protocol, True in the official codes)."""
        return upsample(logits, size, self._train_cfg.align_corners)

    def supervised_loss(self, out, label: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the main head plus ``seg_aux_weight`` × that of the auxiliary head, on logits
        up-sampled to the labels (``upsample``)."""
        align = self._train_cfg.align_corners
        loss = segmentation_loss(out.main, label, align_corners=align)
        logs = {"loss_seg": loss.item()}
        if out.aux is not None and self.seg_aux_weight > 0:
            aux = segmentation_loss(out.aux, label, align_corners=align)
            logs["loss_seg_aux"] = aux.item()
            loss = loss + self.seg_aux_weight * aux
        return loss, logs

    def supervised_step(self, batch: dict) -> dict[str, float]:
        """Forward a labelled batch, back-propagate ``supervised_loss``; returns the logged losses."""
        with self.autocast():
            loss, logs = self.supervised_loss(self.model(batch["image"]), batch["label"])
        self.backward(loss)
        return logs

    def source_class_histogram(self) -> torch.Tensor:
        """Pixel frequency of each class over the source training labels (sums to 1), for priors."""
        if self._class_histogram is None:
            if self._source_histogram is None:
                raise RuntimeError("this context was built without source data (ctx.source_class_histogram)")
            self._class_histogram = self._source_histogram()
        return self._class_histogram

    def register_module(self, name: str, module: nn.Module, optimizer: str | None = "adam", lr: float = 1e-4,
                        **optim_kwargs) -> nn.Module:
        if name in self.slots:
            raise ValueError(f"a module named {name!r} is already registered")
        self._compile(module.to(self.device))
        params = [p for p in module.parameters() if p.requires_grad]
        if optimizer is None:
            module.requires_grad_(False)
            opt = None
        elif optimizer == "adam":
            opt = torch.optim.Adam(params, lr=lr, **optim_kwargs)
        elif optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=lr, **optim_kwargs)
        else:
            raise ValueError(f"optimizer must be 'adam', 'sgd' or None (frozen), got {optimizer!r}")
        self.slots[name] = Slot(name, module, opt, [lr])
        return module

    def register_teacher(self, name: str = "teacher", alpha: float = 0.99, step_offset: int = 0) -> nn.Module:
        """A mean teacher of the segmenter (``EmaTeacher``): a copy of it now (the trainer copies it again when the
        run starts from another run's weights), registered frozen (checkpointed and resumed with the run, never
        optimised) and moved towards the segmenter after every optimizer step, in ``finish_step``. It is in training
        mode (BN as ``model.bn_mode`` says), as the official teachers are; call it under ``torch.no_grad()``."""
        if not 0 <= alpha < 1:
            raise ValueError(f"register_teacher: alpha must be in [0, 1), got {alpha!r}")
        teacher = copy.deepcopy(self.model)
        teacher.__dict__.pop("_compiled_call_impl", None)   # the copy is compiled on its own (register_module)
        self.register_module(name, teacher, optimizer=None)
        self.teachers[name] = EmaTeacher(teacher, alpha, step_offset)
        return teacher.train()

    def sync_teachers(self) -> None:
        """Every teacher becomes a copy of the segmenter (its weights were just loaded from another run)."""
        for teacher in self.teachers.values():
            teacher.copy_from(self.model)

    # -- used by the trainer ---------------------------------------------------------------------
    def register_segmenter(self) -> None:
        """The segmentation model with its SGD over the groups of ``train.param_listing`` (``listing.py``)."""
        self._compile(self.model)
        opt = segmenter_optimizer(self.model, self._train_cfg)
        self.slots[SEGMENTER] = Slot(SEGMENTER, self.model, opt, [g["lr"] for g in opt.param_groups])

    def start_step(self, step: int) -> float:
        """Zero every gradient and apply the poly schedule (over ``train.poly_horizon`` steps, default the
        iterations: ADVENT stops its 250k-step schedule at 120k), with ``train.warmup_iters`` of linear warm-up
        (``lr_factor``); returns the segmenter's backbone LR."""
        self._step = step
        factor = lr_factor(step, self.poly_horizon, self._train_cfg)
        for slot in self._trained():
            slot.optimizer.zero_grad(set_to_none=True)
            for group, base in zip(slot.optimizer.param_groups, slot.base_lrs):
                group["lr"] = base * factor
        return self.slots[SEGMENTER].base_lrs[0] * factor

    def finish_step(self) -> None:
        """Step every optimizer (gradients averaged over ranks, unscaled under fp16), then the mean teachers."""
        for slot in self._trained():
            average_gradients(slot.module.parameters(), self.dist.world_size)
            if self.scaler:
                self.scaler.step(slot.optimizer)
            else:
                slot.optimizer.step()
        if self.scaler:
            self.scaler.update()
        for teacher in self.teachers.values():   # after the segmenter's update, as the official loops
            teacher.update(self.model, self._step)

    def _compile(self, module: nn.Module) -> None:
        """``train.compile``: the module's forward is compiled in place (``nn.Module.compile``), so plugins,
        checkpoints and state dicts see the same object and parameter names."""
        if self._train_cfg.compile:
            module.compile()

    def _trained(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.optimizer is not None]

    def state_dict(self) -> dict:
        """``{"slots": {name: {"module", "optimizer"}}, "scaler": ...}``: the part of a checkpoint the context owns."""
        slots = {name: {"module": s.module.state_dict(), "optimizer": s.optimizer.state_dict() if s.optimizer else None}
                 for name, s in self.slots.items()}
        return {"slots": slots, "scaler": self.scaler.state_dict() if self.scaler else None}

    def load_state_dict(self, state: dict, only: tuple[str, ...] | None = None, optimizers: bool = True) -> None:
        """Restore every slot (or just those named in ``only``) and the gradient scaler; with ``optimizers``
        False the modules only (a new stage: fresh optimizer state and scaler)."""
        for name, slot in self.slots.items():
            if only is not None and name not in only:
                continue
            saved = state["slots"][name]
            slot.module.load_state_dict(saved["module"])
            if slot.optimizer is not None and optimizers:
                slot.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler and state.get("scaler") is not None and optimizers:
            self.scaler.load_state_dict(state["scaler"])
