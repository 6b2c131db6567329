"""The paper recipes (suites/paper/): each equals its official-values tables in docs/recipes.md, passes
`udabench data check` on fixtures in the official layouts and runs with --quick."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from helpers import write_cityscapes, write_gta5, write_nthu, write_synthia
from reference_nets import NARROW, OfficialDeepLab, deeplab_init_file

from udabench.cli import main
from udabench.config import load_suite, read_suite_tree, stage_suite
from udabench.engine.rows import protocol
from udabench.registry import discover
from udabench.schema import from_dict, to_dict

ROOT = Path(__file__).parent.parent
PAPER = ROOT / "suites" / "paper"
RECIPES = sorted(str(p.relative_to(PAPER)) for p in PAPER.rglob("*.yaml") if not p.name.startswith("_"))
DOC = ROOT / "docs" / "recipes.md"
INIT_FILES = ("DeepLab_resnet_pretrained_imagenet.pth", "DeepLab_resnet_pretrained_init-f81d91e8.pth")


def unregistered(recipe: str) -> list[str]:
    """The methods of a recipe that no plugin registers here (suites/paper/mic/: advseg, advseg_mic, minent_mic,
    dacs_mic, daformer, daformer_mic, whose plugins come from the MIC branch): the tests that train or resolve their
    hyper-parameters skip them until they are installed, and run without a change once they are."""
    known = discover()
    return [m for m in read_suite_tree(PAPER / recipe).get("methods", {}) if m not in known]


def official_tables() -> list[tuple[list[str], list[tuple[str, str]]]]:
    """(recipe files, [(key, value)]) of every table under "## The recipes" in docs/recipes.md: the files are the
    backticked ``*.yaml`` names of the table's heading, key and value the first two (backticked) cells of a row."""
    text = DOC.read_text().split("## The recipes", 1)[1]
    tables = []
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        heading, body = section.split("\n", 1)
        files = re.findall(r"`([\w/]+\.yaml)`", heading)
        rows = re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", body, flags=re.M)
        if files and rows:
            tables.append((files, rows))
    return tables


def resolve(suite, key: str):
    """The value a docs/recipes.md key names (the format is described there)."""
    method, _, path = key.rpartition(": ")
    view = stage_suite(suite, method) if method else suite
    if path.startswith("protocol."):
        return protocol(view, 0)[path.removeprefix("protocol.")]
    if path.startswith("hparams."):
        cls = discover()[method]
        return to_dict(from_dict(cls.Hparams, suite.methods[method], f"methods.{method}", ""))[path[8:]]
    if path in ("start_from", "start_selection", "teacher"):
        return getattr(suite.stages[method], path)
    node = to_dict(view)
    for part in path.split("."):
        node = node[part]
    return node


def same(a, b) -> bool:
    """Equal as YAML values: tuples as lists, floats to 1e-12 relative."""
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and a == pytest.approx(b, rel=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_every_recipe_has_official_values_tables_and_every_table_names_recipes():
    named = {file for files, _ in official_tables() for file in files}
    assert RECIPES and set(RECIPES) <= named, f"recipes without a table in docs/recipes.md: {set(RECIPES) - named}"
    assert named <= set(RECIPES), f"tables naming no recipe file: {named - set(RECIPES)}"


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_equals_its_official_values_tables(recipe, monkeypatch):
    monkeypatch.setenv("UDABENCH_DATA", "/data")
    suite = load_suite(PAPER / recipe)
    checked, wrong, missing = 0, [], set(unregistered(recipe))
    for files, rows in official_tables():
        if recipe not in files:
            continue
        for key, value in rows:
            method = key.rpartition(": ")[0]
            if method and method not in suite.methods:
                continue      # a family table's row of a method this recipe does not run
            if method in missing and ": hparams." in key:
                continue      # its plugin is not installed yet (unregistered)
            expected = yaml.safe_load(value.replace("${UDABENCH_DATA}", "/data"))
            actual = resolve(suite, key)
            checked += 1
            if not same(actual, expected):
                wrong.append(f"{key}: docs/recipes.md says {expected!r}, the recipe resolves to {actual!r}")
    assert checked >= 15 and not wrong, "\n".join(wrong)


def test_recipes_share_their_published_rows_and_differ_from_the_common_protocol(monkeypatch):
    monkeypatch.setenv("UDABENCH_DATA", "/data")
    common = load_suite(ROOT / "suites" / "gta5_cityscapes.yaml")
    for recipe in ("advent/gta5_r101.yaml", "maxsquare/gta5.yaml", "fada/gta5.yaml", "mic/gta5_dlv2.yaml"):
        suite = load_suite(PAPER / recipe)
        assert suite.references == common.references          # declared once, in suites/references/
        assert suite.name != common.name and suite.method_names() != common.method_names()
    assert common.model.bn_mode == "frozen" and common.train.poly_horizon is None
    # one schedule for every method: the common suite's stages only crop DACS's source images (ClassMix needs one size)
    assert set(common.stages) == {"dacs", "dacs_mic"}
    assert all(not s.start_from and not s.teacher and not s.train and s.augment == {"source": {"crop": [1024, 512]}}
               for s in common.stages.values())


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory) -> Path:
    """$UDABENCH_DATA with every dataset of the recipes in its official layout (GTA5 with its train split list),
    and the init files: DeepLab files of the narrow stand-in trunk, torchvision's ResNet-101 names for a resnet10t
    stand-in, the caffe VGG-16 layout (random weights: names and shapes are what the loaders check)."""
    import timm
    from torchvision.models.vgg import cfgs, make_layers

    root = tmp_path_factory.mktemp("UDABENCH_DATA")
    write_gta5(root / "GTA5", 4, h=36, w=64)
    (root / "GTA5" / "splits").mkdir()
    (root / "GTA5" / "splits" / "train.txt").write_text("00001\n00002\n00003\n")
    (root / "GTA5" / "splits" / "val.txt").write_text("00004\n")
    write_synthia(root / "SYNTHIA", [0, 1, 2, 3, 9000], h=38, w=64)
    write_cityscapes(root / "Cityscapes", {"train": 4, "val": 2}, h=32, w=64)
    write_nthu(root / "NTHU", "Rome", n_train=4, n_test=2, h=32, w=64)
    weights = root / "weights"
    weights.mkdir()
    for name in INIT_FILES:
        deeplab_init_file(OfficialDeepLab(**NARROW), weights / name)
    torch.save(timm.create_model("resnet10t").state_dict(), weights / "resnet101-5d3b4d8f.pth")
    torch.save(timm.create_model("resnet10t").state_dict(), weights / "resnet101_v1c-e67eebb6.pth")
    vgg = {f"features.{k}": v for k, v in torch.nn.Sequential(*make_layers(cfgs["D"])).state_dict().items()}
    torch.save({**vgg, "classifier.1.weight": torch.zeros(1)}, weights / "vgg16-00b39a1b.pth")
    return root


