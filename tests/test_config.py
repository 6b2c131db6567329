import pytest
import yaml

from udabench.config import load_suite, parse_yaml
from udabench.errors import ConfigError


def test_tiny_suite_loads_into_typed_dataclasses(write_suite):
    suite = load_suite(write_suite())
    assert suite.data.source.size == (64, 32)
    assert suite.train.iterations == 4 and isinstance(suite.train.lr, float)
    assert suite.method_names() == ["source_only", "oracle"]


def test_misspelt_key_names_key_file_and_closest_valid_key(write_suite):
    path = write_suite(lambda s: s["train"].update(iteratons=10))
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    msg = str(err.value)
    assert "train.iteratons" in msg and str(path) in msg and "'iterations'" in msg


def test_wrong_type_names_the_key(write_suite):
    path = write_suite(lambda s: s["train"].update(batch_size="eight"))
    with pytest.raises(ConfigError, match=r"train\.batch_size.*an integer"):
        load_suite(path)


def test_literal_choices_are_enforced(write_suite):
    path = write_suite(lambda s: s["model"].update(bn_mode="sometimes"))
    with pytest.raises(ConfigError, match="'frozen' or 'frozen_affine' or 'train'"):
        load_suite(path)


def test_env_expansion_with_default_and_missing(write_suite, monkeypatch, tmp_path):
    monkeypatch.setenv("UDAB_TEST_ROOT", "/somewhere")
    path = write_suite(lambda s: s["data"]["source"].update(root="${UDAB_TEST_ROOT}/GTA5"))
    assert load_suite(path).data.source.root == "/somewhere/GTA5"
    path = write_suite(lambda s: s["data"]["source"].update(root="${UDAB_UNSET_VAR:-/fallback}/GTA5"))
    assert load_suite(path).data.source.root == "/fallback/GTA5"
    path = write_suite(lambda s: s["data"]["source"].update(root="${UDAB_UNSET_VAR}/GTA5"))
    with pytest.raises(ConfigError, match="UDAB_UNSET_VAR.*not set"):
        load_suite(path)


