"""Speed you can see: counted FLOPs, the matmul floor, ``udabench bench``, speed fields of rows, compile.

The pytest-benchmark cases of the hot paths are the ``*_speed`` tests (``pytest --benchmark-enable -k speed``).
"""

import contextlib
import io
import json

import pytest
import torch
from helpers import BUILTIN
from torch import nn
from torch.utils.data import default_collate

from udabench.analysis.records import load_records
from udabench.analysis.speed import speed_tables
from udabench.bench import Setting, render
from udabench.bench.floor import matmul_tflops
from udabench.bench.inputs import synthetic_inputs
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine import rundata
from udabench.engine.build import build_run
from udabench.engine.rundata import build_data, make_loader
from udabench.engine.runner import run_suite
from udabench.engine.speed import count_flops
from udabench.registry import discover

CPU = torch.device("cpu")


def conv_forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 FLOPs per multiply-add of every convolution, from forward hooks: 2 · out elements · (C_in/groups) · k²."""
    total = 0

    def hook(conv, _, out):
        nonlocal total
        total += 2 * out.numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def test_count_flops_of_a_convolution_forward_and_backward():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 10, 12)
    forward = 2 * (2 * 8 * 10 * 12) * 3 * 9
    _, flops = count_flops(lambda: conv(x))
    assert flops == forward
    _, flops = count_flops(lambda: conv(x).sum().backward())
    assert flops == 2 * forward                     # + the weight gradient (the input needs none)
    x.requires_grad_(True)
    _, flops = count_flops(lambda: conv(x).sum().backward())
    assert flops == 3 * forward                     # + the input gradient


def test_count_flops_of_the_segmenter_equals_the_convolution_formula(write_suite):
    ctx, _ = build_run(load_suite(write_suite()), discover()["source_only"], discover()["source_only"].Hparams(), CPU)
    model = ctx.model.eval()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        _, flops = count_flops(lambda: model(x))
    assert flops == conv_forward_flops(model, x) > 0


def test_matmul_floor_is_a_rate():
    rate = matmul_tflops(CPU, "fp32", size=64, seconds=0.01)
    assert 0 < rate < 1e3


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory, tiny_data):
    """One ``udabench bench --json`` of the tiny suite, source-only and AdvEnt, fp32, 2 timed steps, 3 eval images."""
    import yaml
    from helpers import tiny_suite_dict

    path = tmp_path_factory.mktemp("bench") / "suite.yaml"
    suite = tiny_suite_dict(tiny_data)
    suite["methods"]["advent"] = {"d_width": 8}       # a narrow discriminator: this is about bookkeeping
    path.write_text(yaml.safe_dump(suite))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", str(path), "--methods", "source_only,advent", "--iterations", "2", "--warmup", "0",
                     "--eval-images", "3", "--eval-label-size", "80x40", "--json"])
    assert code == 0
    return load_suite(path), json.loads(out.getvalue())


def test_bench_rows_are_consistent_with_their_definitions(bench_report):
    suite, report = bench_report
    rows = {r["method"]: r for r in report["train"]}
    floor = report["floor_tflops"]["fp32"]
    assert set(rows) == {"source_only", "advent"} and report["env"]["torch"] == torch.__version__
    assert rows["source_only"]["images_per_step"] == 2 and rows["advent"]["images_per_step"] == 4
    for row in rows.values():
        assert row["steps"] == 2 and row["setting"] == "fp32" and row["finite"]
        assert row["images_per_s"] == pytest.approx(row["images_per_step"] / row["mean_s"])
        assert row["tflops"] == pytest.approx(row["flops_per_step"] / row["mean_s"] / 1e12)
        assert row["floor_ratio"] == pytest.approx(row["tflops"] / floor)
    # AdvEnt adds a target pass and two discriminators to source-only's step
    assert rows["advent"]["flops_per_step"] > 1.5 * rows["source_only"]["flops_per_step"]
    (evaluation,) = report["eval"]
    ctx, _ = build_run(Setting().apply(suite), discover()["source_only"], discover()["source_only"].Hparams(), CPU)
    per_image = conv_forward_flops(ctx.model.eval(), torch.randn(1, 3, 32, 64))
    assert evaluation["images"] == 3 and evaluation["flops_per_image"] == per_image
    assert evaluation["images_per_s"] == pytest.approx(3 / evaluation["seconds"])
    text = render(report)
    assert "advent" in text and "matmul floor: fp32" in text and "GFLOP/image" in text


def test_source_only_step_flops_equal_an_independent_count(bench_report, write_suite):
    """The bench's count is that of one supervised step: forward and backward of the source batch."""
    suite, report = bench_report
    flops = {r["method"]: r["flops_per_step"] for r in report["train"]}["source_only"]
    ctx, _ = build_run(Setting().apply(suite), discover()["source_only"], discover()["source_only"].Hparams(), CPU)
    batch = {"image": torch.randn(2, 3, 32, 64), "label": torch.randint(0, 19, (2, 32, 64))}
    _, expected = count_flops(lambda: ctx.supervised_step(batch))
    assert flops == expected


