"""Experiment trackers behind one small interface: TensorBoard, Weights & Biases, MLflow (mmengine's vis backends).

``train.loggers`` names them; the default is ``[tensorboard]`` where the ``tensorboard`` package is importable
(``pip install 'udabench[tracking]'``), else none. They are how a run is watched, not what it computes, so they
stay out of its identity (``identity.NOT_IDENTITY``). A backend's package is imported when a run opens it, never
before: W&B and MLflow are reached only when a suite names them, with the user's own login and settings
(``WANDB_PROJECT``, ``WANDB_MODE``, ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``, ...).

Steps are the run's optimisation steps (the ``step`` of its metrics rows); tags are ``/``-separated. Only the
main rank opens loggers. A resumed run continues its curves:

- TensorBoard: one run per run directory (``<run dir>/tb/``, so ``tensorboard --logdir results/<suite>`` lists
  ``<method>/seed<S>-<hash>/tb``). The writer opens with ``purge_step`` one past the checkpoint's step, and
  TensorBoard's reader drops the killed attempt's events from that step on: no duplicated or back-dated points.
- W&B: the same W&B run (``id`` from the run id, ``resume="allow"``); W&B ignores points below its last step.
- MLflow: the same MLflow run (found by its ``udabench_run`` tag); MLflow keeps every point, so the steps
  between the checkpoint and a kill appear twice, with equal values (resuming is bit-exact).
"""

from __future__ import annotations

import html
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RunInfo:
    """What a backend needs to name, place and resume a run."""

    log_dir: Path        # the run directory's tracker folder (RunDir.tb_dir)
    run_id: str          # the udabench run id (seed<S>-<hash>)
    name: str            # a readable name: "MinEnt seed 0"
    group: str           # the suite's name
    config: dict         # the run's identity (shown beside its curves)
    start: int = 0       # the step the run resumes from (0: a fresh start)


class Logger:
    """One backend; every method may be called any number of times, ``close`` once."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def image(self, step: int, tag: str, picture: np.ndarray) -> None:
        """``picture``: H×W×3 uint8."""
        raise NotImplementedError

    def text(self, step: int, tag: str, text: str) -> None:
        """``text``: Markdown."""
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoard(Logger):
    def __init__(self, run: RunInfo):
        from torch.utils.tensorboard import SummaryWriter

        if run.start:
            _sort_after_existing_files(run.log_dir)
        # events from purge_step on, of an attempt killed after its checkpoint, are dropped by the reader
        self.writer = SummaryWriter(str(run.log_dir), purge_step=run.start + 1 if run.start else None)

    def scalars(self, step, values):
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, step, tag, picture):
        self.writer.add_image(tag, picture, step, dataformats="HWC")

    def text(self, step, tag, text):
        self.writer.add_text(tag, text, step)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def _sort_after_existing_files(log_dir: Path) -> None:
    """Wait, if need be, until the clock is a second past the creation of every event file in ``log_dir``.

    TensorBoard reads a run's event files in name order, and a name starts with its creation second, then host,
    process id and a counter: the purge of a resumed attempt applies only if its file sorts after the killed
    attempt's. Only a resume within the second of the kill (in one process, as in tests) waits, at most 1 s.
    """
    stamps = [int(m[1]) for p in log_dir.glob("events.out.tfevents.*")
              if (m := re.match(r"events\.out\.tfevents\.(\d+)\.", p.name))]
    if stamps and time.time() < max(stamps) + 1:
        time.sleep(max(stamps) + 1 - time.time())


class WandB(Logger):
    def __init__(self, run: RunInfo):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "udabench"), group=run.group, name=run.name,
                              id=run.run_id, resume="allow", dir=str(run.log_dir.parent), config=run.config)

    def scalars(self, step, values):
        self.run.log(values, step=step)

    def image(self, step, tag, picture):
        self.run.log({tag: self.wandb.Image(picture)}, step=step)

    def text(self, step, tag, text):
        self.run.log({tag: self.wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=step)

    def close(self):
        self.run.finish()


class MLflow(Logger):
    """Through ``MlflowClient`` (no process-global active run): each udabench run is one MLflow run."""

    def __init__(self, run: RunInfo):
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        self.client, self.metric = MlflowClient(), Metric
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", run.group)
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        found = self.client.search_runs([experiment_id], filter_string=f"tags.udabench_run = '{run.run_id}'")
        if found:
            self.run_id = found[0].info.run_id
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run.name,
                                                 tags={"udabench_run": run.run_id}).info.run_id

    def scalars(self, step, values):
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.metric(k, float(v), now, step) for k, v in values.items()])

    def image(self, step, tag, picture):
        self.client.log_image(self.run_id, picture, f"{tag}/step{step:07d}.png")

    def text(self, step, tag, text):
        self.client.log_text(self.run_id, text, f"{tag}/step{step:07d}.md")

    def close(self):
        self.client.set_terminated(self.run_id)


BACKENDS: dict[str, type[Logger]] = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow}


class Loggers(Logger):
    """Every backend of a run, called in turn; with none, every call is a no-op (``active`` is False)."""

    def __init__(self, backends: list[Logger] = ()):
        self.backends = list(backends)

    @property
    def active(self) -> bool:
        return bool(self.backends)

    def scalars(self, step, values):
        for backend in self.backends:
            backend.scalars(step, values)

    def image(self, step, tag, picture):
        for backend in self.backends:
            backend.image(step, tag, picture)

    def text(self, step, tag, text):
        for backend in self.backends:
            backend.text(step, tag, text)

    def flush(self):
        for backend in self.backends:
            backend.flush()

    def close(self):
        for backend in self.backends:
            backend.close()


def open_loggers(names: list[str], run: RunInfo) -> Loggers:
    return Loggers([BACKENDS[name](run) for name in dict.fromkeys(names)])
