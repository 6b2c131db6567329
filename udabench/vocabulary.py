"""The words that rows, plugins and reports share, each spelled once and checked where it enters.

- ``Role``: what a method is for in a table (a plugin's ``role``, checked at registration: ``registry.py``);
- ``RunKind``: what a run directory holds (a trained method, the hidden shared warm-up, an ensemble, a released
  checkpoint scored here);
- ``Kind``: where a row's numbers come from (measured here, a run still training, a released checkpoint scored
  here, a paper's table);
- the protocol fields that the official recipes set away from udabench's protocol (``PROTOCOL_DEFAULTS``: a row
  records them only away from these values; ``RECIPE_SETTINGS``: what each means, for the notes of a report).

``StrEnum`` members are strings: rows keep plain JSON strings and compare equal to them.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    LOWER_BOUND = "lower_bound"    # Source-only
    CONTROL = "control"            # e.g. target-BN: what a method gets without its loss
    UDA = "uda"
    UPPER_BOUND = "upper_bound"    # the oracle


class RunKind(StrEnum):
    """What a run directory holds (``RunDir.kind``, from its identity)."""
    TRAINED = "trained"            # a method trained here: a table row with a model of its own
    WARMUP = "warmup"              # the shared source warm-up: trained, continued by its users, never a table row
    ENSEMBLE = "ensemble"          # an evaluation of finished runs' models combined
    RELEASED = "released"          # a paper's released checkpoint, scored here


class Kind(StrEnum):
    MEASURED = "measured"          # trained here
    UNFINISHED = "unfinished"      # a run without its done marker, at its latest evaluation (report --include-running)
    RELEASED = "released"          # a paper's released checkpoint, scored here
    PAPER = "paper"                # a paper's published table (reports only)


# Protocol fields recorded only away from these values (udabench's protocol), so older rows and new ones read alike.
PROTOCOL_DEFAULTS = {"poly_horizon": None, "source_sampler": "uniform", "augment": {}, "stages": [],
                     "param_listing": "unique", "train_align_corners": False, "head_bias_init": "zeros",
                     "bn_eps": 1e-5, "freeze_stem_bn": False, "optimizer": "sgd", "warmup_iters": 0,
                     "warmup_ratio": 1e-6, "rcs_temperature": 0.01, "rcs_min_pixels": 3000,
                     "rcs_min_crop_ratio": None,   # recorded with rare-class sampling, where it acts
                     "validators": {"images": 16, "pixels": 100, "temperature": 0.05, "seed": 0}}

# What each of the official recipes' training settings means, for the notes under a report's tables.
RECIPE_SETTINGS = {
    "param_listing": "segmenter SGD over the DeepLab lineage's parameter listing (deeplab_official: a backbone tensor "
                     "takes 3-4 momentum steps per iteration, about 3x the nominal LR; docs/recipes.md)",
    "train_align_corners": "training losses on logits up-sampled with align_corners=True",
    "head_bias_init": "ASPP head biases at PyTorch's default init",
    "bn_eps": "BN epsilon",
    "freeze_stem_bn": "stem BN affine frozen",
    "optimizer": "segmenter optimizer (adamw: AdamW, betas 0.9/0.999, decoupled weight decay)",
    "warmup_iters": "linear LR warm-up over the first steps (mmcv's, on top of the poly schedule)",
    "warmup_ratio": "LR of the warm-up's first step, as a fraction of the poly LR",
    "rcs_temperature": "temperature of rare-class sampling",
    "rcs_min_pixels": "pixels of a class an image needs to be drawn for it by rare-class sampling",
    "rcs_min_crop_ratio": "share of those pixels its crop must hold, else re-drawn up to 10 times (0: no re-draw)",
}
