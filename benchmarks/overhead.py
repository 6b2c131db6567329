"""Harness overhead: MinEnt steps through udabench vs the same steps in a bare PyTorch loop.

Both sides get the same model (``build_model``, same initial weights), the same batches (synthetic, at
the suite's sizes, already on the device) and the same optimisation (SGD with the backbone and head
groups, momentum, weight decay, poly LR). The bare loop writes MinEnt out in plain torch: source
cross-entropy on logits up-sampled to the label (main head + ``seg_aux_weight`` × auxiliary head), then
``lambda_ent`` × the mean normalised entropy of the target softmax (+ ``lambda_ent_aux`` × the auxiliary
head's), ADVENT eq. (2)-(4); one backward per domain, one optimizer step, one ``.item()`` to log. The
udabench side is ``build_run`` + ``ctx.start_step`` -> ``method.train_step`` -> ``ctx.finish_step``.

First both sides run ``--check`` steps from the same weights and the parameters are compared (the
loops compute the same thing), then timed in alternating rounds (udabench, bare, udabench, ...) so that
drift of a shared machine hits both; overhead = median over rounds of (udabench time / bare time - 1).

    python benchmarks/overhead.py suites/toy_sim2real.yaml [--steps 10] [--rounds 5] [--set k=v] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from udabench.bench import Setting  # noqa: E402
from udabench.bench.inputs import synthetic_inputs  # noqa: E402
from udabench.config import load_suite  # noqa: E402
from udabench.engine.build import build_run  # noqa: E402
from udabench.engine.environment import collect_env  # noqa: E402
from udabench.engine.runner import resolve_device  # noqa: E402
from udabench.engine.speed import synchronize  # noqa: E402
from udabench.models import build_model  # noqa: E402
from udabench.registry import get_method  # noqa: E402
from udabench.schema import from_dict  # noqa: E402


class BareMinEnt:
    """MinEnt in a plain loop over a model and an SGD optimizer of its own."""

    def __init__(self, suite, hp, device, init_state):
        self.model = build_model(suite.model, suite.class_set.num_classes).to(device)
        if suite.model.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.load_state_dict(init_state)
        self.model.train()
        backbone, heads = self.model.param_groups()
        t = suite.train
        self.optimizer = torch.optim.SGD([{"params": backbone, "lr": t.lr}, {"params": heads, "lr": t.lr * t.head_lr_mult}],
                                         lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.train, self.hp, self.device = t, hp, device
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.amp)
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def step(self, source: dict, target: dict, i: int) -> float:
        factor = (1 - i / self.train.iterations) ** self.train.poly_power
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.model(source["image"])
            size = source["label"].shape[-2:]
            loss = F.cross_entropy(F.interpolate(out.main, size, mode="bilinear").float(), source["label"],
                                   ignore_index=255)
            loss = loss + self.train.seg_aux_weight * F.cross_entropy(
                F.interpolate(out.aux, size, mode="bilinear").float(), source["label"], ignore_index=255)
        loss.backward()
        with self.autocast():
            out = self.model(target["image"])
            size = target["image"].shape[-2:]
            ent = 0.0
            for logits, weight in ((out.main, self.hp.lambda_ent), (out.aux, self.hp.lambda_ent_aux)):
                p = F.interpolate(logits.float(), size, mode="bilinear").softmax(1)
                ent = ent + weight * (-(p * p.clamp_min(1e-30).log()).sum(1) / math.log(p.shape[1])).mean()
        ent.backward()
        self.optimizer.step()
        return (loss + ent).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=10, help="steps per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--check", type=int, default=2, help="steps of the parity check")
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("UDABENCH_DATA", "(unused: synthetic batches)")
    if args.threads:
        torch.set_num_threads(args.threads)
    suite = Setting(args.precision, args.channels_last).apply(load_suite(args.suite, args.overrides))
    device = resolve_device(args.device or suite.train.device)
    cls = get_method("minent")
    hp = from_dict(cls.Hparams, suite.methods.get("minent", {}), "methods.minent", suite.source_file)
    inputs = synthetic_inputs(suite, device, eval_images=0)
    target = [{k: v for k, v in b.items() if k != "label"} for b in inputs.target]
    n = len(inputs.source)

    def sides():
        torch.manual_seed(0)
        ctx, method = build_run(suite, cls, hp, device)
        bare = BareMinEnt(suite, hp, device, ctx.model.state_dict())

        def udabench_step(i):
            ctx.start_step(i)
            method.train_step(dict(inputs.source[i % n]), dict(target[i % n]), i)
            ctx.finish_step()

        return ctx.model, bare, udabench_step, lambda i: bare.step(inputs.source[i % n], target[i % n], i)

    model, bare, udabench_step, bare_step = sides()
    for i in range(args.check):
        udabench_step(i)
        bare_step(i)
    diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), bare.model.parameters()))
    scale = max(p.abs().max().item() for p in model.parameters())

    def timed(step, start):
        synchronize(device)
        begin = time.perf_counter()
        for i in range(start, start + args.steps):
            step(i)
        synchronize(device)
        return (time.perf_counter() - begin) / args.steps

    rounds, position = [], args.check
    for _ in range(args.rounds):
        rounds.append((timed(udabench_step, position), timed(bare_step, position)))
        position += args.steps
    ratios = np.array([u / b - 1 for u, b in rounds])
    env = collect_env(device)
    result = {"suite": suite.name, "device": env["device"], "torch": env["torch"], "threads": env["num_threads"],
              "precision": args.precision, "channels_last": args.channels_last,
              "sizes": {"source": list(suite.data.source.size), "target": list(suite.data.target.size),
                        "batch": suite.train.batch_size, "backbone": suite.model.backbone},
              "parity_max_abs_diff": diff, "parity_param_scale": scale,
              "udabench_ms": [1000 * u for u, _ in rounds], "bare_ms": [1000 * b for _, b in rounds],
              "overhead_pct_median": 100 * float(np.median(ratios)), "overhead_pct_rounds": (100 * ratios).tolist()}
    print(json.dumps(result, indent=1) if args.json else render(result))
    return 0


def render(r: dict) -> str:
    s = r["sizes"]
    return "\n".join([
        f"harness overhead, MinEnt, {r['suite']} ({s['backbone']}, source {s['source'][0]}×{s['source'][1]}, "
        f"target {s['target'][0]}×{s['target'][1]}, batch {s['batch']}+{s['batch']}, {r['precision']}"
        f"{'+channels_last' if r['channels_last'] else ''}) on {r['device']}, torch {r['torch']}, "
        f"{r['threads']} threads",
        f"parity after the check steps: max |udabench - bare| parameter difference {r['parity_max_abs_diff']:.3g} "
        f"(largest parameter {r['parity_param_scale']:.3g})",
        "round  udabench ms  bare ms  overhead",
        *(f"{i:>5}  {u:>11.1f}  {b:>7.1f}  {100 * (u / b - 1):>7.1f}%"
          for i, (u, b) in enumerate(zip(r["udabench_ms"], r["bare_ms"]))),
        f"overhead (median over rounds): {r['overhead_pct_median']:.1f}%"])


if __name__ == "__main__":
    sys.exit(main())
