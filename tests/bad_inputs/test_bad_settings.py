"""Settings out of range: each is named by its key (and the suite file) before anything is built."""

import pytest


def set_key(path: str, value):
    def modify(suite):
        node = suite
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return modify


@pytest.mark.parametrize("key, value, named", [
    ("data.eval_batch_size", 0, "data.eval_batch_size' must be at least 1"),
    ("data.num_workers", -1, "data.num_workers' must be at least 0"),
    ("data.source.size", [0, 32], "data.source.size[0]' must be at least 8"),
    ("data.target.size", [64, 4], "data.target.size[1]' must be at least 8"),
    ("data.eval.limit", 0, "data.eval.limit' must be at least 1"),
    ("data.eval.limit", -1, "data.eval.limit' must be at least 1"),
    ("train.lr", -0.01, "train.lr' must be greater than 0"),
    ("train.lr", float("nan"), "train.lr' must be a finite number"),
    ("train.lr", float("inf"), "train.lr' must be a finite number"),
    ("model.aspp_dilations", [0], "model.aspp_dilations[0]' must be at least 1"),
    ("model.aspp_dilations", [], "model.aspp_dilations' must be non-empty"),
    ("seeds", [-1], "seeds[0]' must be between 0 and 2147483647"),
    ("seeds", [0, 99999999999], "seeds[1]' must be between 0 and 2147483647"),
    ("seeds", [], "seeds' must be non-empty"),
    ("train.device", "tpu", "train.device' must be auto, cpu, cuda or cuda:N"),
    ("train.device", "cuda:x", "train.device' must be auto, cpu, cuda or cuda:N"),
    ("train.device", "cuda:7", "train.device is 'cuda:7' but this machine has"),
    ("train.iterations", 0, "train.iterations' must be at least 1"),
    ("train.batch_size", 0, "train.batch_size' must be at least 1"),
    ("train.momentum", 1.5, "train.momentum' must be less than 1"),
    ("train.weight_decay", -1e-4, "train.weight_decay' must be at least 0"),
    ("train.poly_power", -0.9, "train.poly_power' must be at least 0"),
    ("train.head_lr_mult", 0, "train.head_lr_mult' must be greater than 0"),
    ("train.eval_every", 0, "train.eval_every' must be at least 1"),
    ("train.checkpoint_every", -2, "train.checkpoint_every' must be at least 1"),
    ("train.log_every", 0, "train.log_every' must be at least 1"),
    ("train.seg_aux_weight", -0.1, "train.seg_aux_weight' must be at least 0"),
    ("train.source_warmup", 4, "train.source_warmup (4) must be less than train.iterations (4)"),
    ("train.source_warmup", -1, "train.source_warmup' must be at least 0"),
    ("data.source.split", "", "data.source.split' must be non-empty"),
    ("model.bn_mode", "frozen_bn", "model.bn_mode' must be 'frozen' or 'frozen_affine' or 'train'"),
    ("synthetic.height", 0, "synthetic.height' must be at least 8"),
    ("synthetic.real.palette_shift", 1.5, "synthetic.real.palette_shift' must be between 0 and 1"),
    ("methods.minent.lambda_ent", "big", "methods.minent.lambda_ent' must be a number"),
    ("launcher.gpus_per_run", 0, "launcher.gpus_per_run' must be at least 1"),
    ("launcher.time", "soon", "launcher.time' must be a quoted SLURM time"),
    ("launcher.time", 86400, "YAML reads 24:00:00 as the number 86400"),   # what an unquoted 24:00:00 gives
    ("launcher.array_parallelism", -1, "launcher.array_parallelism' must be at least 0"),
])
def test_setting_out_of_range_names_its_key(bad, key, value, named):
    bad("run", bad.suite(set_key(key, value)), named=(named, "suite.yaml"))


@pytest.mark.parametrize("override, named", [
    ("train.lr=-1", "train.lr' must be greater than 0"),
    ("data.eval.size=[0, 0]", "data.eval.size[0]' must be at least 8"),
    ("train.batch_size=1e400", "train.batch_size' must be an integer"),
])
def test_a_bad_setting_given_with_set_is_named_too(bad, override, named):
    bad("run", bad.suite(), "--set", override, named=named)
