"""``udabench bench``: training steps and an evaluation pass of a suite's methods, timed per setting.

A setting is a precision (``train.amp``), a layout (``model.channels_last``) and ``train.compile``. For
each method and setting the model and method come from ``build_run`` exactly as a run builds them
(weights ``none``: they do not change the speed), then ``warmup`` steps, then ``iterations`` timed steps,
each a full ``ctx.start_step`` -> ``method.train_step`` -> ``ctx.finish_step``, synchronised on the
device. The evaluation is ``engine.evaluate`` over ``eval_images`` images (host batches, copied to the
device as in a run), once per setting: it does not depend on the method. FLOPs of a step are counted
once per method (they do not depend on the setting); the floor is the matmul rate of each precision,
measured in the same process (``floor.py``).
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..config import Suite
from ..engine.build import build_run
from ..engine.environment import collect_env
from ..engine.evaluate import evaluate
from ..engine.predict import main_logits
from ..engine.speed import count_flops, peak_memory_gb, reset_peak_memory, synchronize
from ..method import Method
from ..registry import get_method
from ..schema import from_dict
from .floor import fp32_uses_tf32, matmul_tflops
from .inputs import BenchInputs, eval_stream

AMP = {"fp32": "none", "bf16": "bf16", "fp16": "fp16"}


@dataclass(frozen=True)
class Setting:
    precision: str = "fp32"          # fp32 | bf16 | fp16
    channels_last: bool = False
    compile: bool = False

    @property
    def label(self) -> str:
        return "+".join([self.precision, *(["channels_last"] if self.channels_last else []),
                         *(["compile"] if self.compile else [])])

    def apply(self, suite: Suite) -> Suite:
        return replace(suite, model=replace(suite.model, pretrained="none", channels_last=self.channels_last),
                       train=replace(suite.train, amp=AMP[self.precision], compile=self.compile))


def settings_of(precisions: list[str], channels_last: bool = False, compile: bool = False) -> list[Setting]:
    return [Setting(p, channels_last, compile) for p in precisions]


def bench(suite: Suite, methods: list[str], settings: list[Setting], inputs: BenchInputs, device: torch.device,
          iterations: int = 10, warmup: int = 3, methods_dirs=(), say=lambda line: None,
          floor_size: int | None = None) -> dict:
    """Every (method, setting) timed. Returns the report: ``env`` (versions, device), ``sizes``, ``floor_tflops``
    per precision, ``train`` (one row per method × setting) and ``eval`` (one row per setting)."""
    classes = {name: get_method(name, methods_dirs) for name in methods}
    floor = {p: matmul_tflops(device, p, floor_size) for p in dict.fromkeys(s.precision for s in settings)}
    say("matmul floor: " + ", ".join(f"{p} {t:.3g} TFLOP/s" for p, t in floor.items()))
    flops: dict[str, int] = {}
    train_rows, eval_rows = [], []
    for setting in settings:
        variant, tflops = setting.apply(suite), floor[setting.precision]
        for name, cls in classes.items():
            say(f"{name} {setting.label}: {warmup} warm-up + {iterations} timed steps")
            hparams = from_dict(cls.Hparams, suite.methods.get(name, {}), f"methods.{name}", suite.source_file)
            row = _time_steps(*build_run(variant, cls, hparams, device, source_histogram=inputs.source_histogram),
                              inputs, device, iterations, warmup, flops.get(name))
            flops[name] = row["flops_per_step"]
            train_rows.append({"method": name, **asdict(setting), "setting": setting.label, **row,
                               **_rates(row["flops_per_step"], row["mean_s"], tflops)})
            _release(device)
        if inputs.eval_images:
            say(f"evaluation {setting.label}: {inputs.eval_images} images")
            ctx, _ = build_run(variant, Method, Method.Hparams(), device)   # the segmenter alone
            row = _time_eval(ctx, inputs, variant.data.eval_batch_size, device)
            eval_rows.append({**asdict(setting), "setting": setting.label, **row,
                              **_rates(row["flops_per_image"] * row["images"], row["seconds"], tflops)})
            del ctx
            _release(device)
    env = collect_env(device)
    env["fp32_matmul"] = "tf32" if fp32_uses_tf32(device) else "fp32"
    return {"suite": suite.name, "device": device.type, "env": env, "iterations": iterations, "warmup": warmup,
            "sizes": _sizes(suite, inputs), "floor_tflops": floor, "train": train_rows, "eval": eval_rows}


def _sizes(suite: Suite, inputs: BenchInputs) -> dict:
    """What the rows were measured at: input sizes (W×H), label size of the evaluation, batches, backbone."""
    d = suite.data
    wh = lambda size: f"{size[0]}x{size[1]}" if size else "native"
    label = inputs.eval[0]["label"].shape[-2:] if inputs.eval else None
    return {"source": wh(d.source.size), "target": wh(d.target.size), "eval": wh(d.eval.size),
            "eval_label": f"{label[1]}x{label[0]}" if label is not None else None,
            "batch_size": suite.train.batch_size, "eval_batch_size": d.eval_batch_size,
            "backbone": suite.model.backbone}


def _release(device: torch.device) -> None:
    """Free the last model before the next is built, so its memory does not count in the next peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _time_steps(ctx, method, inputs: BenchInputs, device, iterations: int, warmup: int, flops: int | None) -> dict:
    cls = type(method)
    iters = ctx.iterations

    def step(i: int) -> dict:
        source = dict(inputs.source[i % len(inputs.source)]) if cls.uses_source else None
        target = dict(inputs.target[i % len(inputs.target)]) if cls.uses_target else None
        if target is not None and not cls.uses_target_labels:
            target.pop("label", None)
        ctx.start_step(i % iters)
        logs = method.train_step(source, target, i % iters)
        ctx.finish_step()
        return logs

    images = sum(b[0]["image"].shape[0] for b, used in ((inputs.source, cls.uses_source),
                                                       (inputs.target, cls.uses_target)) if used)
    if flops is None:
        _, flops = count_flops(lambda: step(0))
    for i in range(warmup):
        step(i)
    synchronize(device)
    reset_peak_memory(device)
    times, finite = [], True
    for i in range(warmup, warmup + iterations):
        start = time.perf_counter()
        logs = step(i)
        synchronize(device)
        times.append(time.perf_counter() - start)
        finite &= all(np.isfinite(v) for v in logs.values())
    return {**_stats(times), "images_per_step": images, "images_per_s": images / float(np.mean(times)),
            "flops_per_step": flops, "peak_mem_gb": peak_memory_gb(device), "finite": bool(finite)}


