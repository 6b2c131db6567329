"""The training loop of one run: (suite, method, hyper-parameters, seed) -> run directory.

The run is built from its seed when the trainer is made (model, method, optimizers). ``Trainer.run`` reads top to
bottom: resume (or start: from the init weights, or from a checkpoint of the run it starts from,
``engine/stages.py``, the shared source warm-up included), its data prepared (``rundata.py``: the teacher's
pseudo-labels, the source class index), the method's steps, ``done``. Each step (``_train``): the batches
(``RunData``), zero gradients and set LRs, the method's step, a finite-loss check, the optimizer steps, the log line,
evaluation and checkpoint at their intervals, and ``_tick``: the run's claim heartbeat (engine/claim.py) and,
when a stop signal came (engine/preempt.py), a checkpoint at this step and ``RunInterrupted``. What the loggers
are sent (curves, panels, notes) is ``monitor.py``'s; the trainer calls it at those points.
"""

from __future__ import annotations

import math
import random
import signal
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import checkpoint
from ..checkpoint import SEGMENTER
from ..errors import CheckpointError, NonFiniteLoss, UdabenchError
from ..method import check_logs
from ..selection import selected_step
from .build import build_run
from .claim import Claim, ClaimLost
from .distributed import DistInfo, barrier, max_over_ranks
from .environment import collect_env
from .evaluate import evaluate, scores
from .loggers import Loggers, RunInfo, open_loggers
from .monitor import Monitor, Pace, describe_run
from .predict import main_logits
from .preempt import RunInterrupted, StopRequest
from .rows import metrics_row, protocol
from .rundata import RunData, SuiteData
from .speed import count_flops, peak_memory_gb, reset_peak_memory, synchronize
from .stages import WARMUP_TITLE, RunSpec, Start
from .trained import load_selected
from .validate import score_validators, validator_sample