@pytest.fixture
def stand_ins(monkeypatch, recipe_data, tmp_path):
    """The recipes' networks as fast stand-ins with the same parameter names: deeplab_resnet101 narrow, the FADA
    ResNet-101 and MIC's ResNetV1c-101 as resnet10t (``--set``, returned); the data above; a fresh cache."""
    from udabench.models import OWN_BACKBONES, DeepLabResNet

    monkeypatch.setitem(OWN_BACKBONES, "deeplab_resnet101", partial(DeepLabResNet, **NARROW))
    monkeypatch.setenv("UDABENCH_DATA", str(recipe_data))
    monkeypatch.setenv("UDABENCH_CACHE", str(tmp_path / "cache"))
    return lambda recipe: ["--set", "model.backbone=resnet10t"] if recipe.startswith(("fada/", "mic/")) else []


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_passes_data_check_on_fixtures(recipe, stand_ins, capsys):
    if missing := unregistered(recipe):    # `data check` plans the suite's runs, and planning resolves each method
        pytest.skip(f"{recipe}: methods {', '.join(missing)} are not registered (their plugins are not installed)")
    assert main(["data", "check", str(PAPER / recipe)]) == 0
    assert "all datasets usable" in capsys.readouterr().out


def quick_run(recipe, stand_ins, tmp_path, capsys) -> Path:
    if missing := unregistered(recipe):
        pytest.skip(f"{recipe}: methods {', '.join(missing)} are not registered (their plugins are not installed)")
    results = tmp_path / "res"
    code = main(["run", str(PAPER / recipe), "--quick", "--seeds", "0", "--results", str(results),
                 *stand_ins(recipe)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return results / load_suite(PAPER / recipe, quick=True).name


@pytest.mark.slow
def test_the_maxsquare_recipe_runs_quick_source_stage_once_then_both_methods(stand_ins, tmp_path, capsys):
    suite_dir = quick_run("maxsquare/gta5.yaml", stand_ins, tmp_path, capsys)
    runs = {p.parent.parent.name: p.parent for p in suite_dir.glob("*/*/done")}
    assert sorted(runs) == ["maxsquare", "maxsquare_iw", "source_only"]
    source = runs["source_only"].name
    for method in ("maxsquare", "maxsquare_iw"):
        row = json.loads((runs[method] / "metrics.jsonl").read_text().splitlines()[-1])
        assert row["protocol"]["stages"][0]["run_id"] == source and row["protocol"]["eval_flip"] is True
        assert row["protocol"]["augment"]["target"] == {"flip": 0.5, "blur": 0.5}
        assert row["method_label"].startswith("Source-only → ")


def test_the_fada_recipe_runs_quick_through_its_three_stages(stand_ins, tmp_path, capsys):
    suite_dir = quick_run("fada/gta5.yaml", stand_ins, tmp_path, capsys)
    rows = {p.parent.parent.name: json.loads(p.read_text().splitlines()[-1])
            for p in suite_dir.glob("*/*/metrics.jsonl")}
    assert sorted(rows) == ["fada", "self_distill", "source_only"]
    chain = rows["self_distill"]["protocol"]["stages"]
    assert [(s["method"], s["start"]) for s in chain] == [("source_only", "init"), ("fada", "restart"),
                                                          ("self_distill", "teacher")]
    assert rows["fada"]["protocol"]["source_sampler"] == "class_balanced"
    assert rows["self_distill"]["protocol"]["bn_mode"] == "train"
    assert rows["self_distill"]["protocol"]["target_size"] == "native" != rows["fada"]["protocol"]["target_size"]
    assert rows["self_distill"]["protocol"]["augment"]["target"]["scale"] == [0.5, 1.5]
    for row in rows.values():   # the official training settings, recorded where they differ from udabench's
        assert row["protocol"]["train_align_corners"] is True and row["protocol"]["head_bias_init"] == "pytorch"
        assert "param_listing" not in row["protocol"]        # FADA lists each tensor once, as udabench does
    assert rows["fada"]["protocol"]["bn_eps"] == 0 and "bn_eps" not in rows["self_distill"]["protocol"]
    assert rows["fada"]["hparams"]["loss_resolution"] == "input"


@pytest.mark.slow
def test_the_advent_recipe_runs_quick_with_its_ensemble(stand_ins, tmp_path, capsys):
    suite_dir = quick_run("advent/gta5_r101.yaml", stand_ins, tmp_path, capsys)
    assert sorted(p.parent.parent.name for p in suite_dir.glob("*/*/done")) == ["advent", "ensemble-advent-minent", "minent"]
    row = json.loads(next(suite_dir.glob("minent/*/metrics.jsonl")).read_text().splitlines()[-1])
    assert row["protocol"]["poly_horizon"] == 250000 and row["protocol"]["iterations"] == 4    # --quick: 4 steps
    assert row["protocol"]["bn_mode"] == "frozen_affine" and row["protocol"]["eval_align_corners"] is True
    assert row["protocol"]["param_listing"] == "deeplab_official" and row["protocol"]["train_align_corners"] is True
    ensemble = json.loads(next(suite_dir.glob("ensemble-*/*/metrics.jsonl")).read_text())
    assert ensemble["protocol"]["member_selection"] == "oracle-target-val"
    assert ensemble["protocol"]["combine"] == "mean_logits"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_runs_quick(recipe, stand_ins, tmp_path, capsys):
    quick_run(recipe, stand_ins, tmp_path, capsys)


def test_dry_run_of_a_recipe_lists_its_stages_upstream_first(stand_ins, tmp_path, capsys):
    assert main(["run", str(PAPER / "fada" / "gta5.yaml"), "--dry-run", "--results", str(tmp_path / "r")]) == 0
    plans = [json.loads(line[line.index("{"):]) for line in capsys.readouterr().out.splitlines()]
    seed0 = [p for p in plans if p["seed"] == 0]
    assert [p["method"] for p in seed0] == ["source_only", "fada", "self_distill"]   # each after what it needs
    assert seed0[2]["stages"] == "source_only → fada → self_distill"
    assert seed0[2]["config"]["train"]["iterations"] == 20000 and seed0[1]["config"]["train"]["batch_size"] == 4
    assert seed0[0]["config"]["train"]["lr"] == 5e-4 and seed0[1]["config"]["train"]["lr"] == 2.5e-4
    assert len(plans) == 9 and {p["status"] for p in plans} == {"new"} and not (tmp_path / "r").exists()
    fada = seed0[1]
    assert fada["config"]["train"]["align_corners"] is True and fada["config"]["train"]["param_listing"] == "unique"
    assert fada["config"]["model"]["bn_eps"] == 0 and fada["hparams"]["loss_resolution"] == "input"


def test_dry_run_of_the_maxsquare_multi_recipe_shows_its_optimizer_validation_and_selected_start(stand_ins, tmp_path,
                                                                                                  capsys):
    assert main(["run", str(PAPER / "maxsquare" / "gta5_multi.yaml"), "--dry-run", "--seeds", "0",
                 "--results", str(tmp_path / "r")]) == 0
    source, adapt = (json.loads(line[line.index("{"):]) for line in capsys.readouterr().out.splitlines())
    for plan in (source, adapt):
        assert plan["config"]["train"]["param_listing"] == "deeplab_official"
        assert plan["config"]["model"]["freeze_stem_bn"] is True
        assert plan["config"]["eval"]["validation"] == {"size": [1280, 640], "flip": False}
    assert source["config"]["data"]["source_val"]["split"] == "val"
    assert "(selected by source-val)" in adapt["stages"]
