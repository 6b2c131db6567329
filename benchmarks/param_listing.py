"""The segmenter's SGD step under each parameter listing, and the effective LR of the official one.

Step time, on the full caffe-style DeepLab-V2 ResNet-101 of the ADVENT recipe (or MaxSquare's, ``--bn train``)
with random gradients, median over ``--steps`` timed steps after 3 warm-up ones, alternating the variants:
- ``authors``: the authors' PyTorch (0.4.1-1.x) ``SGD.step`` over the official list, entry by entry
  (``tests/official_loops.TorchSGD04``, the trajectory tests' statement of it);
- ``torch_repeated``: today's ``torch.optim.SGD`` given that same list (what the official code runs on a
  current PyTorch: it warns, and computes other multiples, see below);
- ``deeplab_official``: udabench's ``RepeatedSGD`` (``train.param_listing: deeplab_official``);
- ``unique``: ``torch.optim.SGD`` with each tensor once (``train.param_listing: unique``).

Effective LR: one tensor with a constant gradient, listed k = 3 and 4 times, momentum 0.9, weight decay 5e-4, LR
2.5e-4; its movement in the first iteration and per iteration after 500, over that of a tensor listed once:
under the authors' rule (= ``deeplab_official``), and under today's ``torch.optim.SGD`` (foreach on and off).

    python benchmarks/param_listing.py [--steps 20] [--bn frozen_affine|train] [--threads 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from official_loops import TorchSGD04, deeplab_1x_params  # noqa: E402

from udabench.engine.environment import collect_env  # noqa: E402
from udabench.engine.listing import RepeatedSGD, segmenter_optimizer  # noqa: E402
from udabench.models import DeepLabV2  # noqa: E402

LR, MOMENTUM, DECAY = 2.5e-4, 0.9, 5e-4


def official_list(model) -> tuple[list, list]:
    b = model.backbone
    blocks = [b.conv1, b.bn1, b.layer1, b.layer2, b.layer3, b.layer4]
    return deeplab_1x_params(blocks), [p for h in (model.head, model.aux_head) for p in h.parameters()]


def optimizers(model) -> dict:
    trunk, heads = official_list(model)
    cfg = SimpleNamespace(lr=LR, head_lr_mult=10.0, momentum=MOMENTUM, weight_decay=DECAY, optimizer="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # today's PyTorch warns about the duplicates
        repeated = torch.optim.SGD([{"params": trunk}, {"params": heads, "lr": 10 * LR}], lr=LR, momentum=MOMENTUM,
                                   weight_decay=DECAY)
    return {"authors": TorchSGD04([trunk, heads], [LR, 10 * LR], MOMENTUM, DECAY),
            "torch_repeated": repeated,
            "deeplab_official": segmenter_optimizer(model, SimpleNamespace(**vars(cfg), param_listing="deeplab_official")),
            "unique": segmenter_optimizer(model, SimpleNamespace(**vars(cfg), param_listing="unique"))}


def time_steps(model, steps: int) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) * 1e-3 for p in params]
    opts = optimizers(model)
    times = {name: [] for name in opts}
    for i in range(3 + steps):
        for name, opt in opts.items():
            for p, g in zip(params, grads):
                p.grad = g.clone()
            start = time.perf_counter()
            opt.step()
            if i >= 3:
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def movement(step_fn_for, k: int, iterations: int = 501) -> tuple[float, float]:
    p = torch.zeros(1, requires_grad=True)
    step = step_fn_for(p, k)
    trajectory = []
    for _ in range(iterations):
        p.grad = torch.ones(1)
        step()
        trajectory.append(-p.item())
    return trajectory[0], trajectory[-1] - trajectory[-2]


def effective_lr() -> dict:
    def authors(p, k):
        return RepeatedSGD([{"params": [p], "visits": k}], lr=LR, momentum=MOMENTUM, weight_decay=DECAY).step

    def today(foreach):
        def make(p, k):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.optim.SGD([p] * k, lr=LR, momentum=MOMENTUM, weight_decay=DECAY, foreach=foreach).step
        return make

    rules = {"authors (deeplab_official)": authors, "torch SGD, foreach=False": today(False),
             "torch SGD, foreach=True": today(True)}
    out = {}
    for rule, make in rules.items():
        once = movement(make, 1)
        for k in (3, 4):
            first, steady = movement(make, k)
            out[f"{rule}, listed {k}x"] = {"first_iteration": first / once[0], "steady_state": steady / once[1]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bn", choices=("frozen_affine", "train"), default="frozen_affine")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DeepLabV2("deeplab_resnet101", 19, bn_mode=args.bn, freeze_stem_bn=args.bn == "train")
    trunk, heads = official_list(model)
    result = {"network": f"deeplab_resnet101 (bn_mode {args.bn})", "entries_1x": len(trunk),
              "tensors_1x": len({id(p) for p in trunk}), "threads": args.threads, "steps": args.steps,
              "step_ms": time_steps(model, args.steps), "effective_lr": effective_lr(),
              "env": collect_env(torch.device("cpu"))}
    for name, ms in result["step_ms"].items():
        print(f"{name:>17}: {ms:8.1f} ms per step")
    for rule, ratio in result["effective_lr"].items():
        print(f"{rule}: first iteration {ratio['first_iteration']:.2f}x, steady state {ratio['steady_state']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
