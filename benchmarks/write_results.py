"""Turn the JSON files of a ``benchmarks/gpu.sh`` run into the GPU section of ``benchmarks/RESULTS.md``.

Reads ``DIR/*.json`` (``udabench bench --json``, ``overhead.py --json``, ``data_wait.py --json``) and
``DIR/*.failed`` (a step that failed or ran out of time), and replaces the text between the GPU markers
of ``--out`` (the whole file when it has none). Every number comes from those files; the goals of
issue 16 are printed beside them with a yes/no, never adjusted.

    python benchmarks/write_results.py DIR --out benchmarks/RESULTS.md [--title "..."]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BEGIN, END = "<!-- gpu.sh: begin -->", "<!-- gpu.sh: end -->"
GOAL_SPEEDUP, GOAL_FLOOR, GOAL_EVAL_S = 2.0, 3.0, 20.0


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def bench_section(reports: list[dict]) -> list[str]:
    env = reports[0]["env"]
    lines = [f"Device: **{env['device']}**; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
             f"timm {env['timm']}, Python {env['python']}; git {str(env['git_revision'])[:10]}"
             f"{' (dirty)' if env['git_dirty'] else ''}.", ""]
    floors = {p: t for r in reports for p, t in r["floor_tflops"].items()}
    lines.append("Matmul floor (dense square matmul, same run): " + ", ".join(
        f"{p} {t:.3g} TFLOP/s" + (" (TF32, as cuDNN runs fp32 convolutions)" if p == "fp32" and
                                  env.get("fp32_matmul") == "tf32" else "") for p, t in floors.items()) + ".")
    train = [row for r in reports for row in r["train"]]
    fp32 = {row["method"]: row["mean_s"] for row in train if row["setting"] == "fp32"}
    rows = []
    for row in train:
        speedup = fp32[row["method"]] / row["mean_s"] if row["method"] in fp32 else None
        rows.append([row["method"], row["setting"], f"{1000 * row['median_s']:.1f}", f"{1000 * row['mean_s']:.1f}",
                     f"{row['images_per_s']:.2f}", f"{row['peak_mem_gb']:.2f}", f"{row['flops_per_step'] / 1e9:.4g}",
                     f"{row['tflops']:.3g}", f"{100 * row['floor_ratio']:.1f}%", f"{1 / row['floor_ratio']:.2f}×",
                     "-" if speedup is None else f"{speedup:.2f}×"])
    sizes = reports[0]["sizes"]
    lines += ["", "Training steps ({backbone}, source {source} + target {target}, batch {batch_size} + {batch_size}, "
                  "synthetic batches on the device; ".format(**sizes)
                  + f"{reports[0]['warmup']} warm-up + {reports[0]['iterations']} timed steps):", ""]
    lines += table(["method", "setting", "ms/step median", "ms/step mean", "images/s", "peak GB", "GFLOP/step",
                    "TFLOP/s", "floor ratio", "× floor", "vs fp32"], rows)
    lines += ["", f"Goals: bf16+channels_last ≥ {GOAL_SPEEDUP:.0f}× fp32 steps/s; step time ≤ {GOAL_FLOOR:.0f}× "
                  f"the counted-FLOP floor."]
    for row in train:
        if row["setting"].startswith("bf16+channels_last") and row["method"] in fp32:
            speedup = fp32[row["method"]] / row["mean_s"]
            lines.append(f"- {row['method']} {row['setting']}: {speedup:.2f}× fp32 "
                         f"({'met' if speedup >= GOAL_SPEEDUP else 'not met'}); {1 / row['floor_ratio']:.2f}× "
                         f"the floor ({'met' if 1 / row['floor_ratio'] <= GOAL_FLOOR else 'not met'})")
    evals = [row for r in reports for row in r["eval"]]
    if evals:
        lines += ["", "Evaluation ({eval} inputs, logits up-sampled to {eval_label} labels, batch {eval_batch_size}, "
                      "per-image matrices):".format(**sizes), ""]
        lines += table(["setting", "images", "seconds", "ms/image", "images/s", "peak GB", "GFLOP/image",
                        "TFLOP/s", "floor ratio", f"≤ {GOAL_EVAL_S:.0f} s for 500"],
                       [[e["setting"], str(e["images"]), f"{e['seconds']:.1f}", f"{e['ms_per_image']:.1f}",
                         f"{e['images_per_s']:.1f}", f"{e['peak_mem_gb']:.2f}", f"{e['flops_per_image'] / 1e9:.4g}",
                         f"{e['tflops']:.3g}", f"{100 * e['floor_ratio']:.1f}%",
                         "yes" if 500 * e["seconds"] / e["images"] <= GOAL_EVAL_S else "no"] for e in evals])
        lines.append("Host batches pinned and copied per batch as in a run; decoding is not included (data wait "
                     "below).")
    return lines


def overhead_section(result: dict) -> list[str]:
    s = result["sizes"]
    return ["", f"Harness overhead (MinEnt, {s['backbone']}, {s['source'][0]}×{s['source'][1]} + "
                f"{s['target'][0]}×{s['target'][1]}, {result['precision']}"
                f"{'+channels_last' if result['channels_last'] else ''}): udabench vs a bare PyTorch loop, "
                f"**{result['overhead_pct_median']:.1f}%** (median of {len(result['bare_ms'])} alternating rounds: "
                + ", ".join(f"{v:.1f}%" for v in result["overhead_pct_rounds"])
                + f"; goal ≤ 5 %). Parity: max parameter difference {result['parity_max_abs_diff']:.2g} after "
                  "the check steps."]


def data_wait_section(result: dict) -> list[str]:
    size = lambda d, k: "×".join(map(str, result["sizes"][d][k]))
    lines = ["", f"Data wait per step (GTA5-format {size('gta5', 'native')} → {size('gta5', 'input')} + "
                 f"Cityscapes-format {size('cityscapes', 'native')} → {size('cityscapes', 'input')}, batch 1 + 1, "
                 f"a simulated {result['step_ms']:.0f} ms step, {result['cpus']} CPUs; eval: native labels, "
                 "batch 4):", ""]
    rows = [[mode, str(w["workers"]), w["handover"],
             f"{entry['decode_ms']['source']:.1f} / {entry['decode_ms']['target']:.1f}", f"{w['first_ms']:.0f}", f"{w['mean_ms']:.1f}", f"{w['p90_ms']:.1f}", f"{w['stalled_steps']}/{w['steps']}",
             f"{entry['eval_images_per_s'][str(w['workers'])]:.1f}"]
            for mode, entry in result["modes"].items() for w in entry["wait"]]
    return lines + table(["files", "workers", "hand-over", "decode ms (source / target)", "first step ms",
                          "mean wait ms", "p90 ms", "stalled", "eval images/s"], rows)


def section(folder: Path, title: str) -> str:
    found = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    reports = [r for r in found.values() if "train" in r]
    lines = [BEGIN, f"## {title}", "", f"Written by `benchmarks/gpu.sh` on {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    if reports:
        lines += bench_section(reports)
    else:
        lines.append("No `udabench bench` result came back (see the failures below).")
    lines += [line for r in found.values() if "overhead_pct_median" in r for line in overhead_section(r)]
    lines += [line for r in found.values() if "modes" in r for line in data_wait_section(r)]
    failed = sorted(folder.glob("*.failed"))
    if failed:
        lines += ["", "Not measured (failed or out of time):"]
        lines += [f"- {p.stem}: {p.read_text().strip().splitlines()[-1] if p.read_text().strip() else '?'}"
                  for p in failed]
    return "\n".join(lines + ["", END]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--title", default="GPU")
    args = parser.parse_args()
    new = section(args.folder, args.title)
    old = args.out.read_text() if args.out.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + new + old[old.index(END) + len(END):].lstrip("\n")
    args.out.write_text(new)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
