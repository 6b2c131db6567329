"""The CUDA paths, on a GPU: the fp16 GradScaler, the pinned uint8 hand-over to the device, channels_last, NCCL
gradient averaging. ``pytest -m gpu`` runs them; without CUDA they are skipped, saying so (conftest.py)."""

import json
import subprocess
import sys

import pytest
import torch
from helpers import subprocess_env
from torch.utils.data import default_collate

from udabench.config import load_suite
from udabench.engine.build import build_run
from udabench.engine.handover import collate_for, to_device
from udabench.engine.rundata import build_data, make_loader
from udabench.registry import discover

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")
TWO_GPUS = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL between processes needs 2 GPUs, one a rank")


def one_step(suite):
    """The context of a Source-only run on CUDA, and the segmenter's parameters (on the CPU) before and after one
    step on the first two source images, from the same initial weights whatever the suite's precision or layout."""
    torch.manual_seed(0)
    cls = discover()["source_only"]
    ctx, _ = build_run(suite, cls, cls.Hparams(), CUDA)
    params = lambda: torch.cat([p.detach().float().reshape(-1).cpu() for p in ctx.model.parameters()])
    data = build_data(suite, needs_target=False)
    batch = to_device(default_collate([data.source[i] for i in range(2)]), CUDA)
    before = params()
    ctx.start_step(0)
    ctx.supervised_step(batch)
    ctx.finish_step()
    return ctx, before, params()


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_fp16_steps_through_a_grad_scaler_and_updates_as_fp32_does(write_suite):
    """The scaled loss's gradients are unscaled before the optimizer steps: one fp16 step moves the weights as one
    fp32 step does (up to fp16's precision), not 2^16 times as far."""
    ctx, start, fp16 = one_step(load_suite(write_suite(amp="fp16", device="cuda")))
    assert isinstance(ctx.scaler, torch.amp.GradScaler) and ctx.scaler.is_enabled()
    assert ctx.scaler.get_scale() == 2.0 ** 16            # the step was finite: taken, the scale kept
    _, start32, fp32 = one_step(load_suite(write_suite(device="cuda")))
    assert torch.equal(start, start32) and not torch.equal(fp32, start)
    assert relative_difference(fp16 - start, fp32 - start) < 0.05


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_cross_to_cuda_pinned_as_uint8_and_arrive_as_the_cpu_batch(write_suite, workers):
    data = build_data(load_suite(write_suite(device="cuda")), needs_target=False)
    loader = make_loader(data.source, 2, workers, CUDA, collate_fn=collate_for(CUDA, workers))
    crossing = next(iter(loader))
    assert crossing["image"].dtype == crossing["label"].dtype == torch.uint8
    assert crossing["image"].is_pinned() and crossing["label"].is_pinned()
    arrived, expected = to_device(crossing, CUDA), default_collate([data.source[i] for i in range(2)])
    for key, dtype in (("image", torch.float32), ("label", torch.int64)):
        assert arrived[key].device.type == "cuda" and arrived[key].dtype == dtype
        assert torch.equal(arrived[key].cpu(), expected[key]), key


def test_channels_last_on_cuda_keeps_its_layout_through_a_step_and_the_numbers_of_nchw(write_suite, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)   # the same precision in both layouts
    ctx, start, nhwc = one_step(load_suite(write_suite(lambda s: s["model"].update(channels_last=True),
                                                       device="cuda")))
    kernels = [p for p in ctx.model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    _, start_nchw, nchw = one_step(load_suite(write_suite(device="cuda")))
    assert torch.equal(start, start_nchw) and relative_difference(nhwc - start, nchw - start) < 1e-3


AVERAGE = """
import sys

import torch

from udabench.engine.distributed import average_gradients, init_distributed

info = init_distributed("cuda")
torch.cuda.set_device(info.local_rank)
params = [torch.nn.Parameter(torch.zeros(3, device="cuda")), torch.nn.Parameter(torch.zeros(2, 2, device="cuda"))]
for p in params:
    p.grad = torch.full_like(p, float(info.rank + 1))
average_gradients(params, info.world_size)
torch.save({"backend": torch.distributed.get_backend(), "grads": [p.grad.cpu() for p in params]},
           f"{sys.argv[1]}.{info.rank}")
torch.distributed.destroy_process_group()
"""


def torchrun(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *map(str, args)], env=subprocess_env(), capture_output=True, text=True, timeout=300)


@TWO_GPUS
def test_nccl_averages_the_gradients_of_two_gpu_processes(tmp_path):
    script = tmp_path / "average.py"
    script.write_text(AVERAGE)
    proc = torchrun(script, tmp_path / "grads")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(2):
        found = torch.load(tmp_path / f"grads.{rank}", weights_only=True)
        assert found["backend"] == "nccl"
        assert all(torch.equal(g, torch.full_like(g, 1.5)) for g in found["grads"])   # (1 + 2) / 2 on both ranks


@TWO_GPUS
def test_two_gpu_processes_train_a_run_over_nccl(write_suite, tmp_path):
    proc = torchrun("-m", "udabench", "run", write_suite(device="cuda"), "--methods", "source_only",
                    "--results", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(next(tmp_path.glob("tiny/source_only/*/metrics.jsonl")).read_text().splitlines()[-1])
    assert (row["protocol"]["world_size"], row["protocol"]["effective_batch_size"]) == (2, 4)
