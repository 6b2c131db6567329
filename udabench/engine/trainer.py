"""The training loop of one run: (suite, method, hyper-parameters, seed) -> run directory."""

from __future__ import annotations

import math
import random
import resource
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..classes import get_class_set
from ..config import Suite
from ..errors import CheckpointError, UdabenchError
from ..method import Method
from ..models import build_model
from .context import MethodContext
from .distributed import DistInfo
from .environment import collect_env
from .evaluate import evaluate, protocol, scores
from .rundir import RunDir
from .sampling import ResumableSampler


class NonFiniteLoss(UdabenchError):
    pass


@dataclass
class SuiteData:
    """The datasets of a suite, built (and checked) once before any run starts."""

    source: object
    target: object
    eval: object
    source_val: object = None            # held-out labelled source split, for source-val model selection


@dataclass
class RunSpec:
    suite: Suite
    method: type[Method]
    hparams: object
    seed: int
    rundir: RunDir
    warmup_snapshot: Path | None = None  # shared by every method of a (suite config, seed); see Trainer.run


class Trainer:
    def __init__(self, spec: RunSpec, data: SuiteData, device: torch.device, dist: DistInfo = DistInfo()):
        self.spec, self.data, self.device, self.dist = spec, data, device, dist
        self.cfg = spec.suite.train
        self.class_set = get_class_set(spec.suite.classes)

    # -- public ----------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        spec, cfg, rundir = self.spec, self.cfg, self.spec.rundir
        seed_everything(spec.seed, cfg.deterministic, self.device)
        model = build_model(spec.suite.model, self.class_set.num_classes).to(self.device)
        if spec.suite.model.channels_last:
            model = model.to(memory_format=torch.channels_last)
        ctx = MethodContext(model, self.device, self.class_set, cfg, self.dist, self.data.source)
        ctx.register_segmenter(*model.param_groups())
        method = spec.method(spec.hparams, ctx)
        method.setup(model, ctx)

        start = self._resume(ctx, rundir)
        warmup = cfg.source_warmup if spec.method.uses_source else 0
        # The warm-up is plain source training whatever the method, so every method of a seed starts
        # adapting from the same weights: the first run to finish it saves them, the others load them.
        shared = spec.warmup_snapshot if warmup else None
        if start == 0 and shared is not None and shared.exists():
            start = self._load_warmup(ctx, shared)
        source_iter = self._batches(self.data.source, "source", start) if spec.method.uses_source else None
        # The target stream is position-based: starting it at the warm-up's end gives each later step the
        # same batch as reading (and discarding) target batches during warm-up would.
        target_iter = self._batches(self.data.target, "target", max(start, warmup)) if spec.method.uses_target else None
        model.train()
        running: dict[str, list[float]] = defaultdict(list)
        step_times: list[float] = []
        desc = f"{spec.method.name} seed {spec.seed}"
        bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=desc,
                   disable=None if self.dist.is_main else True, dynamic_ncols=True, leave=False)
        for step in bar:
            t0 = time.perf_counter()
            source = self._to_device(next(source_iter)) if source_iter else None
            lr = ctx.start_step(step)
            if step == warmup and warmup:
                reseed(spec.seed)  # RNG after the warm-up must not depend on who ran it
            if step < warmup:
                logs = ctx.supervised_step(source)  # adaptation starts from a source-trained model
            else:
                target = self._to_device(next(target_iter)) if target_iter else None
                if target is not None and not spec.method.uses_target_labels:
                    target.pop("label", None)  # unsupervised: target labels never reach a method
                logs = method.train_step(source, target, step)
            self._check_finite(logs, step)
            ctx.finish_step()
            step_times.append(time.perf_counter() - t0)
            for key, value in logs.items():
                running[key].append(value)
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.iterations:
                self._log_row(done, lr, running, step_times)
            if done % cfg.eval_every == 0 or done == cfg.iterations:
                self._evaluate(model, ctx, done, lr, running, step_times)
                running.clear()
                step_times.clear()
            if done == warmup and shared is not None and not shared.exists() and self.dist.is_main:
                self._save_warmup(ctx, done, shared)
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                self._save(ctx, done)
        bar.close()
        if self.dist.is_main:
            rundir.mark_done()
        return rundir.read_metrics()

    # -- internals -------------------------------------------------------------------------------
    def _resume(self, ctx: MethodContext, rundir: RunDir) -> int:
        if not rundir.checkpoint.exists():
            if self.dist.is_main:
                rundir.prepare(collect_env(self.device))
            return 0
        try:
            state = torch.load(rundir.checkpoint, map_location=self.device, weights_only=False)
            ctx.load_state_dict(state["slots"])
        except Exception as exc:  # corrupt/incompatible file: name it and say how to recover
            raise CheckpointError(f"cannot resume from checkpoint {rundir.checkpoint}: {exc}. Delete that file "
                                  f"to restart this run from scratch (its metrics rows are kept).") from None
        restore_rng(state["rng"])
        if self.dist.is_main:
            rundir.truncate_metrics(state["step"])
        return state["step"]

    def _save_warmup(self, ctx: MethodContext, step: int, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = ctx.state_dict()
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"step": step, "model": state["model"], "scaler": state.get("_scaler"),
                    "rows": self.spec.rundir.read_metrics(), "written_by": self.spec.rundir.id}, tmp)
        tmp.replace(path)

    def _load_warmup(self, ctx: MethodContext, path: Path) -> int:
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
            ctx.load_state_dict({"model": state["model"], "_scaler": state["scaler"]}, only=("model",))
        except Exception as exc:
            raise CheckpointError(f"cannot load the shared warm-up snapshot {path}: {exc}. Delete that file; the "
                                  f"next run redoes the warm-up and writes it again.") from None
        spec = self.spec
        if self.dist.is_main:
            for row in state["rows"]:  # the warm-up's evaluations belong to this run's curve too
                spec.rundir.append_metrics({**row, "method": spec.method.name, "method_label": spec.method.row_label(),
                                            "run_id": spec.rundir.id, "hparams": asdict(spec.hparams),
                                            "warmup_from": state["written_by"]})
            with (spec.rundir.path / "log.txt").open("a") as f:
                f.write(f"steps 0-{state['step']}: shared source warm-up loaded from {path} "
                        f"(written by run {state['written_by']})\n")
        return state["step"]

    def _save(self, ctx: MethodContext, step: int) -> None:
        if not self.dist.is_main:
            return
        path = self.spec.rundir.checkpoint
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"step": step, "slots": ctx.state_dict(), "rng": rng_state()}, tmp)
        tmp.replace(path)

    def _batches(self, dataset, stream: str, start_step: int):
        sampler = ResumableSampler(len(dataset), stream_seed(self.spec.seed, stream), start_step * self.cfg.batch_size,
                                   self.dist.rank, self.dist.world_size)
        return iter(self._loader(dataset, self.cfg.batch_size, sampler=sampler, drop_last=True))

    def _loader(self, dataset, batch_size: int, **kw) -> DataLoader:
        workers = self.spec.suite.data.num_workers
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=workers > 0, **kw)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _check_finite(self, logs: dict[str, float], step: int) -> None:
        bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
        if bad:
            raise NonFiniteLoss(
                f"{self.spec.method.name} seed {self.spec.seed}: loss {', '.join(f'{k}={v}' for k, v in bad.items())} "
                f"at step {step} in {self.spec.rundir.path}. The update was not applied; earlier checkpoints and "
                f"metrics are kept. Lower train.lr or the method's loss weights (--set), or try train.amp=none.")

    def _log_row(self, step: int, lr: float, running, step_times) -> None:
        parts = [f"{self.spec.method.name:>12} s{self.spec.seed}", f"step {step:>7}/{self.cfg.iterations}",
                 f"lr {lr:.2e}"]
        parts += [f"{k} {np.mean(v[-self.cfg.log_every:]):.4f}" for k, v in running.items()]
        parts.append(f"{np.mean(step_times[-self.cfg.log_every:]):.3f}s/it")
        line = "  ".join(parts)
        if self.dist.is_main:
            tqdm.write(line)
            with (self.spec.rundir.path / "log.txt").open("a") as f:
                f.write(line + "\n")

    def _evaluate(self, model, ctx: MethodContext, step: int, lr: float, running, step_times) -> None:
        model.eval()
        result = self._score(model, ctx, self.data.eval)
        extra = {}
        if self.data.source_val is not None:
            source_val = self._score(model, ctx, self.data.source_val)
            extra["source_val_miou"] = scores(self.spec.suite, source_val.cm, source_val.entropy)["miou"]
        model.train()
        if self.dist.is_main:
            path = self.spec.rundir.eval_file(step)
            result.save(path)
            extra["eval_file"] = self.spec.rundir.relative(path)
            self.spec.rundir.append_metrics(self._row(result, step, lr, running, step_times) | extra)

    def _score(self, model, ctx: MethodContext, dataset):
        shard = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world_size))
        loader = self._loader(shard, self.spec.suite.data.eval_batch_size)
        return evaluate(lambda x: model(x).main, loader, self.class_set.num_classes, self.device, ctx.autocast,
                        self.dist.world_size, self.spec.suite.eval)

    def _row(self, result, step, lr, running, step_times) -> dict:
        spec = self.spec
        return {
            "suite": spec.suite.name,
            "method": spec.method.name,
            "method_label": spec.method.row_label(),
            "seed": spec.seed,
            "run_id": spec.rundir.id,
            "step": step,
            "iterations": self.cfg.iterations,
            **scores(spec.suite, result.cm, result.entropy),
            "losses": {k: float(np.mean(v)) for k, v in running.items()},
            "lr": lr,
            "step_time": float(np.mean(step_times)) if step_times else None,
            "peak_mem_gb": peak_memory_gb(self.device),
            "hparams": asdict(spec.hparams),
            "protocol": protocol(spec.suite, spec.seed),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB -> GiB (process RSS)


def stream_seed(seed: int, stream: str) -> int:
    return seed * 1000 + {"source": 1, "target": 2}[stream]


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


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
