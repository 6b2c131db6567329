"""``udabench run | ladder | status | eval | report | bench | list | data check | data prepare | viz`` — the command line.

Bad input ends with one clear paragraph on stderr and exit code 2 (``--debug`` shows the traceback);
a run that fails mid-way is marked ``failed``, the others go on, and the exit code is 1 (2 when what failed was its
input: an unreadable checkpoint, a broken plugin, a full disk).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import textwrap
from pathlib import Path

from .arguments import Parser
from .builtin import cite_docs, find_suite
from .errors import UdabenchError
from .ladder.factors import BY_NAME, OTHER
from .launch import LAUNCHED_ENV, positive_int
from .launch import add_arguments as add_launch_arguments
from .version import __version__

FORMATS = ("text", "md", "csv", "latex", "html")
CHECKPOINT_FORMATS = ("udabench", "advent", "maxsquare", "fada")   # = udabench.models.released.FORMATS (tested)


class _Warnings(logging.Handler):
    """``udabench: warning: ...`` on whatever stderr is at the time (warnings name the file they are about)."""

    def emit(self, record: logging.LogRecord) -> None:
        print("udabench: warning: " + cite_docs(record.getMessage()), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    logger = logging.getLogger("udabench")
    if not any(isinstance(h, _Warnings) for h in logger.handlers):
        logger.addHandler(_Warnings(logging.WARNING))
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # what launchers pass on to their children
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except UdabenchError as exc:
        if args.debug:
            raise
        print("udabench: error: " + "\n".join(textwrap.wrap(cite_docs(str(exc)), 100, break_long_words=False,
                                                            break_on_hyphens=False)), file=sys.stderr)  # paths whole
        return 2
    except KeyboardInterrupt:
        print("udabench: interrupted; finished runs and the last checkpoints are kept.", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    common.add_argument("--methods-dir", action="append", default=[], metavar="DIR",
                        help="extra folder of method plugin files (repeatable; also $UDABENCH_METHODS_DIR)")
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="override a suite key, e.g. --set train.iterations=100 or --set train.lr=1e-4 "
                                "(repeatable; value parsed as YAML)")
    results = argparse.ArgumentParser(add_help=False)
    results.add_argument("--results", default="results", help="results folder (default: results/)")
    methods = argparse.ArgumentParser(add_help=False)
    methods.add_argument("--methods", type=_csv, help="comma-separated methods (default: the suite's, plus the oracle)")
    # what selects the runs of a suite: `status` takes the options `run` was given
    plan = argparse.ArgumentParser(add_help=False, parents=[methods, overrides, results])
    plan.add_argument("--seeds", type=_csv_int, help="comma-separated seeds (default: the suite's)")
    plan.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="KEY=V1,V2,...",
                      help="run every value of a suite key, e.g. --sweep methods.advent.lambda_adv=1e-4,1e-3,1e-2 "
                           "(repeatable: the grid of all combinations; values parsed as YAML; replaces the suite's "
                           "sweep: of the same key; docs/selection.md)")
    plan.add_argument("--quick", action="store_true",
                      help="smoke test: a few iterations, batch 2, at most 8 images per split, tiny inputs; a suite "
                           "of its own, SUITE-quick (RESULTS/<suite>-quick/), never in the real runs' tables")
    parser = Parser(prog="udabench", parents=[common],
                    description="Benchmark suite for unsupervised domain adaptation in semantic segmentation.")
    parser.add_argument("--version", action="version", version=f"udabench {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", parents=[common, plan], help="train and evaluate the methods of a suite",
                         description="Train and evaluate every (method, seed) of a suite. Finished runs are "
                                     "skipped, unfinished ones resume from their last checkpoint.")
    run.add_argument("suite", help="suite YAML file, e.g. suites/toy_sim2real.yaml, or a suite's name "
                                   "(`udabench list suites`), e.g. toy_sim2real")
    run.add_argument("--dry-run", action="store_true",
                     help="print every planned run (method, seed, stage chain, run id, status, resolved config as "
                          "JSON; one line each, upstream stages first) and train nothing; with --launcher slurm: "
                          "print the sbatch script and the commands of the array, submit nothing")
    run.add_argument("--check-data", choices=("sample", "all", "none"), default="sample",
                     help="pre-flight decoding of the suite's data before any training: a sample of each split "
                          "(default, seconds), all files (as `udabench data check`), or none")
    add_launch_arguments(run)
    run.set_defaults(func=cmd_run)

    lad = sub.add_parser("ladder", parents=[common, plan], help="a method from one suite to another, one factor "
                         "of settings at a time",
                         description="The protocol ladder (docs/ladder.md): the settings in which two suites differ "
                                     "for a method's runs, grouped into factors (optimizer, up-sampling, init, BN, "
                                     "schedule and stages, sizes, augmentation, evaluation, selection, ...), and "
                                     "the chain of suites from FROM to TO, each rung one factor closer to TO. Every "
                                     "rung runs the method and Source-only; runs that rungs share are trained once. "
                                     "`udabench report --ladder` decomposes the gain over Source-only.")
    lad.add_argument("source", metavar="FROM", help="the suite to start from (file or name), e.g. a recipe under "
                                                    "suites/paper/")
    lad.add_argument("target", metavar="TO", help="the suite to arrive at, e.g. the benchmark's common suite")
    lad.add_argument("--method", required=True, help="the method whose gain over Source-only is decomposed")
    lad.add_argument("--order", type=_csv, metavar="F1,F2,...",
                     help="the order in which the factors move (every factor in which the suites differ, once; "
                          f"--dry-run lists them). Default: {', '.join([*BY_NAME, OTHER])}")
    lad.add_argument("--both-orders", action="store_true",
                     help="also the chain in the reverse order: each factor's effect is reported as the pair")
    lad.add_argument("--name", help="the ladder's suite name in the results folder (default: ladder_<FROM>_to_<TO>)")
    lad.add_argument("--rungs", type=_csv_index, metavar="K,...",
                     help="only the runs of these rungs (numbers as --dry-run lists them; launchers give one each)")
    lad.add_argument("--dry-run", action="store_true",
                     help="list the rungs (the factor each moves, its settings, its runs, how many are new) and "
                          "every planned run as `run --dry-run` does; train nothing")
    lad.add_argument("--status", action="store_true", help="where every run of the ladder stands, as `status`")
    lad.add_argument("--check-data", choices=("sample", "all", "none"), default="sample",
                     help="pre-flight decoding of the data before any training (as `run`)")
    add_launch_arguments(lad)
    lad.set_defaults(func=cmd_ladder)
    for command in (run, lad):   # launchers read a parent's options as argparse did (launch.child_arguments)
        command.set_defaults(option_strings=frozenset(command._option_string_actions))

    status = sub.add_parser("status", parents=[common, plan], help="where every run of a suite stands",
                            description="One line per run: done, running (host, pid, step, steps/s, ETA), "
                                        "interrupted, failed (the reason), partial (killed; resumes) or pending, "
                                        "and a count per state. Given the suite (file or name, with the options "
                                        "it is run with) it lists every run those plan; otherwise every run that "
                                        "`udabench run` planned in the results folder (RESULTS/<suite>/plan.json), "
                                        "then any other run directory found there (docs/launching.md).")
    status.add_argument("suite_file", nargs="?", metavar="SUITE", help="suite YAML file or name, as given to run")
    status.add_argument("--suite", help="without SUITE: only the runs of this suite name")
    status.add_argument("--gpus-per-run", type=positive_int, metavar="G",
                        help="processes per run (torchrun's --nproc_per_node; default: the suite's "
                             "launcher.gpus_per_run, 1)")
    status.set_defaults(func=cmd_status)

    ev = sub.add_parser("eval", parents=[common, overrides, results],
                        help="score a trained checkpoint on a suite's eval split",
                        description="Score a checkpoint (a udabench run's, or one released by the ADVENT, MaxSquare or "
                                    "FADA authors) on the suite's eval split, without training: only the eval split's "
                                    "data is read, no source or target copy and no init weights. A released format "
                                    "sets the network it was trained as and its paper's evaluation (docs/protocol.md); "
                                    "--set changes any of it. Writes an evaluation-only run directory, "
                                    "RESULTS/<suite>/released-<name>/, whose row has \"kind\": \"released\".")
    ev.add_argument("suite", help="suite YAML file or name naming the eval split and the classes, e.g. "
                                  "suites/gta5_cityscapes.yaml")
    ev.add_argument("--checkpoint", required=True, metavar="FILE", help="the checkpoint file to score")
    ev.add_argument("--format", choices=CHECKPOINT_FORMATS, default="udabench",
                    help="layout of the file (default: udabench, a run's checkpoints/last.pt); advent, maxsquare and "
                         "fada also evaluate as that paper's code (docs/datasets.md)")
    ev.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    ev.set_defaults(func=cmd_eval)

    rep = sub.add_parser("report", parents=[common, results], help="tables from finished runs",
                         description="Read run directories (metrics.jsonl rows and saved artefacts, never logs) and "
                                     "print per-class IoU, oracle-gap and class-subset tables: mean ± std over "
                                     "seeds, gain over Source-only, the papers' published rows beside the measured "
                                     "ones; or a paired comparison of two methods. See docs/reporting.md.")
    rep.add_argument("--suite", help="only this suite (default: every suite found)")
    rep.add_argument("--table", action="store_true", help="print the per-class IoU and oracle-gap tables")
    rep.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                     help="only the runs with this setting, e.g. --where train.iterations=120000 (a dotted key of "
                          "config.yaml, or its end as row labels show it: iterations=120000; KEY!=VALUE excludes; "
                          "repeatable, all must hold)")
    rep.add_argument("--ladder", nargs="?", const="", default=None, metavar="NAME",
                     help="the tables of the protocol ladders in the results folder (or of the ladder NAME): per "
                          "rung the method's mIoU, Source-only's, the gain and its change; with --figures their "
                          "waterfall figures (docs/ladder.md)")
    rep.add_argument("--format", choices=FORMATS, default="text", help="table format (default: text)")
    rep.add_argument("--out", help="write the report to this file instead of stdout")
    selection = rep.add_argument("--selection", default=None, metavar="NAME")
    # the names come from the registry (label-free validators included) when the help is shown: set after
    # add_argument, so that no argparse check expands it while the parser is built (it imports pandas and torch)
    selection.help = ("checkpoint selection protocol: %(protocols)s (‡: uses target labels; flagged in every output). "
                      "Default: the suite's report.selection (recipes of papers that picked the best snapshot on "
                      "target labels say oracle-target-val), else last")
    selection.protocols = _SelectionNames()
    rep.add_argument("--compare", nargs=2, metavar=("A", "B"),
                     help="paired comparison of two methods (names as in `udabench list methods`): per-class "
                          "delta A - B over paired seeds with a bootstrap CI over eval images")
    rep.add_argument("--include-running", action="store_true",
                     help="also show unfinished runs (no 'done' marker) at their latest evaluation, as rows of their "
                          "own marked 'unfinished' (never averaged with finished runs)")
    rep.add_argument("--suites-dir", default="suites", metavar="DIR",
                     help="where suite files with published rows (references:) are looked up by suite name "
                          "(default: ./suites)")
    rep.add_argument("--ccd", action="store_true",
                     help="class-center distance (FADA eq. 9) of every run's final layer4 features, as a table "
                          "(and a figure with --figures); cached in each run directory")
    rep.add_argument("--ccd-samples", type=int, default=2000, metavar="N",
                     help="CCD feature budget: at most N feature cells per class and domain (default: 2000)")
    rep.add_argument("--validators", action="store_true",
                     help="label-free model selection: each validator's pick, regret and rank, its weighted Spearman "
                          "with target mIoU, and the ranking of methods under it (docs/selection.md); with "
                          "--figures, a scatter per validator")
    rep.add_argument("--speed", action="store_true",
                     help="a table per suite of what the steps cost: step time split into data wait and compute, "
                          "images/s, counted FLOPs per step, TFLOP/s, peak memory")
    rep.add_argument("--figures", action="store_true",
                     help="write seaborn figures (PNG + PDF) to RESULTS/<suite>/figures/")
    rep.add_argument("--html", action="store_true",
                     help="write RESULTS/<suite>/report.html: tables and figures on one offline page "
                          "(implies --figures)")
    rep.add_argument("--device", default="cpu", type=_device,
                     help="device for CCD features and prediction panels (default: cpu)")
    rep.set_defaults(func=cmd_report)

    ben = sub.add_parser("bench", parents=[common, methods, overrides],
                         help="time a suite's training steps and evaluation",
                         description="Build the suite's model and methods at the suite's sizes, warm up, time "
                                     "training steps (ctx.start_step -> train_step -> ctx.finish_step, device "
                                     "synchronised) and an evaluation pass, per method and setting: ms/step, "
                                     "images/s, peak memory, counted FLOPs per step, achieved TFLOP/s and its "
                                     "share of the device's dense matmul rate in the same precision, measured "
                                     "in the same run (the floor ratio). See docs/speed.md.")
    ben.add_argument("suite", help="suite YAML file or name, e.g. suites/toy_sim2real.yaml or toy_sim2real")
    ben.add_argument("--precision", type=_csv, default=["fp32"], metavar="P,...",
                     help="comma-separated precisions: fp32, bf16, fp16 (train.amp; default: fp32)")
    ben.add_argument("--channels-last", action="store_true", help="every setting with model.channels_last")
    ben.add_argument("--compile", action="store_true", help="every setting with train.compile (torch.compile)")
    ben.add_argument("--iterations", type=int, default=10, metavar="N", help="timed steps per row (default: 10)")
    ben.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed steps first (default: 3)")
    ben.add_argument("--data", choices=("synthetic", "suite"), default="synthetic",
                     help="synthetic: random images and labels at the suite's sizes, no dataset read (default); "
                          "suite: the suite's first batches")
    ben.add_argument("--eval-images", type=int, default=50, metavar="N",
                     help="images in the timed evaluation pass, 0 for none (default: 50)")
    ben.add_argument("--eval-label-size", type=_size, metavar="WxH",
                     help="synthetic eval label size (default: the eval dataset's native size, e.g. 2048x1024 "
                          "for Cityscapes)")
    ben.add_argument("--device", type=_device, help="auto | cpu | cuda | cuda:N (default: the suite's train.device)")
    ben.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    ben.add_argument("--floor-size", type=int, metavar="N",
                     help="matrix size of the matmul floor probe (default: 8192 on CUDA, 1024 on a CPU)")
    ben.add_argument("--json", action="store_true", help="print the results as JSON")
    ben.set_defaults(func=cmd_bench)

    lst = sub.add_parser("list", parents=[common], help="list methods, suites or backbones")
    lst.add_argument("what", choices=("methods", "suites", "backbones"))
    lst.set_defaults(func=cmd_list)

    data = sub.add_parser("data", parents=[common], help="check dataset copies, or prepare a cache of them")
    data.set_defaults(func=lambda args: data.print_help() or 2)
    actions = data.add_subparsers(metavar="ACTION")
    suite_data = argparse.ArgumentParser(add_help=False, parents=[plan])   # what both actions take: the runs' data
    suite_data.add_argument("suite", help="suite YAML file, e.g. suites/gta5_cityscapes.yaml")
    suite_data.add_argument("--workers", type=int, default=0, help="decode with N processes (default: in this one)")
    check = actions.add_parser(
        "check", parents=[common, suite_data], help="check every dataset of a suite (exit 0 only when all are usable)",
        description="For every dataset of the suite: folders (with the official archive names), image/label "
                    "pairs, counts against the official splits, every label decoded and its ids checked, "
                    "image checksums and sizes. Reports every problem; exit code 1 when a dataset is unusable.")
    check.add_argument("--limit", type=int, metavar="N",
                       help="decode only the first N files of each split (folders, pairs and counts stay complete)")
    check.set_defaults(func=cmd_data_check)
    prepare = actions.add_parser(
        "prepare", parents=[common, suite_data],
        help="cache a suite's datasets resized, with train-id labels (optional, one-off)",
        description="Decode every dataset split of the suite once, at the suite's sizes and class set, and store "
                    "the images and train-id labels under $UDABENCH_CACHE/prepared/. Training then reads these "
                    "instead of decoding and resizing the originals; a cache whose source files changed is "
                    "ignored with a warning. Current caches are kept.")
    prepare.set_defaults(func=cmd_data_prepare)

    viz = sub.add_parser("viz", parents=[common], help="export a finished run's eval predictions",
                         description="Write the predictions of a finished run on its eval split as Cityscapes "
                                     "labelIds PNGs (benchmark-server format), overlays with entropy maps, and "
                                     "scores.json (per-class IoU of the exported predictions).")
    viz.add_argument("run", help="run directory, e.g. results/gta5_cityscapes/advent/seed0-<hash>")
    viz.add_argument("--out", help="output folder (default: RUN/export)")
    viz.add_argument("--limit", type=int, metavar="N", help="only the first N eval images")
    viz.add_argument("--no-overlays", dest="overlays", action="store_false", help="write the label PNGs only")
    viz.add_argument("--device", default="auto", type=_device, help="auto | cpu | cuda | cuda:N (default: auto)")
    viz.set_defaults(func=cmd_viz)
    return parser


def plan_of(args, suite_file: str, launched: bool):
    """The one plan of this command (``engine/plan.py``): its suite with the command's overrides, the runs it
    selects, each trained by the processes ``world_size_of`` gives."""
    from .config import load_suite
    from .engine.plan import make_plan

    path = find_suite(suite_file)
    suite = load_suite(path, args.overrides, quick=args.quick)
    world_size = world_size_of(args, suite, launched)
    axes = sweep_axes(args, suite)
    if axes:
        from .engine.sweep import sweep_plan

        return sweep_plan(path, suite, axes, args.results, args.overrides, args.quick, args.methods, args.seeds,
                          args.methods_dir, world_size)
    return make_plan(suite, args.results, args.methods, args.seeds, args.methods_dir, world_size)


def sweep_axes(args, suite) -> list:
    """The sweep of this command: the suite's ``sweep:`` block with the command line's --sweep and --set over it."""
    from .sweep import file_axes, merge_axes, parse_sweep

    return merge_axes(file_axes(suite.sweep, suite.source_file), [parse_sweep(s) for s in args.sweeps],
                      args.overrides)


def world_size_of(args, suite, launched: bool) -> int:
    """The processes that train each run: for runs that a launcher starts (and that `status` lists) its
    --gpus-per-run, else the suite's launcher.gpus_per_run; for `run` itself, torchrun's world (1 outside it)."""
    from .engine.distributed import planned_world_size

    return (args.gpus_per_run or suite.launcher.gpus_per_run) if launched else planned_world_size()


def cmd_run(args) -> int:
    return execute(args, plan_of(args, args.suite, launched=bool(args.launcher)))


def execute(args, plan) -> int:
    """What `run` and `ladder` do with their plan: print it (--dry-run), launch it (--launcher) or train it here."""
    from .engine.runner import run_plan

    suite = plan.suite
    if args.dry_run and args.launcher != "slurm":
        return dry_run(plan)
    if args.launcher:
        from .launch import launch

        return launch(plan, args, args.argv, args.option_strings)
    outcomes = run_plan(plan, args.debug, args.check_data)
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports for all
    runs = lambda status: ", ".join(f"{o.spec.method.name} seed {o.spec.seed}" for o in outcomes if o.status == status)
    finished = sum(o.status in ("trained", "skipped") for o in outcomes)
    print(f"{finished} of {len(outcomes)} runs finished; results in {Path(args.results) / suite.name}")
    for status, why in (("busy", "left to the live processes that claimed them"),
                        ("lost", "taken over by other processes")):
        if runs(status):
            print(f"{why}: {runs(status)} (see `udabench status`)")
    stopped = [o for o in outcomes if o.status in ("interrupted", "stopped")]
    if stopped:
        from .engine.preempt import exit_code

        for status, what in (("interrupted", "interrupted"), ("stopped", "not started")):
            if runs(status):
                print(f"{what}: {runs(status)}; run the same command again to resume", file=sys.stderr)
        return exit_code(stopped[0].signum)
    if runs("failed"):
        print(f"failed: {runs('failed')}", file=sys.stderr)
        return 2 if any(o.bad_input for o in outcomes if o.status == "failed") else 1   # bad input: as before runs
    return 0


def cmd_ladder(args) -> int:
    from .config import load_suite
    from .ladder.build import build_ladder, ladder_plan

    source, target = (load_suite(find_suite(f), args.overrides, quick=args.quick) for f in (args.source, args.target))
    ladder = build_ladder(source, target, args.method, args.order, args.both_orders, args.name, args.methods_dir)
    launched = bool(args.launcher) or args.status
    world = world_size_of(args, ladder.rungs[-1].suite, launched)
    plan = ladder_plan(ladder, args.results, args.methods, args.seeds, args.rungs, args.methods_dir, world)
    if args.status:
        from .engine.status import render
        from .ladder.listing import ladder_states

        print(render(ladder_states(ladder, plan)), end="")
        return 0
    if args.dry_run:
        from .ladder.listing import describe_ladder

        print(describe_ladder(ladder, plan))
    elif not os.environ.get(LAUNCHED_ENV):   # the parent writes the manifest, for every seed it plans
        from .ladder.manifest import write_manifest

        write_manifest(ladder, args.results, plan.seeds, args.methods_dir, world)
    return execute(args, plan)


def cmd_status(args) -> int:
    from .engine.status import found_states, planned_states, render

    if args.suite_file:
        states = planned_states(plan_of(args, args.suite_file, launched=True))
    else:
        states = found_states(args.results, suite_name(args.suite))
    print(render(states), end="")
    return 0


def dry_run(plan) -> int:
    import json

    from .engine.stages import describe_plan

    for spec in plan.runs:
        described = describe_plan(spec)
        print(f"{spec.title()}  [{described['stages']}]  {described['run_id']}  "
              f"{described['status']}  " + json.dumps(described, sort_keys=True))
    print(f"{len(plan.runs)} planned runs (nothing trained); results would go to {plan.results / plan.suite.name}",
          file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from .engine.evalrun import evaluate_checkpoint
    from .engine.runner import resolve_device

    row, scored = evaluate_checkpoint(find_suite(args.suite), args.checkpoint, args.format, args.overrides, args.results,
                                      resolve_device(args.device))
    what = "scored" if scored else "already scored (same file and settings)"
    print(f"{row['method_label']}: {what}, mIoU {row['miou']:.2f} on {row['protocol']['eval']} "
          f"({Path(args.results) / row['suite'] / row['method'] / row['run_id']})")
    return 0


def cmd_report(args) -> int:
    from .analysis.records import load_records
    from .analysis.report import build_report
    from .vocabulary import Kind

    if args.ladder is not None:
        return report_ladder(args)
    records = load_records(args.results, suite_name(args.suite), args.include_running, args.where)
    text = build_report(records, args.format, args.selection, args.table, args.compare, args.suites_dir)
    finished = records[records["kind"] != Kind.UNFINISHED]   # CCD, speed, figures, the page: finished runs only
    if (args.ccd or args.speed or args.figures or args.html) and finished.empty:
        raise UdabenchError(f"--ccd, --speed, --figures and --html need finished runs; {args.results} has "
                            f"unfinished ones only (--include-running shows them in the tables).")
    if args.ccd:
        from .analysis.publish import ccd_tables

        text += "\n" + "\n".join(ccd_tables(args.results, finished, args.format, args.ccd_samples, args.device))
    if args.validators:
        from .analysis.validators import validator_tables, write_validator_figures

        text += "\n" + "\n".join(validator_tables(finished, args.format))
        if args.figures:
            print(f"{len(write_validator_figures(finished, args.results))} validator figures written", file=sys.stderr)
    if args.speed:
        from .analysis.speed import speed_tables

        text += "\n" + "\n".join(speed_tables(finished, args.format))
    if args.figures or args.html:
        from .analysis.publish import publish

        with writing("the figures and the page go into RESULTS/<suite>/figures/ and RESULTS/<suite>/report.html"):
            written = publish(args.results, finished, args.selection, args.suites_dir, html=args.html, ccd=args.ccd,
                              samples_per_class=args.ccd_samples, device=args.device)
    return _deliver(args, text, written if args.figures or args.html else [])


def report_ladder(args) -> int:
    from .analysis.ladder import ladder_report

    return _deliver(args, *ladder_report(args.results, args.ladder or None, args.format, args.figures))


def _deliver(args, text: str, written: list) -> int:
    """A report's text to --out or stdout; the files it wrote named on stderr."""
    if written:
        print(f"{len(written)} files written to {', '.join(sorted({str(p.parent) for p in written}))}",
              file=sys.stderr)
    if args.out:
        with writing("--out names the file the report is written to"):
            Path(args.out).write_text(text)
        print(f"report written to {args.out}")
    else:
        print(text, end="")
    return 0