def test_set_overrides_are_parsed_as_yaml_and_validated(write_suite):
    suite = load_suite(write_suite(), ["train.iterations=7", "model.aspp_dilations=[6, 12]"])
    assert suite.train.iterations == 7 and suite.model.aspp_dilations == (6, 12)
    with pytest.raises(ConfigError, match="train.itr"):
        load_suite(write_suite(), ["train.itr=7"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_suite(write_suite(), ["iterations"])


def test_quick_shrinks_the_run(write_suite):
    suite = load_suite(write_suite(), quick=True)
    assert suite.train.iterations == 4 and suite.data.eval.limit == 8


def test_quick_keeps_an_lr_warmup_and_rare_class_sampling_within_its_few_steps_and_images(write_suite):
    """A recipe of 40k steps with a 1500-step warm-up and 3000-pixel rare-class draws (MIC's) still runs --quick:
    the warm-up over half the quick steps, rare classes drawn among all images that hold them."""
    from udabench.config import stage_suite

    rcs = {"source_sampler": "rare_class", "rcs_min_pixels": 3000, "warmup_iters": 1500}
    path = write_suite(lambda s: s["train"].update(iterations=40000, warmup_iters=1500) or s["methods"].update(
        minent={}) or s.update(stages={"minent": {"train": rcs}}))
    suite = load_suite(path, quick=True)
    assert (suite.train.iterations, suite.train.warmup_iters, suite.train.rcs_min_pixels) == (4, 2, 0)
    staged = stage_suite(suite, "minent").train
    assert (staged.source_sampler, staged.warmup_iters, staged.rcs_min_pixels) == ("rare_class", 2, 0)
    assert load_suite(path).train.warmup_iters == 1500   # the real suite is untouched


def test_missing_file_and_yaml_syntax_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(bad)


def test_unknown_class_set_and_bad_subset(write_suite):
    with pytest.raises(ConfigError, match="cityscapes19"):
        load_suite(write_suite(lambda s: s.update(classes="cityscape19")))
    path = write_suite(lambda s: s.update(classes="synthia13", eval_class_sets=["synthia16"]))
    with pytest.raises(ConfigError, match="not a subset"):
        load_suite(path)


def test_shipped_suites_are_valid(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("UDABENCH_DATA", "/data")
    suites = sorted((Path(__file__).parent.parent / "suites").glob("*.yaml"))
    assert suites
    for path in suites:
        suite = load_suite(path)
        assert suite.name == path.stem, path
        assert yaml.safe_load(path.read_text())["description"]


# ---- numbers in exponent notation (issue 23, item 4) ---------------------------------------------------
# YAML 1.1, which PyYAML implements, reads 1e-4 (no dot, unsigned exponent...) as a string; YAML 1.2,
# OmegaConf, mmengine's --cfg-options and pydantic read it as the number. Suites and --set do too.
EXPONENT_FLOATS = ["1e-4", "1E-4", "1e3", "+1e-3", "2.5e-4", "2.5E4", "5.e-1", ".5", "+.5", "-.5"]


@pytest.mark.parametrize("text", EXPONENT_FLOATS)
def test_a_number_in_any_float_notation_is_a_number(text):
    value = parse_yaml(f"x: {text}", "test")["x"]
    assert type(value) is float and value == float(text)


@pytest.mark.parametrize("text, expected", [
    ("1e-4x", "1e-4x"), ("e5", "e5"), ("1e", "1e"), ("1e+", "1e+"), ("1.2.3", "1.2.3"), ("1e-4.5", "1e-4.5"),
    ("resnet101", "resnet101"), ("/data/GTA5", "/data/GTA5"), ("'1e-4'", "1e-4"), ('"24:00:00"', "24:00:00"),
    ("cuda:0", "cuda:0"), ("2-00:00:00", "2-00:00:00"), ("v1.0e3", "v1.0e3"), (".e5", ".e5"), ("+", "+"),
    ("09", "09"), ("1_0e-5", "1_0e-5"), ("5e3a", "5e3a"),
    ("24:00:00", 86400), ("1_000", 1000), ("0x1F", 31), ("12", 12), ("1.5", 1.5), (".inf", float("inf")),
    ("yes", True), ("~", None),
])
def test_anything_else_is_read_as_before(text, expected):
    value = parse_yaml(f"x: {text}", "test")["x"]
    assert value == expected == yaml.safe_load(f"x: {text}")["x"] and type(value) is type(expected)


def test_pyyaml_itself_is_left_as_it_is():
    parse_yaml("x: 1e-4", "test")
    assert yaml.safe_load("x: 1e-4") == {"x": "1e-4"}


@pytest.mark.parametrize("text", ["1e-4", "1E-4", "1e3", "+1e-3"])
def test_set_and_suite_files_take_exponent_notation_for_numbers(write_suite, text):
    number = float(text)
    suite = load_suite(write_suite(), [f"train.lr={text}", f"methods.minent.lambda_ent={text}"])
    assert suite.train.lr == number and suite.methods["minent"]["lambda_ent"] == number
    path = write_suite()
    child = path.with_name("child.yaml")
    child.write_text(f"extends: {path.name}\ntrain:\n  lr: {text}\n  weight_decay: {text}\nmodel:\n  bn_eps: {text}\n")
    suite = load_suite(child)
    assert (suite.train.lr, suite.train.weight_decay, suite.model.bn_eps) == (number, number, number)


def test_strings_keep_being_strings(write_suite):
    suite = load_suite(write_suite(), ["name=run_1e-4x", "launcher.time='24:00:00'", "data.source.root=/data/1e3x",
                                       "launcher.partition=gpu"])
    assert (suite.name, suite.launcher.time, suite.data.source.root) == ("run_1e-4x", "24:00:00", "/data/1e3x")
    with pytest.raises(ConfigError, match="YAML reads 24:00:00 as the number 86400"):
        load_suite(write_suite(), ["launcher.time=24:00:00"])


def test_a_number_where_a_string_is_expected_says_to_quote_it(write_suite):
    with pytest.raises(ConfigError, match=r"'name' must be a string, got 1000\.0\. Quote it"):
        load_suite(write_suite(), ["name=1e3"])
    with pytest.raises(ConfigError, match=r"'name' must be a string, got \[1\]\.$"):   # no quoting makes a list one
        load_suite(write_suite(), ["name=[1]"])
