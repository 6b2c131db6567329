"""The protocol ladder (docs/ladder.md): factor grouping of every shipped recipe against its common suite, one factor
per rung, dedup of identical runs, selection rungs that train nothing, the telescoping identity of the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_run

from udabench.cli import main
from udabench.config import load_suite, read_suite_tree, stage_suite
from udabench.engine.identity import MISSING
from udabench.errors import ConfigError
from udabench.ladder import factors
from udabench.ladder.build import build_ladder, ladder_plan, settings
from udabench.ladder.manifest import manifest_path, write_manifest

SUITES = Path(__file__).resolve().parent.parent / "suites"
COMMON = {"gta5": "gta5_cityscapes.yaml", "synthia": "synthia_cityscapes.yaml", "crosscity": "cityscapes_crosscity.yaml"}


def recipe_pairs() -> list[tuple[Path, Path]]:
    """Each shipped recipe with the common suite of its benchmark, and the toy recipes with the embedded suite."""
    pairs = [(SUITES / "toy_sim2real.yaml", SUITES / name) for name in ("toy_two_stage.yaml", "toy_recipe.yaml")]
    for recipe in sorted((SUITES / "paper").glob("*/[!_]*.yaml")):
        benchmark = next(b for b in COMMON if recipe.stem.startswith(b))
        pairs.append((recipe, SUITES / COMMON[benchmark]))
    return pairs


def ladders():
    """(id, FROM, TO, method) for every method both suites of a pair run (the oracle aside)."""
    for source, target in recipe_pairs():   # read raw: the recipes' ${UDABENCH_DATA} is set by the fixture
        a, b = (read_suite_tree(f).get("methods", {}) for f in (source, target))
        for method in a:
            if method in b:
                yield pytest.param(source, target, method, id=f"{source.stem}-{target.stem}-{method}")


@pytest.fixture(autouse=True)
def data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("UDABENCH_DATA", str(tmp_path / "data"))   # recipes name their files under it; none is read


def differing(a: dict, b: dict) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k, MISSING) != b.get(k, MISSING)}


def run_view(suite, method: str) -> dict:
    """What a run of ``method`` computes with, as dotted keys: its stage merged over the suite, and where it starts
    (``stages.<method>.start_from``...)."""
    links = {k: v for k, v in settings(suite, [method]).items() if factors.setting_of(k) in
             ("start_from", "start_selection", "teacher") and k.startswith(f"stages.{method}.")}
    return {k: v for k, v in settings(stage_suite(suite, method), [method]).items() if not factors.ignored(k)} | links


@pytest.mark.parametrize("source,target,method", list(ladders()))
def test_every_differing_setting_lands_in_one_factor_and_each_rung_moves_one(source, target, method):
    a, b = load_suite(source), load_suite(target)
    ladder = build_ladder(a, b, method)
    flat = [settings(s, ladder.methods) for s in (a, b)]
    moved = {k for k in differing(*flat) if not factors.ignored(k)}
    grouped = [k for keys in ladder.factors.values() for k in keys]
    assert sorted(grouped) == sorted(moved)                   # complete, and each key in one factor only
    assert all(factors.factor_of(k) == f for f, keys in ladder.factors.items() for k in keys)
    assert [r.step for r in ladder.rungs] == list(range(len(ladder.order) + 1))
    assert settings(ladder.rungs[-1].suite, ladder.methods).items() >= \
        {k: v for k, v in flat[1].items() if not factors.ignored(k)}.items()   # the last rung is TO
    for before, rung in zip(ladder.rungs, ladder.rungs[1:]):
        keys = {k for k in differing(*(settings(r.suite, ladder.methods) for r in (before, rung)))
                if not factors.ignored(k)}
        assert keys and {factors.factor_of(k) for k in keys} == {rung.factor}
        for m in ladder.methods:   # what each run computes with changes only in the rung's factor
            view = differing(run_view(before.suite, m), run_view(rung.suite, m))
            assert {factors.factor_of(k) for k in view} <= {rung.factor}, m


def test_unknown_settings_form_a_factor_named_by_their_keys(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(f"extends: {SUITES / 'toy_sim2real.yaml'}\nname: other\ntrain: {{amp: bf16, lr: 0.02}}\n")
    ladder = build_ladder(load_suite(SUITES / "toy_sim2real.yaml"), load_suite(other), "minent")
    assert ladder.factors == {"optimizer": ["train.lr"], "other": ["train.amp"]}
    assert factors.title("other", ladder.factors["other"]) == "other settings: train.amp"


def test_order_is_checked_and_changes_the_chain():
    a, b = load_suite(SUITES / "toy_sim2real.yaml"), load_suite(SUITES / "toy_recipe.yaml")
    assert build_ladder(a, b, "minent").order == ["optimizer", "bn", "selection", "schedule"]
    ladder = build_ladder(a, b, "minent", ["schedule", "bn", "optimizer", "selection"])
    assert [r.factor for r in ladder.rungs] == ["", "schedule", "bn", "optimizer", "selection"]
    with pytest.raises(ConfigError, match="augmentation is not a factor in which the two suites differ"):
        build_ladder(a, b, "minent", ["schedule", "bn", "optimizer", "augmentation"])
    with pytest.raises(ConfigError, match="missing: selection"):
        build_ladder(a, b, "minent", ["schedule", "bn", "optimizer"])
    with pytest.raises(ConfigError, match="this ladder has rungs 0 to 4"):
        ladder_plan(ladder, "results", rungs=[5])
    with pytest.raises(ConfigError, match="has no method 'fada'"):
        build_ladder(a, load_suite(SUITES / "paper/advent/gta5_r101.yaml"), "fada")


def test_identical_runs_dedup_and_selection_rungs_train_nothing(tmp_path):
    a, b = load_suite(SUITES / "toy_sim2real.yaml"), load_suite(SUITES / "toy_recipe.yaml")
    ladder = build_ladder(a, b, "minent", both=True)
    plan = ladder_plan(ladder, tmp_path, seeds=[0, 1])
    ids = [s.rundir.id for s in plan.runs]
    assert len(ids) == len(set(ids))
    forward, reverse = ladder.rungs[:5], ladder.rungs[5:]
    assert forward[0].runs == reverse[0].runs and forward[-1].runs == reverse[-1].runs   # FROM and TO: once
    for chain in (forward, reverse):
        for before, rung in zip(chain, chain[1:]):
            if rung.factor == "selection":   # the same runs, read with another selection: nothing new to train
                assert rung.runs == before.runs
                assert all("oracle-target-val" in s.keep for s in plan.runs if s.rundir.id in rung.runs
                           and not s.hidden)
            else:
                assert not set(rung.runs) & set(before.runs)
    # per seed: forward 3 rungs of 3 runs (a warm-up each) and TO's 2; reverse + schedule and + bn: 2 each
    assert len(plan.runs) == 2 * (3 * 3 + 2 + 2 + 2)
    assert {tuple(plan.narrow[s.rundir.id]) for s in plan.requested} <= {("--rungs", str(r.index))
                                                                         for r in ladder.rungs}


def test_dry_run_lists_rungs_runs_and_cost(capsys, tmp_path):
    code = main(["ladder", "suites/paper/advent/gta5_r101.yaml", "suites/gta5_cityscapes.yaml", "--method", "advent",
                 "--dry-run", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "factors in order: optimizer, upsampling, init, bn, selection, schedule, evaluation" in out
    assert "rung 5 (forward 5, + selection, selection last): 6 runs, 0 new" in out
    assert "42 runs in all (14 per seed × 3 seeds" in out and "rungs that train nothing: 5" in out
    assert not (tmp_path / "ladder_advent_gta5_r101_to_gta5_cityscapes").exists()   # a dry run writes nothing


def test_launcher_children_train_one_rung_each(capsys, tmp_path):
    code = main(["ladder", "suites/toy_sim2real.yaml", "suites/toy_recipe.yaml", "--method", "minent",
                 "--launcher", "print", "--results", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 8   # 4 trained rungs × (Source-only, MinEnt); the warm-ups come with them
    assert all("ladder suites/toy_sim2real.yaml suites/toy_recipe.yaml --method minent" in line and "--rungs" in line
               and "--methods" in line and "--seeds 0" in line for line in lines)
    manifest = json.loads(manifest_path(tmp_path, "ladder_toy_sim2real_to_toy_recipe", "minent").read_text())
    assert manifest["order"] == ["optimizer", "bn", "selection", "schedule"] and len(manifest["rungs"]) == 5


def craft_ladder(results: Path, gains: list[list[float]], base: float = 30.0) -> dict:
    """A ladder of ``len(gains)`` rungs whose runs are crafted: per rung and seed, Source-only at ``base + rung``
    and MinEnt that much higher."""
    rungs = []
    for step, per_seed in enumerate(gains):
        runs = {"source_only": {}, "minent": {}}
        for seed, gain in enumerate(per_seed):
            settings_ = {"train.lr": 0.001 * (step + 1)}
            for method, label, value in (("source_only", "Source-only", base + step), ("minent", "MinEnt",
                                                                                       base + step + gain)):
                path = write_run(results, method, label, seed, [(10, [value, value])], suite="lad", settings=settings_)
                runs[method][str(seed)] = path.name
        rungs.append({"index": step, "chain": "forward", "step": step, "factor": f"f{step}" if step else "",
                      "selection": "last", "runs": runs})
    order = [r["factor"] for r in rungs[1:]]
    manifest = {"ladder": "lad", "method": "minent", "from": "a.yaml", "to": "b.yaml", "from_name": "a",
                "to_name": "b", "order": order, "seeds": [0, 1],
                "factors": {f: {"title": f"factor {f}", "settings": {f"x.{f}": [1, 2]}} for f in order},
                "rungs": rungs}
    manifest_path(results, "lad", "minent").write_text(json.dumps(manifest))
    return manifest


def test_report_telescopes_exactly(tmp_path):
    from udabench.analysis.ladder import chain_table, chain_values, ladder_report
    from udabench.analysis.records import load_records

    gains = [[1.0, 2.0], [4.0, 3.0], [2.5, 2.0], [6.0, 7.5]]
    manifest = craft_ladder(tmp_path, gains)
    values = chain_values(manifest, load_records(tmp_path, "lad"), "forward")
    table = chain_table(manifest, values)
    assert table["gain"].tolist() == pytest.approx([1.5, 3.5, 2.25, 6.75])
    assert table["Δ gain"].iloc[1:].sum() == pytest.approx(table["gain"].iloc[-1] - table["gain"].iloc[0], abs=1e-12)
    assert table["Δ gain std"].iloc[1] == pytest.approx(2 ** 0.5)   # per-seed changes 3 and 1
    assert table["MinEnt mIoU"].iloc[0] == pytest.approx(31.5) and table["seeds"].tolist() == [2, 2, 2, 2]
    text, written = ladder_report(tmp_path, "lad", "text", figures=True)
    assert "Telescoping: Σ Δ gain = +5.25 = gain at TO (6.75) − gain at FROM (1.50)." in text
    assert "order: f1 → f2 → f3" in text and "f1: x.f1: 1 → 2" in text
    assert sorted(p.name for p in written) == ["ladder-minent-forward.pdf", "ladder-minent-forward.png"]
    for fmt in ("md", "csv", "latex", "html"):
        assert "f3" in ladder_report(tmp_path, "lad", fmt)[0]


def test_report_ladder_command_and_incomplete_ladders(capsys, tmp_path):
    craft_ladder(tmp_path, [[1.0, 2.0], [4.0, 3.0]])
    for run in (tmp_path / "lad" / "minent").iterdir():   # drop one rung's MinEnt runs: the rung has no gain
        if "lr: 0.002" in (run / "config.yaml").read_text():
            (run / "done").unlink()
    assert main(["report", "--ladder", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Incomplete: rungs 1 lack finished runs" in out and "Telescoping" not in out
    assert main(["report", "--ladder", "nothing", "--results", str(tmp_path)]) == 2
    assert "no manifest of ladder 'nothing'" in capsys.readouterr().err


def test_manifest_keeps_earlier_seeds(tmp_path):
    ladder = build_ladder(load_suite(SUITES / "toy_sim2real.yaml"), load_suite(SUITES / "toy_recipe.yaml"), "minent")
    write_manifest(ladder, tmp_path, [0])
    path = write_manifest(ladder, tmp_path, [2])
    data = json.loads(path.read_text())
    assert data["seeds"] == [0, 2] and set(data["rungs"][0]["runs"]["minent"]) == {"0", "2"}


def test_report_ladder_starts_without_torch(tmp_path):
    craft_ladder(tmp_path, [[1.0, 2.0], [4.0, 3.0]])
    probe = ("import sys\nfrom udabench.cli import main\nmain(['report', '--ladder', '--results', %r])\n"
             "print('torch' in sys.modules)" % str(tmp_path))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stdout + done.stderr


def test_status_lists_every_run_of_the_ladder(capsys, tmp_path):
    code = main(["ladder", "suites/toy_sim2real.yaml", "suites/toy_recipe.yaml", "--method", "minent", "--status",
                 "--seeds", "0,1", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "16 runs: 16 pending" in out   # 8 per seed: warm-ups are not listed, as in `status`
    names = [line.split("  seed")[0].strip() for line in out.splitlines() if "  seed " in line]
    assert names[0] == "rung 0 (FROM) source_only" and "rung 1 (optimizer) minent" in names
    assert not any(n.startswith("rung 3 ") for n in names)   # the selection rung trains nothing of its own
    assert sum("also rung 3" in line for line in out.splitlines()) == 4   # it shares rung 2's runs (2 × 2 seeds)


@pytest.mark.slow
def test_a_quick_ladder_in_both_orders_trains_and_reports(capsys, tmp_path):
    """End to end on the embedded suite (`--quick`): every run trained once, the report's sums telescope."""
    argv = ["suites/toy_sim2real.yaml", "suites/toy_recipe.yaml", "--method", "minent", "--quick", "--both-orders",
            "--results", str(tmp_path)]
    assert main(["ladder", *argv]) == 0
    assert "12 of 12 runs finished" in capsys.readouterr().out   # warm-ups aside: 8 forward, 4 more in reverse
    assert main(["report", "--ladder", "--results", str(tmp_path), "--figures"]) == 0
    out = capsys.readouterr().out
    assert out.count("Telescoping: Σ Δ gain") == 2 and "in both orders" in out


def test_the_waterfall_floats_each_factor_from_the_running_total_and_leaves_room_for_its_value():
    from udabench.analysis.figures import ladder_waterfall

    ax = ladder_waterfall([("FROM a", 10.0), ("optimizer", -4.0), ("bn", 1.0), ("TO b", 7.0)], "t").axes[0]
    assert [(b.get_y(), b.get_height()) for b in ax.patches] == [(0, 10), (10, -4), (6, 1), (0, 7)]
    low, high = ax.get_ylim()
    assert low == 0 and high == pytest.approx(11)   # 10 % of the span above the highest bar end
