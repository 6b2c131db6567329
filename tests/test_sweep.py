"""Sweeps (issue 25): `--sweep` and a suite's `sweep:` plan the full grid through the one plan, identical points and
runs no swept setting changes dedup by run id, mistakes are named, launchers' children get one point each, and a
swept suite resumes and pools its points in `report --validators`."""

import pytest
import yaml

from udabench.builtin import find_suite
from udabench.cli import build_parser, main, plan_of
from udabench.errors import ConfigError
from udabench.sweep import parse_sweep

TOY = str(find_suite("toy_sim2real"))


def plan(tmp_path, *argv, suite=TOY):
    args = build_parser().parse_args(["run", suite, "--dry-run", "--results", str(tmp_path / "r"), *argv])
    return plan_of(args, args.suite, launched=False)


def titles(p, hidden=False):
    return [s.title() for s in p.runs if hidden or not s.hidden]


def test_values_are_read_as_yaml_1_2_and_split_outside_brackets():
    assert [v for _, v in parse_sweep("train.lr=1e-4,2.5e-4, 0.01").values] == [1e-4, 2.5e-4, 0.01]
    axis = parse_sweep("data.source.size=[96,48],[192,96]")
    assert [t for t, _ in axis.values] == ["[96,48]", "[192,96]"] and axis.values[1][1] == [192, 96]


def test_a_sweep_plans_the_full_grid_and_multiplies_only_what_its_axes_change(tmp_path):
    p = plan(tmp_path, "--methods", "source_only,advent", "--sweep", "methods.advent.lambda_adv=1e-4,1e-3,1e-2",
             "--sweep", "train.lr=0.01,0.02")
    advent = [s for s in p.requested if s.method.name == "advent"]
    assert len(advent) == 6 and len({s.rundir.id for s in advent}) == 6
    assert [s.title() for s in advent][:2] == ["advent seed 0 (lambda_adv=1e-4, lr=0.01)",
                                               "advent seed 0 (lambda_adv=1e-4, lr=0.02)"]
    # Source-only and the shared warm-up do not read λ: one run per learning rate, labelled by it alone
    assert [s.title() for s in p.requested if s.method.name == "source_only"] == \
        ["source_only seed 0 (lr=0.01)", "source_only seed 0 (lr=0.02)"]
    assert sum(s.hidden for s in p.runs) == 2 and len(p.runs) == 10
    assert {s.point for s in advent} == {(("methods.advent.lambda_adv", lam), ("train.lr", lr))
                                         for lam in ("1e-4", "1e-3", "1e-2") for lr in ("0.01", "0.02")}


def test_identical_points_dedup_and_a_point_equal_to_the_suite_is_its_run(tmp_path):
    base = {s.title(): s.rundir.id for s in plan(tmp_path).runs}
    p = plan(tmp_path, "--sweep", "methods.advent.lambda_adv=0.1,1e-1,0.5")   # the toy suite's λ is 0.1
    advent = [s for s in p.requested if s.method.name == "advent"]
    assert [s.title() for s in advent] == ["advent seed 0 (lambda_adv=0.1)", "advent seed 0 (lambda_adv=0.5)"]
    assert advent[0].rundir.id == base["advent seed 0"]
    assert {s.title(): s.rundir.id for s in p.runs if s.method.name != "advent"} == \
        {t: i for t, i in base.items() if not t.startswith("advent")}
    same = plan(tmp_path, "--sweep", "train.lr=0.01")   # a one-value sweep at the suite's value: the suite itself
    assert [s.rundir.id for s in same.runs] == list(base.values())