class Trainer:
    def __init__(self, spec: RunSpec, data: SuiteData, device: torch.device, dist: DistInfo = DistInfo(),
                 claim: Claim | None = None, stop: StopRequest | None = None):
        """``data``: the suite's datasets (``rundata.build_data``); ``claim``: this run's claim (rank 0; its
        heartbeat is kept alive); ``stop``: set by a stop signal. Builds the run from its seed: the model's and the
        method's initial weights are the same for every attempt of the run."""
        self.spec, self.device, self.dist = spec, device, dist
        self.cfg = spec.suite.train
        self.claim, self.stop = claim, stop if stop is not None else StopRequest()
        self.data = RunData(spec, data, device, dist)   # opens no loader before the first batch
        seed_everything(spec.seed, self.cfg.deterministic, device)
        self.ctx, self.method = build_run(spec.suite, spec.method, spec.hparams, device, dist,
                                          self.data.source_class_histogram)
        self.meter, self.pace, self.flops_per_step = Meter(), None, None
        self.validator_sample = validator_sample(spec.suite, data.target, data.source)   # fixed: same every evaluation
        self.monitor: Monitor | None = None   # opened by run(), which knows where the run starts

    def run(self) -> list[dict]:
        spec, began = self.spec, time.perf_counter()
        reset_peak_memory(self.device)
        start, evaluated = self._resume()
        self.monitor = self._open_monitor(start)
        try:
            if start == 0 and spec.start is not None:
                start = self._start_from(spec.start)
            self.data.prepare()
            if evaluated is not None:
                self._evaluate_again(start, evaluated)
            self._stage(start, self.cfg.iterations, WARMUP_TITLE if spec.hidden else spec.label())
            self._train(start)
        finally:
            self.monitor.close()
            self.data.close()
        if self.dist.is_main:
            if self.monitor.loggers.active:
                spec.rundir.log(self.monitor.cost(time.perf_counter() - began))
            spec.rundir.mark_done()
        return spec.rundir.rows()

    # -- the phases of a run -----------------------------------------------------------------------
    def _resume(self) -> tuple[int, dict | None]:
        """The step to continue from: that of ``checkpoints/last.pt``, or 0 (the run directory is prepared); and,
        when the row of an evaluation due at that step is missing (lost in a crash: rows are fsynced before the
        checkpoint of their step), what that row was built from besides the model (``_save``'s ``evaluated``)."""
        rundir = self.spec.rundir
        if not rundir.checkpoint.exists():
            if self.dist.is_main:
                rundir.prepare({**collect_env(self.device, self.dist.world_size, self.cfg.batch_size),
                                "code": self.spec.code})
            return 0, None
        fix = "Delete that file to restart this run from step 0 (its earlier rows are then discarded)."
        state = checkpoint.load(rundir.checkpoint, self.device, fix, purpose="resume from checkpoint")
        self._check_world_size(state, rundir.checkpoint, fix)
        try:
            self.ctx.load_state_dict(state)
            checkpoint.restore_rng(state["rng"])
            self.meter.load_state_dict(state["running"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {rundir.checkpoint} does not fit this run "
                                  f"({str(exc).splitlines()[0]}). {fix}") from None
        step = state["step"]
        if self.dist.is_main:
            rundir.truncate_rows(step)
            rundir.clear_markers()
        lost = self._due(step) and step not in {row["step"] for row in rundir.rows()}
        # every rank evaluates (the evaluation is distributed); rank 0's rows decide
        lost = max_over_ranks(1 if lost else 0, self.dist.world_size, self.device) > 0
        return step, (state.get("evaluated") or {}) if lost and step > 0 else None

    def _due(self, step: int) -> bool:
        """Whether an evaluation (and its row) belongs to ``step``; a shared warm-up's only at eval_every."""
        return step % self.cfg.eval_every == 0 or (step == self.cfg.iterations and not self.spec.hidden)

    def _evaluate_again(self, step: int, evaluated: dict) -> None:
        """The row of ``step`` from its checkpoint's weights, with the losses, LR and FLOPs the checkpoint kept of it
        (``_save``): the row the uninterrupted run wrote, but for its timings."""
        if self.dist.is_main:
            self.spec.rundir.log(f"step {step}: its metrics row is missing (lost in a crash?); evaluated again "
                                 f"from {self.spec.rundir.checkpoint.name}")
        running = self.meter.state_dict()
        self.meter.load_state_dict(evaluated.get("meter", {"losses": {}}))
        self.flops_per_step = evaluated.get("flops_per_step", self.flops_per_step)
        lr = evaluated["lr"] if "lr" in evaluated else self.ctx.start_step(step - 1)   # an older checkpoint
        self._evaluate(step, lr)
        self.meter.load_state_dict(running)

    def _check_world_size(self, state: dict, path: Path, fix: str) -> None:
        """A run keeps its number of processes: the effective batch (world × train.batch_size) is its protocol."""
        saved, now = state.get("world_size", 1), self.dist.world_size
        if saved != now:
            how = f"torchrun --nproc_per_node={saved}" if saved > 1 else "a single process (no torchrun)"
            raise CheckpointError(f"{path} was written by {saved} training process(es), this run has {now}: the "
                                  f"effective batch ({saved} x train.batch_size) is part of a run's protocol and "
                                  f"cannot change midway. Resume it with {how}. {fix}")

    def _start_from(self, start: Start) -> int:
        """Load the final segmenter of the finished run ``start.spec``; the step this run begins at.

        With ``start.restart`` the weights only (BN statistics included): a fresh optimizer, the LR schedule
        from step 0. Without it (the shared warm-up) this run continues that schedule: optimizer and gradient
        scaler state too, the step count, and its evaluation rows become the first rows of this run's curve.
        All generators are re-seeded from the seed, so what follows does not depend on how the weights came.
        """
        upstream = start.spec.rundir
        weights = "final weights" if start.selection == "last" else f"weights selected by {start.selection}"
        what = f"the {WARMUP_TITLE}" if start.spec.hidden else f"the {weights} of {start.spec.method.name}"
        if upstream.status != "done":
            raise UdabenchError(f"{self.spec.method.name} seed {self.spec.seed} starts from {what} ({upstream.path}), "
                                f"which has not finished; run the suite again (it trains that run first, or waits for "
                                f"the process that trains it).")
        fix = f"Delete the folder {upstream.path}: the next `udabench run` trains that stage again."
        path = upstream.selected_checkpoint(start.selection)
        state = load_selected(upstream, start.selection, self.device, fix, purpose=f"load {what} from")
        self._check_world_size(state, path, fix)
        try:
            self.ctx.load_state_dict(state, only=(SEGMENTER,), optimizers=not start.restart)
            self.ctx.sync_teachers()   # a mean teacher starts as a copy of the weights the run starts from
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{what} ({path}) does not fit this run "
                                  f"({str(exc).splitlines()[0]}). {fix}") from None
        step = 0 if start.restart else state["step"]
        if self.dist.is_main:
            how = "optimizer reset, LR restarted" if start.restart else f"continuing its schedule at step {step}"
            # the note first: W&B drops points below its last step
            curves = "" if start.restart else "; its tb/ has the step curves"
            self.monitor.note(1, "stage", f"started from {what} (run {upstream.id}; {how}{curves})")
            if not start.restart:   # the warm-up's evaluations belong to this run's curve too
                for row in upstream.rows():
                    row = {**row, **self._row_identity(), "iterations": self.cfg.iterations,
                           "protocol": self._protocol(), "warmup_from": upstream.id}
                    self.spec.rundir.append_row(row)
                    self.monitor.evaluation(row)
            self.spec.rundir.log(f"started from {what}: {path} (step {state['step']}; {how})")
        reseed(self.spec.seed)
        return step

    def _method_step(self, batches: dict[str, dict], step: int) -> dict:
        target = batches.get("target")
        if target is not None and not self.spec.method.uses_target_labels:
            target.pop("label", None)  # unsupervised: target labels never reach a method
        return self.method.train_step(batches.get("source"), target, step)

    # -- the loop ----------------------------------------------------------------------------------
    def _train(self, start: int) -> None:
        """Steps ``start`` to the end. The first is FLOP-counted and left out of the timings (worker start-up,
        autotuning and compilation make it an outlier anyway)."""
        cfg, ctx = self.cfg, self.ctx
        desc = f"{self.spec.method.name} seed {self.spec.seed}"
        # tqdm.auto: a widget in notebooks; off where output is not a terminal (the log line has the pace there)
        bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=desc,
                   disable=None if self.dist.is_main else True, dynamic_ncols=True, leave=False)
        self.pace = Pace(start, cfg.iterations)
        for step in bar:
            t0 = time.perf_counter()
            batches = self.data.batches(step)
            t1 = time.perf_counter()
            lr = ctx.start_step(step)
            run_step = lambda: self._method_step(batches, step)
            if step == start:
                logs, self.flops_per_step = count_flops(run_step)
            else:
                logs = run_step()
            logs = check_logs(logs, self.spec.method, step)
            self._check_finite(logs, step)
            ctx.finish_step()
            synchronize(self.device)
            images = sum(b["image"].shape[0] for b in batches.values()) * self.dist.world_size
            self.meter.add(logs, None if step == start else (t1 - t0, time.perf_counter() - t1, images))
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.iterations:
                self._log_line(done, lr)
            evaluated = None
            # a shared warm-up's rows open its users' curves: only at their own eval steps (no extra final one)
            if self._due(done):
                evaluated = {"meter": self.meter.state_dict(), "lr": lr, "flops_per_step": self.flops_per_step}
                self._evaluate(done, lr)
                self.meter.clear()
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                self._save(done, evaluated)
            self._tick(done)
        bar.close()

    def _tick(self, step: int, note: str = "") -> None:
        """Keep the claims alive (throttled: cheap every step); stop when a signal asked for it, or when another
        process took this run over (then nothing more is written)."""
        lost = self.dist.is_main and self.claim is not None and not self.claim.beat(step, self.cfg.iterations, note)
        verdict = max_over_ranks(2 if lost else 1 if self.stop else 0, self.dist.world_size, self.device)
        if verdict == 2:
            raise ClaimLost(f"{self.spec.rundir.path} was taken over by another process (this one's heartbeat "
                            f"went stale); left to it.")
        if verdict == 1 and step < self.cfg.iterations:
            if step % self.cfg.checkpoint_every and step > 0:   # else this step's checkpoint is written already
                self._save(step)
            barrier(self.dist.world_size)   # rank 0's checkpoint is on disk before any process leaves
            raise RunInterrupted(step, self.stop.signum or signal.SIGTERM)

    def _save(self, step: int, evaluated: dict | None = None) -> None:
        """The checkpoint of ``step``, written after that step's row; ``evaluated``: the losses, LR and FLOPs that
        row was made of, so a row lost in a crash is made again from this checkpoint as it was (``_resume``)."""
        if self.dist.is_main:
            self.monitor.flush()   # what was logged up to this checkpoint survives a kill (resume purges after it)
            checkpoint.save(self.spec.rundir.checkpoint, step=step, **self.ctx.state_dict(),
                            rng=checkpoint.rng_state(), running=self.meter.state_dict(),
                            world_size=self.dist.world_size, **({"evaluated": evaluated} if evaluated else {}))

    def _check_finite(self, logs: dict[str, float], step: int) -> None:
        bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
        if bad:
            raise NonFiniteLoss(
                f"{self.spec.method.name} seed {self.spec.seed}: loss {', '.join(f'{k}={v}' for k, v in bad.items())} "
                f"at step {step} in {self.spec.rundir.path}. The update was not applied; earlier checkpoints and "
                f"metrics are kept. Lower train.lr or the method's loss weights (--set), or try train.amp=none.")

    # -- what a run writes -------------------------------------------------------------------------
    def _log_line(self, step: int, lr: float) -> None:
        parts = [f"{self.spec.method.name:>12} s{self.spec.seed}", f"step {step:>7}/{self.cfg.iterations}",
                 f"lr {lr:.2e}"]
        recent = self.meter.means(last=self.cfg.log_every)
        parts += [f"{k} {v:.4f}" for k, v in recent["losses"].items()]
        if recent["step_time"] is not None:
            parts.append(f"{recent['step_time']:.3f}s/it")
        parts.append(self.pace.line(step))   # SLURM logs see no progress bar
        line = "  ".join(parts)
        if self.dist.is_main:
            tqdm.write(line)
            self.spec.rundir.log(line)
            self.monitor.step(step, recent, self.ctx.slots, self.device)

    def _evaluate(self, step: int, lr: float) -> None:
        model, suite = self.ctx.model, self.spec.suite
        model.eval()
        result = self._score(self.data.splits.eval, suite.eval)
        extra = {}
        for field, dataset in (("source_val_miou", self.data.splits.source_val),
                               ("val_miou", self.data.splits.validation)):
            if dataset is not None:   # the in-training validations, with their own options
                scored = self._score(dataset, suite.eval.for_validation())
                extra[field] = scores(suite, scored.cm, scored.entropy)["miou"]
        if self.validator_sample is not None:   # label-free, on target training images (engine/validate.py)
            extra |= score_validators(model, self.method, self.validator_sample, suite, self.device, self.ctx.autocast)
        panel = self.monitor.panel(model, self.device)   # in eval mode; None on other ranks or without loggers
        model.train()
        if self.dist.is_main:
            extra["eval_file"] = self.spec.rundir.save_eval(step, result.per_image, result.names)
            means = self.meter.means()
            row = metrics_row(
                suite, seed=self.spec.seed, step=step, scores=scores(suite, result.cm, result.entropy),
                **self._row_identity(), losses=means.pop("losses"), lr=lr, **means,
                flops_per_step=self.flops_per_step, peak_mem_gb=peak_memory_gb(self.device),
                world_size=self.dist.world_size, stages=self.spec.stages(), **extra)
            self.spec.rundir.append_row(row)
            self.monitor.evaluation(row, panel)
            self._keep_selected(step)

    def _keep_selected(self, step: int) -> None:
        """The segmenter's weights for every selection protocol the run keeps (``RunSpec.keep``) that now picks
        this evaluation; the weights of the evaluation each picks in the end stay (``trained.load_selected``)."""
        rows = self.spec.rundir.rows() if self.spec.keep else []
        for name in self.spec.keep:
            if selected_step(rows, name, str(self.spec.rundir.path)) == step:
                slots = {SEGMENTER: {"module": self.ctx.model.state_dict(), "optimizer": None}}
                checkpoint.save(self.spec.rundir.selected_checkpoint(name), step=step, slots=slots,
                                world_size=self.dist.world_size)

    def _open_monitor(self, start: int) -> Monitor:
        """The run's loggers (main rank only), continuing its curves after ``start`` when it resumes."""
        spec, rundir = self.spec, self.spec.rundir
        loggers, opening = Loggers(), time.perf_counter()
        if self.dist.is_main and self.cfg.loggers:
            loggers = open_loggers(self.cfg.loggers, RunInfo(rundir.tb_dir, rundir.id,
                                                             f"{spec.label()} seed {spec.seed}",
                                                             spec.suite.name, rundir.identity, start))
        monitor = Monitor(loggers, self.data.splits.eval, self.ctx.class_set, self.cfg.panel_images)
        monitor.seconds = time.perf_counter() - opening   # opening them (imports included) is part of their cost
        if start == 0:
            warmup = self.cfg.source_warmup if spec.start is not None and not spec.start.restart else 0
            monitor.note(0, "run", describe_run(rundir.identity, spec.label(), warmup, self.cfg.iterations))
        return monitor

    def _stage(self, start: int, end: int, name: str) -> None:
        """A note at the first step a phase runs in this process (after a resume: the first step not purged)."""
        if start < end:
            self.monitor.note(start + 1, "stage", f"steps {start + 1}-{end}: {name}")

    def _row_identity(self) -> dict:
        """The fields that say whose row it is (also written into the rows a loaded warm-up copies)."""
        method = self.spec.method
        return {"method": method.name, "method_label": self.spec.label(), "role": method.role,
                "run_id": self.spec.rundir.id, "hparams": asdict(self.spec.hparams), "code": self.spec.code}

    def _protocol(self) -> dict:
        return protocol(self.spec.suite, self.spec.seed, self.dist.world_size, self.spec.stages())

    def _score(self, dataset, options):
        return evaluate(main_logits(self.ctx.model), self.data.eval_loader(dataset), self.ctx.num_classes,
                        self.device, self.ctx.autocast, self.dist.world_size, options)