def _time_eval(ctx, inputs: BenchInputs, batch_size: int, device) -> dict:
    model = ctx.model.eval()
    stream = eval_stream(inputs, batch_size)
    forward = main_logits(model)
    first = stream[0]["image"].to(device)
    with torch.no_grad():
        _, flops = count_flops(lambda: forward(first))
        with ctx.autocast():
            forward(first)          # warm-up (and compilation, for the eval mode)
    synchronize(device)
    reset_peak_memory(device)
    start = time.perf_counter()
    evaluate(forward, stream, ctx.num_classes, device, ctx.autocast)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"images": inputs.eval_images, "seconds": seconds, "ms_per_image": 1000 * seconds / inputs.eval_images,
            "images_per_s": inputs.eval_images / seconds, "flops_per_image": flops // first.shape[0],
            "peak_mem_gb": peak_memory_gb(device)}


def _stats(times: list[float]) -> dict:
    t = np.asarray(times)
    return {"mean_s": float(t.mean()), "median_s": float(np.median(t)), "min_s": float(t.min()),
            "std_s": float(t.std()), "steps": len(times)}


def _rates(flops: float, seconds: float, floor_tflops: float) -> dict:
    """Achieved TFLOP/s (counted FLOPs over their time) and its share of the matmul floor."""
    achieved = flops / seconds / 1e12
    return {"tflops": achieved, "floor_ratio": achieved / floor_tflops}


def render(report: dict) -> str:
    """The report as aligned text: a header, one row per method × setting, one per evaluated setting."""
    env, cuda = report["env"], report["device"] == "cuda"
    lines = [f"udabench bench {report['suite']}: {env['device']}, torch {env['torch']}"
             + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}" if cuda else "") + f", {env['num_threads']} threads",
             "matmul floor: " + ", ".join(f"{p} {t:.3g} TFLOP/s" + (" (tf32)" if p == "fp32" and
                                                                     env["fp32_matmul"] == "tf32" else "")
                                          for p, t in report["floor_tflops"].items()),
             "{backbone}, source {source} + target {target}, batch {batch_size} + {batch_size}; evaluation at "
             "{eval} with {eval_label} labels, batch {eval_batch_size}".format(**report["sizes"]),
             f"{report['warmup']} warm-up + {report['iterations']} timed steps per row; ms/step: median "
             f"(mean in --json); TFLOP/s: counted FLOPs / mean step time; floor: TFLOP/s / matmul floor", ""]
    header = ["method", "setting", "ms/step", "images/s", "peak GB", "GFLOP/step", "TFLOP/s", "floor"]
    cells = [[r["method"], r["setting"], f"{1000 * r['median_s']:.1f}", f"{r['images_per_s']:.2f}",
              f"{r['peak_mem_gb']:.2f}", f"{r['flops_per_step'] / 1e9:.4g}", f"{r['tflops']:.3g}",
              f"{100 * r['floor_ratio']:.1f}%" + ("" if r["finite"] else " (non-finite loss)")]
             for r in report["train"]]
    lines += _aligned(header, cells)
    if report["eval"]:
        header = ["evaluation", "setting", "images", "seconds", "ms/image", "images/s", "peak GB", "GFLOP/image",
                  "TFLOP/s", "floor"]
        cells = [["eval", r["setting"], str(r["images"]), f"{r['seconds']:.2f}", f"{r['ms_per_image']:.1f}",
                  f"{r['images_per_s']:.2f}", f"{r['peak_mem_gb']:.2f}", f"{r['flops_per_image'] / 1e9:.4g}",
                  f"{r['tflops']:.3g}", f"{100 * r['floor_ratio']:.1f}%"] for r in report["eval"]]
        lines += ["", *_aligned(header, cells)]
    if not cuda:
        lines.append("peak GB on the CPU: the process's peak resident memory (it never decreases)")
    return "\n".join(lines) + "\n"


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]