def test_synthetic_eval_labels_have_the_native_size(write_suite):
    suite = load_suite(write_suite())
    inputs = synthetic_inputs(suite, CPU, eval_images=2, label_size=(80, 40))
    assert inputs.eval[0]["label"].shape == (2, 40, 80) and inputs.eval[0]["image"].shape == (2, 3, 32, 64)
    assert inputs.source[0]["image"].shape == (2, 3, 32, 64) and inputs.source[0]["label"].max() == 255


def test_bench_bad_precision_is_a_clear_error(write_suite, capsys):
    assert main(["bench", str(write_suite()), "--precision", "fp8"]) == 2
    assert "--precision fp8" in capsys.readouterr().err


# ---- speed fields of the training rows -----------------------------------------------------------------

@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory, tiny_data):
    import yaml
    from helpers import tiny_suite_dict

    base = tmp_path_factory.mktemp("speedrows")
    (base / "suite.yaml").write_text(yaml.safe_dump(tiny_suite_dict(tiny_data, iterations=4, eval_every=2)))
    suite = load_suite(base / "suite.yaml")
    built = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rundata, "make_loader", lambda *a, **k: built.append(a[1]) or make_loader(*a, **k))
        outcome = run_suite(suite, base / "results", methods=["oracle"])[0]
    return suite, base / "results", outcome, built


def test_rows_record_counted_flops_and_the_split_step_time(oracle_run):
    suite, _, outcome, _ = oracle_run
    first, row = outcome.spec.rundir.rows()
    data = build_data(suite)
    ctx, _ = build_run(suite, discover()["oracle"], discover()["oracle"].Hparams(), CPU)
    batch = default_collate([data.target[i] for i in range(2)])
    _, flops = count_flops(lambda: ctx.supervised_step(batch))
    assert row["flops_per_step"] == flops
    assert row["step_time"] == pytest.approx(row["data_time"] + row["compute_time"])
    assert row["images_per_s"] == pytest.approx(2 / row["step_time"])  # 2 target images a step
    assert row["data_time"] > 0 and row["compute_time"] > 0 and row["peak_mem_gb"] > 0
    assert row["protocol"]["channels_last"] is False and row["protocol"]["compile"] is False
    assert first["flops_per_step"] == flops and first["images_per_s"] == pytest.approx(2 / first["step_time"])


def test_the_eval_loader_is_built_once_per_run(oracle_run):
    suite, _, outcome, built = oracle_run
    assert len(outcome.spec.rundir.rows()) == 2                       # two evaluations ...
    assert built == [suite.train.batch_size, suite.data.eval_batch_size]   # ... one target stream, one eval loader


def test_report_speed_shows_the_rows(oracle_run, capsys):
    _, results, outcome, _ = oracle_run
    rows = outcome.spec.rundir.rows()
    flops = rows[-1]["flops_per_step"]
    (table,) = speed_tables(load_records(results))
    assert "Oracle" in table and "GFLOP/step" in table and f"{flops / 1e9:.4g}" in table
    assert main(["report", "--results", str(results), "--speed"]) == 0
    assert "training speed" in capsys.readouterr().out


# ---- torch.compile ------------------------------------------------------------------------------------

def test_compile_switch_compiles_the_segmenter_and_the_discriminators_in_place(write_suite):
    suite = load_suite(write_suite(compile=True))
    cls = discover()["advent"]
    ctx, method = build_run(suite, cls, cls.Hparams(), CPU)
    compiled = [name for name, slot in ctx.slots.items() if slot.module._compiled_call_impl is not None]
    assert sorted(compiled) == ["d_aux", "d_main", "model"]
    assert all(not k.startswith("_orig_mod") for k in ctx.state_dict()["slots"]["model"]["module"])


@pytest.mark.slow
def test_a_compiled_module_computes_what_the_eager_one_does(write_suite):
    """Compilation (C++ codegen) of even a tiny module takes about a minute on 2 CPU cores: slow."""
    suite = load_suite(write_suite(compile=True))
    ctx, _ = build_run(suite, discover()["source_only"], discover()["source_only"].Hparams(), CPU)
    make = lambda: nn.Sequential(nn.Conv2d(19, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    eager, module = make(), make()
    module.load_state_dict(eager.state_dict())
    compiled = ctx.register_module("probe", module)
    assert compiled is module and module._compiled_call_impl is not None
    x = torch.randn(2, 19, 8, 8)
    assert torch.allclose(compiled(x), eager(x), atol=1e-5)


# ---- pytest-benchmark: one training step of each method on the tiny model --------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_train_step_speed(name, write_suite, benchmark):
    if benchmark.disabled:
        pytest.skip("a timing case: run with --benchmark-enable -k speed")
    suite = load_suite(write_suite())
    cls = discover()[name]
    inputs = synthetic_inputs(suite, CPU, eval_images=0)
    ctx, method = build_run(suite, cls, cls.Hparams(), CPU, source_histogram=inputs.source_histogram)
    target = {k: v for k, v in inputs.target[0].items() if k != "label" or cls.uses_target_labels}

    def step():
        ctx.start_step(0)
        logs = method.train_step(dict(inputs.source[0]) if cls.uses_source else None,
                                 dict(target) if cls.uses_target else None, 0)
        ctx.finish_step()
        return logs

    logs = benchmark(step)
    assert logs and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
