"""``udabench bench SUITE ...``: the suite loaded, inputs made, every (method, setting) timed, printed."""

from __future__ import annotations

import json
import os
import sys

import torch

from ..builtin import find_suite
from ..config import load_suite
from ..engine.runner import resolve_device
from ..errors import ConfigError
from .inputs import suite_inputs, synthetic_inputs
from .run import bench, render, settings_of

PRECISIONS = ("fp32", "bf16", "fp16")


def run(args) -> int:
    if args.data == "synthetic":
        # no file is read: dataset roots need not exist, but ${UDABENCH_DATA} must expand
        os.environ.setdefault("UDABENCH_DATA", "(unused by udabench bench --data synthetic)")
    suite = load_suite(find_suite(args.suite), args.overrides)
    bad = [p for p in args.precision if p not in PRECISIONS]
    if bad:
        raise ConfigError(f"--precision {','.join(bad)}: expected a comma-separated list of {', '.join(PRECISIONS)}.")
    if args.iterations < 1 or args.warmup < 0 or args.eval_images < 0:
        raise ConfigError("--iterations must be >= 1, --warmup and --eval-images >= 0.")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device or suite.train.device)
    methods = args.methods or suite.method_names()
    if args.data == "synthetic":
        inputs = synthetic_inputs(suite, device, args.eval_images, args.eval_label_size)
    else:
        inputs = suite_inputs(suite, device, args.eval_images)
    say = lambda line: print(line, file=sys.stderr, flush=True)
    report = bench(suite, methods, settings_of(args.precision, args.channels_last, args.compile), inputs, device,
                   args.iterations, args.warmup, args.methods_dir, say, args.floor_size)
    report["data"] = args.data
    print(json.dumps(report, indent=1) if args.json else render(report), end="" if not args.json else "\n")
    return 0

