import pytest
import yaml

from udabench.config import load_suite
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
