"""Does the data pipeline keep up with a step? Data wait at paper sizes, original files vs the prepared cache.

Writes GTA5-format frames (1914×1052) and Cityscapes-format frames (2048×1024) with the test suite's
writers (tests/helpers.py), then feeds streams opened as the trainer's (``engine/rundata.py``:
``make_loader``, ``stream``: the source at 1280×720 and the target at 1024×512, batch 1 + 1) to a loop that
sleeps ``--step-ms`` per step, as the host does while a GPU computes (``--busy``: computes instead, as a CPU
device does). The data wait of a step is the time the loop blocks on its batches and copies them to the
device (the first step, which starts the workers, is reported apart). Each setting runs with the trainer's
hand-over (``engine/handover.py``: uint8 from workers, received and widened by a thread on a CPU, by
DataLoader's pin-memory thread and the GPU on CUDA) and with DataLoader's default (float32 images + int64
labels, received in the loop's own thread on a CPU).
It also times the per-item decode, what a batch costs to hand over (pinning, in float32 vs uint8), and
how many eval images per second the eval loader delivers (1024×512 inputs, native 2048×1024 labels,
batch 4): the 500-image evaluation goal of 20 s needs 25 images/s.

    python benchmarks/data_wait.py [--workers 0,2,4] [--handover udabench,dataloader] [--step-ms 150] [--busy]
                                   [--steps 20] [--images 8] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import write_cityscapes, write_gta5  # noqa: E402

from udabench.config import DomainAugment  # noqa: E402
from udabench.data import get_dataset, open_original  # noqa: E402
from udabench.data.cache import prepare  # noqa: E402
from udabench.engine.augment import Augmented  # noqa: E402
from udabench.engine.handover import Prefetched, collate_for, stream, to_device  # noqa: E402
from udabench.engine.rundata import make_loader, stream_seed  # noqa: E402
from udabench.engine.sampling import ResumableSampler  # noqa: E402

PAPER = {"gta5": ((1914, 1052), (1280, 720)), "cityscapes": ((2048, 1024), (1024, 512))}
SMOKE = {"gta5": ((96, 52), (64, 36)), "cityscapes": ((128, 64), (64, 32))}


def write_data(base: Path, n: int, sizes) -> dict[str, Path]:
    (gw, gh), (cw, ch) = sizes["gta5"][0], sizes["cityscapes"][0]
    return {"gta5": write_gta5(base / "GTA5", n, h=gh, w=gw),
            "cityscapes": write_cityscapes(base / "Cityscapes", {"train": n}, h=ch, w=cw)}


def open_splits(roots: dict[str, Path], sizes) -> dict:
    return {"source": get_dataset("gta5", roots["gta5"], "all", size=sizes["gta5"][1]),
            "target": get_dataset("cityscapes", roots["cityscapes"], "train", size=sizes["cityscapes"][1])}


def open_eval(roots: dict[str, Path], sizes):
    return get_dataset("cityscapes", roots["cityscapes"], "train", size=sizes["cityscapes"][1], resize_label=False)


def eval_throughput(dataset, workers: int, batches: int, device: torch.device, batch_size: int = 4) -> float:
    """Images per second the eval loader delivers once started (an endless sampler cycles the frames)."""
    sampler = ResumableSampler(len(dataset), 0)
    loader = iter(make_loader(keyed(dataset, 0), batch_size, workers, device, sampler=sampler))
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch_size / (time.perf_counter() - start)


def keyed(dataset, seed: int):
    """``dataset`` read by the samplers' (index, position) keys, not augmented (engine/augment.py)."""
    return Augmented(dataset, DomainAugment(), seed)


def decode_ms(dataset, repeats: int = 3) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        dataset[i % len(dataset)]
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def data_wait(datasets: dict, workers: int, steps: int, step_ms: float, device: torch.device,
              handover: str = "udabench", busy: bool = False) -> dict:
    def open_stream(domain: str, position: int):   # as RunData opens a uniform, unaugmented stream
        seed = stream_seed(0, domain)
        sampler = ResumableSampler(len(datasets[domain]), seed, position)
        default = handover == "dataloader"
        loader = make_loader(keyed(datasets[domain], seed), 1, workers, device, seed, sampler=sampler,
                             drop_last=True, collate_fn=None if default else collate_for(device, workers))
        return iter(loader) if default else stream(loader, device)

    streams, waits = {}, []
    for step in range(steps):
        start = time.perf_counter()
        for domain in datasets:   # opened at the first step that reads it (its workers start there), as in RunData
            to_device(next(streams.get(domain) or streams.setdefault(domain, open_stream(domain, step))), device)
        waits.append(time.perf_counter() - start)
        (compute if busy else time.sleep)(step_ms / 1000)
    for iterator in streams.values():
        if isinstance(iterator, Prefetched):
            iterator.close()
    steady = np.asarray(waits[1:]) * 1000
    return {"workers": workers, "handover": handover, "first_ms": 1000 * waits[0], "mean_ms": float(steady.mean()),
            "p90_ms": float(np.percentile(steady, 90)), "stalled_steps": int((steady > 0.1 * step_ms).sum()),
            "steps": len(steady)}


