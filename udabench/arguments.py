"""The command line's argument parser: what users of mmsegmentation type answered with udabench's way, and the
docs that help texts cite given as paths that exist in this installation (``builtin.cite_docs``)."""

from __future__ import annotations

import argparse
import re

from .builtin import cite_docs

RESUME = ("runs resume by themselves: run the same command again (finished runs are skipped, unfinished ones "
          "continue from their last checkpoint)")
SET = "settings are changed with --set KEY=VALUE (repeatable), e.g. --set train.lr=1e-4"
DEVICE = "one run's device is --set train.device=cuda:N; several GPUs: --launcher local --gpus 0,1 (docs/launching.md)"
# The options of mmsegmentation's (mmengine's) tools/train.py that udabench does otherwise, and how it does it.
FOREIGN = {
    "--work-dir": "runs are written under --results DIR (default results/): RESULTS/<suite>/<method>/seed<S>-<id>/",
    "--resume": RESUME, "--resume-from": RESUME, "--auto-resume": RESUME,
    "--cfg-options": SET, "--options": SET,
    "--load-from": "a run starts from the weights file of --set model.pretrained=PATH (docs/datasets.md)",
    "--gpu-id": DEVICE, "--gpu-ids": DEVICE,
    "--amp": "mixed precision is --set train.amp=bf16 (or fp16)",
    "--deterministic": "deterministic algorithms are --set train.deterministic=true",
}


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors add a one-line hint for each ``FOREIGN`` option they name, and whose
    help cites the docs of this installation. Sub-commands are parsers of the same class."""

    def error(self, message: str):
        hints = [f"\n{self.prog.split()[0]}: hint: {option} is mmsegmentation's; {FOREIGN[option]}."
                 for option in dict.fromkeys(re.findall(r"--[\w-]+", message)) if option in FOREIGN]
        super().error(message + "".join(hints))

    def format_help(self) -> str:
        return cite_docs(super().format_help())