def test_the_suite_sweep_block_and_the_command_line(tmp_path):
    path = tmp_path / "swept.yaml"
    path.write_text(yaml.safe_dump({"extends": "toy_sim2real", "name": "swept",
                                    "sweep": {"methods.advent.lambda_adv": [0.2, 0.3]}}))
    p = plan(tmp_path, "--methods", "advent", suite=str(path))
    assert titles(p) == ["advent seed 0 (lambda_adv=0.2)", "advent seed 0 (lambda_adv=0.3)"]
    # the command line wins: --sweep replaces the file's axis, --set pins it
    assert titles(plan(tmp_path, "--methods", "advent", "--sweep", "methods.advent.lambda_adv=0.4",
                       suite=str(path))) == ["advent seed 0"]
    pinned = plan(tmp_path, "--methods", "advent", "--set", "methods.advent.lambda_adv=0.3", suite=str(path))
    assert [s.rundir.id for s in pinned.runs if not s.hidden] == [p.requested[1].rundir.id]
    with pytest.raises(ConfigError, match="both to --set and to --sweep"):
        plan(tmp_path, "--set", "train.lr=0.1", "--sweep", "train.lr=0.1,0.2")


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "train.lrr=1e-3,1e-2"], r"--sweep train.lrr=1e-3: unknown key 'train.lrr'. Did you mean 'lr'"),
    (["--sweep", "train.lr=-1"], r"--sweep train.lr=-1: key 'train.lr' must be greater than 0"),
    (["--sweep", "methods.advent.lambda_adb=1,2"], r"--sweep methods.advent.lambda_adb=1: unknown key 'lambda_adb'. "
                                                    r"Did you mean 'lambda_adv'"),
    (["--sweep", "methods.advent.d_width=wide"], r"--sweep methods.advent.d_width=wide: key 'd_width' must be an "),
    (["--sweep", "train.lr="], r"must look like KEY=V1,V2"),
    (["--sweep", "train.lr=1,,2"], r"empty value"),
    (["--sweep", "seeds=1,2"], r"'seeds' cannot be swept.*--seeds"),
    (["--methods", "minent", "--sweep", "methods.advent.lambda_adv=1,2"], r"which this command does not run"),
    (["--sweep", "train.lr=1", "--sweep", "train.lr=2"], r"given twice"),
])
def test_sweep_mistakes_name_the_key_and_the_fix(tmp_path, argv, message):
    with pytest.raises(ConfigError, match=message):
        plan(tmp_path, *argv)


def test_a_bad_sweep_block_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"extends": "toy_sim2real", "sweep": {"train.itrations": [1, 2]}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: sweep train.itrations=1: unknown key.*Did you mean 'iterations'"):
        plan(tmp_path, suite=str(path))


def test_status_and_launcher_children_see_the_points(tmp_path, capsys):
    sweep = ["--methods", "advent", "--sweep", "methods.advent.lambda_adv=1e-4,1e-2", "--results", str(tmp_path)]
    assert main(["status", TOY, *sweep]) == 0
    out = capsys.readouterr().out
    assert "advent (lambda_adv=1e-4)" in out and "advent (lambda_adv=1e-2)" in out
    assert "AdvEnt+MinEnt" not in out                  # minent is not planned: the ensemble is not this command's
    assert main(["status", TOY, *sweep, "--methods", "advent,minent"]) == 0
    assert "AdvEnt+MinEnt (lambda_adv=1e-4)" in capsys.readouterr().out   # the suite's ensemble, one per point
    assert main(["run", TOY, "--launcher", "print", *sweep]) == 0
    children = capsys.readouterr().out.strip().splitlines()
    assert len(children) == 2 and all("--sweep" not in c for c in children)
    assert "--set methods.advent.lambda_adv=1e-4" in children[0] and "lambda_adv=1e-2" in children[1]


@pytest.mark.slow
def test_a_swept_suite_resumes_and_report_validators_pools_its_points(write_suite, tmp_path, capsys):
    path = str(write_suite(lambda s: s.update(methods={"advent": {}}, oracle=False)))
    argv = ["run", path, "--results", str(tmp_path / "r"), "--check-data", "none",
            "--sweep", "methods.advent.lambda_adv=1e-3,1e-2"]
    assert main(argv) == 0
    assert "2 of 2 runs finished" in capsys.readouterr().out
    assert main(argv) == 0   # done runs are skipped, not trained again
    out = capsys.readouterr()
    assert "2 of 2 runs finished" in out.out and "step" not in out.err
    from udabench.analysis.records import load_records
    from udabench.analysis.validators import candidates

    records = load_records(tmp_path / "r")
    assert sorted(records["label"].unique()) == ["AdvEnt (lambda_adv=0.001)", "AdvEnt (lambda_adv=0.01)"]
    assert len(candidates(records)) == 4   # 2 evaluations × 2 points, one method: one candidate pool
    assert main(["report", "--results", str(tmp_path / "r"), "--validators"]) == 0
    assert "every evaluation (from the adaptation's start) × configuration of a method" in capsys.readouterr().out
