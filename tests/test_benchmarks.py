"""The scripts in benchmarks/: the bare loop of overhead.py computes what udabench computes; gpu.sh runs."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from udabench.bench import Setting
from udabench.bench.inputs import synthetic_inputs
from udabench.config import load_suite
from udabench.engine.build import build_run
from udabench.registry import discover

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_bare_minent_loop_matches_udabench_step_for_step(write_suite):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from overhead import BareMinEnt
    finally:
        sys.path.remove(str(BENCHMARKS))
    suite = Setting().apply(load_suite(write_suite()))
    cls = discover()["minent"]
    hp = cls.Hparams(lambda_ent=0.5, lambda_ent_aux=0.1)   # large enough to move the weights
    inputs = synthetic_inputs(suite, torch.device("cpu"), eval_images=0)
    ctx, method = build_run(suite, cls, hp, torch.device("cpu"))
    bare = BareMinEnt(suite, hp, torch.device("cpu"), ctx.model.state_dict())
    before = [p.detach().clone() for p in bare.model.parameters()]
    for i in range(2):
        target = {k: v for k, v in inputs.target[i].items() if k != "label"}
        ctx.start_step(i)
        method.train_step(dict(inputs.source[i]), dict(target), i)
        ctx.finish_step()
        bare.step(inputs.source[i], target, i)
    assert any(not torch.equal(a, b) for a, b in zip(before, bare.model.parameters()))
    for a, b in zip(ctx.model.parameters(), bare.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_gpu_script_smoke_run_writes_its_results(tmp_path):
    """benchmarks/gpu.sh --smoke: every step on the CPU at tiny sizes (a few minutes on 2 shared cores)."""
    out = tmp_path / "RESULTS.md"
    out.write_text("# kept above\n<!-- gpu.sh: begin -->\nold\n<!-- gpu.sh: end -->\n# kept below\n")
    proc = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--smoke", "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# kept above\n") and text.rstrip().endswith("# kept below") and "\nold\n" not in text
    for expected in ("| minent | fp32 |", "| advent | bf16+channels_last |", "| bf16 | 2 |", "Harness overhead",
                     "Parity: max parameter difference 0 ", "Data wait per step", "4-compile: skipped in --smoke"):
        assert expected in text, expected
    assert "not measured" not in proc.stderr