@contextlib.contextmanager
def writing(where: str):
    """A file the report cannot write (a read-only results folder, a full disk) is a clean error naming it."""
    try:
        yield
    except OSError as exc:
        raise UdabenchError(f"report: cannot write {exc.filename or 'a file'} ({exc.strerror or exc}); {where}. "
                            f"Make that folder writable, or copy the results folder somewhere writable and pass "
                            f"--results COPY (the tables alone, without --figures/--html, write nothing).") from None


def suite_name(name: str | None) -> str | None:
    """``--suite`` of `report` and `status`: a suite's folder under --results, never a path out of it (as the
    suite names `run` accepts)."""
    import re

    from .schema import FOLDER_NAME, FOLDER_NAME_RULE

    if name is not None and not re.fullmatch(FOLDER_NAME, name):
        raise UdabenchError(f"--suite {name!r} is not a suite name: a suite's runs are the folder RESULTS/<name>, and "
                            f"a name is {FOLDER_NAME_RULE}. Pass the name as `udabench status` lists it.")
    return name


def cmd_bench(args) -> int:
    from .bench.command import run

    return run(args)


def cmd_list(args) -> int:
    if args.what == "methods":
        from .registry import available

        found = available(args.methods_dir)
        width = max(map(len, found.methods), default=10)
        for name, cls in sorted(found.methods.items()):
            print(f"{name:<{width}}  {cls.paper}\n{'':<{width}}  {cls.description}")
        for file, error in found.broken.items():
            print(f"{file.stem:<{width}}  BROKEN plugin {file}: {cite_docs(str(error))}")
        if found.broken:   # a check of one's plugins (CI, a launcher's first step) must not pass
            print(f"{len(found.broken)} plugin file(s) broken: {', '.join(map(str, found.broken))}; their methods "
                  f"are unavailable, the others work.", file=sys.stderr)
            return 1
    elif args.what == "suites":
        import yaml

        from .builtin import suite_files
        from .config import read_suite_tree
        from .errors import ConfigError

        found = suite_files()
        width = max(map(len, found), default=10)
        for name, file in found.items():   # by name: `udabench run NAME`
            try:
                description = read_suite_tree(file).get("description", "")
            except (ConfigError, yaml.YAMLError):
                description = "(not a valid suite file)"
            print(f"{name:<{width}}  {description}")
    else:
        from .models import BACKBONES

        width = max(map(len, BACKBONES))
        for name, role in BACKBONES.items():
            print(f"{name:<{width}}  {role}")
        print("any timm model that builds with features_only=True, output_stride=8 also works")
    return 0


