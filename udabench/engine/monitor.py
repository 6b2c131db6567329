"""What a run reports while it trains: curves, panels and notes for its loggers, and the pace of its text lines.

Every ``train.log_every`` steps: each loss term (``train/<name>``, means over those steps), the learning rate of
every registered module (``lr/<slot>``, ``lr/<slot>/group<i>`` for further parameter groups), step and data-wait
time (``time/step_s``, ``time/data_s``, ``time/compute_s``; the first step of a phase is not timed, as in the
rows), ``time/images_per_s``, and on CUDA the allocated and peak GPU memory
(``memory/gpu_gb``, ``memory/gpu_peak_gb``). At every evaluation, from its metrics row: the mIoU of every class
set (``eval/mIoU/<set>``), the IoU of every class (``iou/<class>``), the mean target prediction entropy
(``eval/target_entropy``) and, when the suite has one, the source-val mIoU; and a panel (``eval/panel``) of a
few fixed target eval images, one row each: image, ground truth, prediction, entropy map (the pictures of
``report --figures``, ``analysis/panels.py``). Notes (``run``, ``stage``) say what the run and each phase are.

Nothing here changes what a run computes: the panel is predicted in eval mode without gradients and draws no
random numbers, so metrics rows are identical with and without loggers (tested).
"""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np
import torch

from ..classes import ClassSet, colour_table
from ..data import evenly_spaced
from .loggers import Loggers
from .predict import colour_panels
from .stages import WARMUP_TITLE

PANEL_COLUMNS = "image | ground truth | prediction | entropy (0 = certain, 1 = uniform)"


class Monitor:
    def __init__(self, loggers: Loggers, eval_set, class_set: ClassSet, panel_images: int):
        self.loggers, self.eval_set, self.class_set, self.panel_images = loggers, eval_set, class_set, panel_images
        self._items = None
        self.seconds = 0.0                 # spent here: what watching a run costs (docs/monitoring.md)

    def step(self, step: int, means: dict, slots: dict, device: torch.device) -> None:
        """The curves of the last ``log_every`` steps (``means``: ``Meter.means``); ``slots``: ``ctx.slots``."""
        if self.loggers.active:
            with self._timed():
                self.loggers.scalars(step, step_scalars(means, slots, device))

    def panel(self, model: torch.nn.Module, device: torch.device) -> np.ndarray | None:
        """The panel of the fixed eval images, predicted by ``model`` (in eval mode); None when nothing logs."""
        if not (self.loggers.active and self.panel_images):
            return None
        with self._timed(), torch.no_grad():
            if self._items is None:                  # decoded once; spread over the split as in --figures
                self._items = list(evenly_spaced(self.eval_set, self.panel_images))
            pictures = colour_panels(model, self._items, colour_table(self.class_set), device)
            return np.concatenate([np.concatenate([image, truth, pred, entropy], axis=1)
                                   for image, pred, entropy, truth in pictures], axis=0)

    def evaluation(self, row: dict, panel: np.ndarray | None = None) -> None:
        """The scalars of one metrics row (and its panel), at the row's step."""
        if not self.loggers.active:
            return
        with self._timed():
            self.loggers.scalars(row["step"], eval_scalars(row))
            if panel is not None:
                self.loggers.image(row["step"], "eval/panel", panel)

    def note(self, step: int, tag: str, text: str) -> None:
        if self.loggers.active:
            with self._timed():
                self.loggers.text(step, tag, text)

    def cost(self, elapsed: float) -> str:
        """What watching the run cost: the seconds spent here of ``elapsed`` (the log.txt line of a run)."""
        names = ", ".join(type(b).__name__ for b in self.loggers.backends)
        return f"loggers ({names}): {self.seconds:.2f} s of {elapsed:.1f} s ({100 * self.seconds / elapsed:.2f} %)"

    def flush(self) -> None:
        with self._timed():
            self.loggers.flush()

    def close(self) -> None:
        with self._timed():
            self.loggers.close()

    @contextlib.contextmanager
    def _timed(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


def step_scalars(means: dict, slots: dict, device: torch.device) -> dict[str, float]:
    out = {f"train/{name}": value for name, value in means["losses"].items()}
    for slot in slots.values():
        if slot.optimizer is not None:
            for i, group in enumerate(slot.optimizer.param_groups):
                out[f"lr/{slot.name}" + (f"/group{i}" if i else "")] = group["lr"]
    timings = {"time/step_s": means["step_time"], "time/data_s": means["data_time"],
               "time/compute_s": means["compute_time"], "time/images_per_s": means["images_per_s"]}
    out |= {tag: value for tag, value in timings.items() if value is not None}
    if device.type == "cuda":
        out["memory/gpu_gb"] = torch.cuda.memory_allocated(device) / 2**30
        out["memory/gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def eval_scalars(row: dict) -> dict[str, float]:
    """The curves of one metrics row (``engine/rows.py``); undefined IoUs (a class absent from the split) are
    left out."""
    sets = row["class_sets"]
    trained = row.get("protocol", {}).get("classes") or next(iter(sets))
    out = {f"eval/mIoU/{name}": scores["miou"] for name, scores in sets.items()}
    out |= {f"iou/{name}": value for name, value in sets[trained]["iou"].items()}
    out |= {"eval/target_entropy": row.get("target_entropy"), "eval/source_val_mIoU": row.get("source_val_miou")}
    return {tag: value for tag, value in out.items() if value is not None}


def describe_run(identity: dict, label: str, warmup: int, iterations: int) -> str:
    """The ``run`` note: what the run is, in Markdown (TensorBoard's text tab)."""
    run = identity["run"]
    steps = f"1-{warmup}: {WARMUP_TITLE}; " * bool(warmup) + f"{warmup + 1}-{iterations}: {label}"
    lines = [f"**{label}** (`{run.get('method')}`), seed {run['seed']}, suite `{identity['suite'].get('name')}`",
             f"steps {steps}", f"hyper-parameters: `{json.dumps(run.get('hparams', {}), sort_keys=True)}`",
             f"panels (eval/panel), one row per image: {PANEL_COLUMNS}"]
    return "\n\n".join(lines)


class Pace:
    """Steps/s since the last line and the time left, from the wall clock of this process.

    The time left divides the steps to go by the mean rate since this process began training, so evaluations
    and checkpoints count as they will again; a resumed run starts its clock at the resumed step.
    """

    def __init__(self, step: int, total: int):
        now = time.perf_counter()
        self.first = self.last = (now, step)
        self.total = total

    def line(self, step: int) -> str:
        now = time.perf_counter()
        recent = (step - self.last[1]) / max(now - self.last[0], 1e-9)
        mean = (step - self.first[1]) / max(now - self.first[0], 1e-9)
        self.last = (now, step)
        left = (self.total - step) / mean if mean > 0 else float("inf")
        return f"{recent:.2f} it/s  ETA {duration(left)}"


def duration(seconds: float) -> str:
    """``h:mm:ss`` (``Nd h:mm:ss`` beyond a day; ``?`` when unknown)."""
    if not np.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d " if days else "") + f"{hours}:{minutes:02d}:{secs:02d}"