def compute(seconds: float, size: int = 512) -> None:
    """Keep the torch threads busy for ``seconds``, as a step on a CPU device does."""
    a, end = torch.randn(size, size), time.perf_counter() + seconds
    while time.perf_counter() < end:
        a @ a


def handover_ms(dataset) -> dict:
    """Pinning a batch of one item, as float32 images + int64 labels and as uint8 arrays."""
    if not torch.cuda.is_available():
        return {}
    item = dataset[0]
    small = {"image": item["image"].to(torch.uint8), "label": item["label"].to(torch.uint8)}
    out = {}
    for name, batch in (("float32+int64", item), ("uint8", small)):
        start = time.perf_counter()
        for _ in range(5):
            [v.pin_memory() for v in batch.values() if torch.is_tensor(v)]
        out[name] = 1000 * (time.perf_counter() - start) / 5
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="0,2,4", help="comma-separated num_workers values")
    parser.add_argument("--step-ms", type=float, default=150.0, help="simulated device step (host idle)")
    parser.add_argument("--busy", action="store_true",
                        help="the simulated step computes (matmuls on the torch threads) instead of idling: a CPU "
                             "device's step, which shares the cores with the workers")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--handover", default="udabench,dataloader",
                        help="batches handed over as the trainer does (engine/handover.py) and/or as DataLoader "
                             "does by default (float32 images + int64 labels, received in the loop's thread)")
    parser.add_argument("--images", type=int, default=8, help="frames written per dataset")
    parser.add_argument("--smoke", action="store_true", help="tiny frames, for the tests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else PAPER
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"step_ms": args.step_ms, "busy": args.busy, "cpus": os.cpu_count(), "modes": {},
               "sizes": {k: {"native": v[0], "input": v[1]} for k, v in sizes.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UDABENCH_CACHE"] = str(Path(tmp) / "cache")
        roots = write_data(Path(tmp), args.images, sizes)
        for mode in ("original", "prepared"):
            if mode == "prepared":
                for name, split in (("gta5", "all"), ("cityscapes", "train")):
                    prepare(*open_original(name, roots[name], split, sizes[name][1]))
                prepare(*open_original("cityscapes", roots["cityscapes"], "train", sizes["cityscapes"][1],
                                       resize_label=False))
            datasets = open_splits(roots, sizes)
            kinds = {d: type(ds).__name__ for d, ds in datasets.items()}
            entry = {"datasets": kinds, "decode_ms": {d: decode_ms(ds) for d, ds in datasets.items()},
                     "handover_ms": handover_ms(datasets["source"]), "wait": []}
            evaluation = open_eval(roots, sizes)
            entry["datasets"]["eval"] = type(evaluation).__name__
            entry["decode_ms"]["eval"] = decode_ms(evaluation)
            entry["eval_images_per_s"] = {}
            for workers in (int(w) for w in args.workers.split(",")):
                for handover in args.handover.split(","):
                    entry["wait"].append(data_wait(datasets, workers, args.steps, args.step_ms, device, handover,
                                                    args.busy))
                entry["eval_images_per_s"][workers] = eval_throughput(evaluation, workers, args.steps // 2 or 1,
                                                                      device)
            results["modes"][mode] = entry
    print(json.dumps(results, indent=1) if args.json else render(results))
    return 0


def render(results: dict) -> str:
    lines = [f"data wait per step (source + target, batch 1 + 1) with a simulated {results['step_ms']:.0f} ms "
             f"device step ({'computing' if results['busy'] else 'idle'} host); {results['cpus']} CPUs"]
    for mode, entry in results["modes"].items():
        decode = ", ".join(f"{d} {ms:.1f} ms" for d, ms in entry["decode_ms"].items())
        lines.append(f"\n{mode} ({', '.join(entry['datasets'].values())}): one item decodes in {decode}")
        if entry["handover_ms"]:
            lines.append("pinning one source item: " + ", ".join(f"{k} {v:.1f} ms"
                                                                 for k, v in entry["handover_ms"].items()))
        lines.append(f"{'workers':>8} {'handover':>10} {'first ms':>9} {'mean ms':>8} {'p90 ms':>7} {'stalled':>8} "
                     f"{'eval img/s':>11}")
        for w in entry["wait"]:
            lines.append(f"{w['workers']:>8} {w['handover']:>10} {w['first_ms']:>9.1f} {w['mean_ms']:>8.1f} "
                         f"{w['p90_ms']:>7.1f} {w['stalled_steps']:>4}/{w['steps']:<3} "
                         f"{entry['eval_images_per_s'][w['workers']]:>11.1f}")
    lines.append("\nstalled: steps whose data wait exceeds 10% of the step")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