def cmd_data_check(args) -> int:
    from .analysis.render import render
    from .data.check import check_suites, summary_table

    plan = plan_of(args, args.suite, launched=False)
    reports = check_suites(plan.suites(), args.workers, args.limit)
    print(render(summary_table(reports), "text", f"{plan.suite.name}: datasets"))
    for report in reports:
        for level, messages in (("error", report.errors), ("warning", report.warnings)):
            for message in messages:
                text = f"{level}: {report.dataset} {report.split}: {message}"
                print(textwrap.fill(cite_docs(text), 100, subsequent_indent="    ", break_long_words=False,
                                    break_on_hyphens=False))   # paths stay whole
    unusable = [f"{r.dataset} {r.split}" for r in reports if not r.usable]
    print(f"unusable: {', '.join(unusable)}" if unusable else "all datasets usable")
    return 1 if unusable else 0


def cmd_data_prepare(args) -> int:
    from .analysis.render import render
    from .data.prepare import prepare_suites

    plan = plan_of(args, args.suite, launched=False)
    print(render(prepare_suites(plan.suites(), args.workers), "text", f"{plan.suite.name}: prepared datasets"))
    return 0


def cmd_viz(args) -> int:
    from .analysis.export import export_run
    from .engine.runner import resolve_device

    out = export_run(args.run, resolve_device(args.device), args.out, args.limit, args.overlays)
    print(f"predictions written to {out} (labelIds/, {'overlays/, ' if args.overlays else ''}scores.json)")
    return 0