class Meter:
    """Logged losses and step timings since the last evaluation; checkpointed, so a resumed run's rows are exact.

    A step's time is split into data wait (batches fetched and copied to the device) and compute (the
    step itself, until the device is done); ``images`` counts the images of a step over every rank.
    """

    TIMINGS = ("data_times", "compute_times", "images")

    def __init__(self):
        self.losses: dict[str, list[float]] = defaultdict(list)
        self.data_times: list[float] = []
        self.compute_times: list[float] = []
        self.images: list[int] = []

    def add(self, logs: dict[str, float], timing: tuple[float, float, int] | None) -> None:
        """``timing`` = (data seconds, compute seconds, images), or None for a step left out of the timings."""
        for key, value in logs.items():
            self.losses[key].append(float(value))
        if timing is not None:
            for name, value in zip(self.TIMINGS, timing):
                getattr(self, name).append(value)

    def means(self, last: int | None = None) -> dict:
        """Mean of every loss and of the timings over the last ``last`` steps (all when None); timings are
        None when no step was timed."""
        window = slice(-last, None) if last else slice(None)
        data, compute, images = (np.asarray(getattr(self, name)[window], dtype=float) for name in self.TIMINGS)
        step = data + compute
        timed = step.size > 0
        return {"losses": {k: float(np.mean(v[window])) for k, v in self.losses.items()},
                "step_time": float(step.mean()) if timed else None,
                "data_time": float(data.mean()) if timed else None,
                "compute_time": float(compute.mean()) if timed else None,
                "images_per_s": float(images.sum() / step.sum()) if timed else None}

    def clear(self) -> None:
        self.losses.clear()
        for name in self.TIMINGS:
            getattr(self, name).clear()

    def state_dict(self) -> dict:
        return {"losses": dict(self.losses), **{name: list(getattr(self, name)) for name in self.TIMINGS}}

    def load_state_dict(self, state: dict) -> None:
        self.clear()
        self.losses.update({k: list(v) for k, v in state["losses"].items()})
        for name in self.TIMINGS:  # absent from checkpoints of earlier versions: timing restarts
            getattr(self, name).extend(state.get(name, []))


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


def reseed(seed: int) -> None:
    """Re-seed every generator from the run's seed alone (a second, fixed stream)."""
    random.seed(seed + 7919)
    np.random.seed(seed + 7919)
    torch.manual_seed(seed + 7919)
