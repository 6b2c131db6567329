"""Suite files, overrides and command-line options that are not what udabench reads."""

import os

import pytest
import yaml
from helpers import tiny_suite_dict


def tiny_yaml(tiny_data) -> str:
    return yaml.safe_dump(tiny_suite_dict(tiny_data), sort_keys=False)


def test_duplicate_top_level_key_names_both_lines(bad):
    text = tiny_yaml(bad.tiny_data) + "train: {iterations: 8}\n"
    first = text.splitlines().index("train:") + 1
    bad("run", bad.text(text), named=("suite.yaml, line", "key 'train' is given twice", f"first on line {first}"))


def test_duplicate_nested_key(bad):
    text = tiny_yaml(bad.tiny_data).replace("  lr: 0.01\n", "  lr: 0.01\n  lr: 0.1\n")
    bad("run", bad.text(text), named=("suite.yaml", "key 'lr' is given twice"))


def test_duplicate_key_in_a_flow_mapping(bad):
    text = tiny_yaml(bad.tiny_data) + "synthetic: {seed: 1, seed: 2}\n"
    bad("run", bad.text(text), named="key 'seed' is given twice")


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['echo pwned']", "!!python/name:os.system",
                                 "!!python/object:collections.OrderedDict {}", "!custom 3"])
def test_python_and_custom_tags_are_refused(bad, tag):
    text = tiny_yaml(bad.tiny_data).replace("description: test suite", f"description: {tag}")
    bad("run", bad.text(text), named=("suite.yaml, line 2", "safe loader"))


def test_unclosed_bracket_in_an_override(bad):
    bad("run", bad.suite(), "--set", "train.lr=[", named=("override 'train.lr=['", "not valid YAML", "quote"))


def test_python_tag_in_an_override(bad):
    bad("run", bad.suite(), "--set", "train.lr=!!python/name:os.system", named=("override", "safe loader"))


@pytest.mark.parametrize("override", ["=3", "train..lr=1", "train.lr", ".lr=1", "train.=1"])
def test_malformed_override_key(bad, override):
    bad("run", bad.suite(), "--set", override, named=(f"override {override!r}", "key.sub=value"))


def test_override_through_a_value_that_is_not_a_mapping(bad):
    bad("run", bad.suite(), "--set", "name.sub=1", named=("--set name.sub=1", "'name'", "not a mapping"))


def test_top_level_list(bad):
    bad("run", bad.text("- name: tiny\n- data: {}\n"), named=("suite.yaml", "top level is a list", "mapping"))


def test_top_level_scalar(bad):
    bad("run", bad.text("just some words\n"), named=("suite.yaml", "top level is a str"))


@pytest.mark.parametrize("text", ["", "\n\n", "# a comment only\n", "---\n"])
def test_empty_suite_file_says_it_is_empty(bad, text):
    bad("run", bad.text(text), named=("suite.yaml is empty",))


def test_folder_given_as_the_suite(bad):
    folder = bad.tmp_path / "suites"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(tiny_yaml(bad.tiny_data))
    bad("run", folder, named=(f"{folder} is a folder", "tiny.yaml"))


def test_missing_suite_file(bad):
    bad("run", bad.tmp_path / "nope.yaml", named=("nope.yaml", "does not exist"))


def test_binary_suite_file(bad):
    path = bad.tmp_path / "suite.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x89PNG")
    bad("run", path, named=("suite.yaml is not a text (UTF-8) file",))


def test_yaml_syntax_error_names_the_line(bad):
    bad("run", bad.text("name: tiny\ndata:\n  source: [unclosed\n"), named=("suite.yaml, line", "not valid YAML"))


def test_impossible_date_is_a_yaml_error(bad):
    text = tiny_yaml(bad.tiny_data).replace("description: test suite", "description: 2024-13-45")
    bad("run", bad.text(text), named=("suite.yaml", "not valid YAML", "month"))


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", "..", ".hidden", "", "x" * 101])
def test_suite_name_that_would_leave_the_results_folder(bad, name):
    bad("run", bad.suite(lambda s: s.update(name=name)), named=("key 'name' must be a folder name",))
    assert not (bad.results.parent / "x").exists()


def test_suite_name_from_an_environment_variable(bad, monkeypatch):
    monkeypatch.setenv("UDAB_SUITE_NAME", "../escaped")
    bad("run", bad.suite(lambda s: s.update(name="${UDAB_SUITE_NAME}")), named=("'../escaped'", "${VAR}"))


def test_suite_name_from_set(bad):
    bad("run", bad.suite(), "--set", "name=../../outside", named=("key 'name'", "'../../outside'"))
    assert not (bad.tmp_path / "outside").exists()


def test_source_file_key_is_refused(bad):
    bad("run", bad.suite(lambda s: s.update(source_file="x.yaml")), named="'source_file' is set by udabench")


@pytest.mark.parametrize("option, value", [("--seeds", ""), ("--seeds", " , "), ("--methods", ""),
                                           ("--methods", ",")])
def test_empty_seed_or_method_list(bad, option, value):
    bad("run", bad.suite(), option, value, named=(f"argument {option}", "empty"))


@pytest.mark.parametrize("value, named", [("0,-1", "seed -1 must be between 0 and 2147483647"),
                                          ("4294967296", "seed 4294967296"), ("1,x", "comma-separated integers")])
def test_bad_seed_on_the_command_line(bad, value, named):
    bad("run", bad.suite(), "--seeds", value, named=("argument --seeds", named))


def test_unknown_method_on_the_command_line(bad):
    bad("run", bad.suite(), "--methods", "source_only,advnet", named=("unknown method 'advnet'", "advent"))


def test_unknown_ensemble_member(bad):
    bad("run", bad.suite(lambda s: s.update(ensembles={"Both": ["source_only", "minnet"]})), named="'minnet'")


def test_unset_environment_variable(bad):
    os.environ.pop("UDAB_NOT_SET", None)
    bad("run", bad.suite(lambda s: s["data"]["eval"].update(root="${UDAB_NOT_SET}/x")),
        named=("data.eval.root", "UDAB_NOT_SET"))


def test_bad_device_option_of_viz(bad):
    bad("viz", bad.results, "--device", "tpu", named=("argument --device", "auto, cpu, cuda or cuda:N"))