class _SelectionNames:
    """The registered selection protocols, listed when a help text is formatted (``%(protocols)s``)."""

    def __str__(self) -> str:
        from .selection import SELECTIONS

        return ", ".join(s.name + s.marker for s in SELECTIONS.values())


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expects a comma-separated list, got {text!r}, an empty one; leave the "
                                         f"option out to use the suite's list")
    return items


def _device(text: str) -> str:
    from .config import DEVICE

    if not DEVICE.ok(text):
        raise argparse.ArgumentTypeError(f"must be {DEVICE.expected}, got {text!r}")
    return text


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        if width < 1 or height < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 2048x1024, got {text!r}") from None
    return width, height


def _csv_index(text: str) -> list[int]:
    try:
        indices = [int(t) for t in _csv(text)]
    except ValueError:
        indices = [-1]
    if min(indices) < 0:
        raise argparse.ArgumentTypeError(f"expects comma-separated rung numbers (0, 1, ...), got {text!r}")
    return indices


def _csv_int(text: str) -> list[int]:
    from .config import SEED

    try:
        seeds = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects comma-separated integers, got {text!r}") from None
    for seed in seeds:
        if not SEED.ok(seed):
            raise argparse.ArgumentTypeError(f"seed {seed} must be {SEED.expected}, as in a suite's seeds")
    return seeds
