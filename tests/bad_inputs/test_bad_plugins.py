"""Method plugins that break the contract: a clean error naming the plugin file (and line), never a raw one."""

import textwrap

import pytest

from udabench.registry import available, get_method

PLUGIN = '''
from dataclasses import dataclass

import torch

from udabench import Method, register


@register
class Plugin(Method):
    name = "{name}"
    paper = "a test"
    description = "a test plugin"
    uses_target = False

{hparams}

    def train_step(self, source, target, step):
        logs = self.ctx.supervised_step(source)
        return {returns}
'''
DATACLASS = "    @dataclass\n    class Hparams:\n        weight: float = 1.0"


def plugin(folder, name, returns="logs", hparams=DATACLASS, text=None):
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(text if text is not None else PLUGIN.format(name=name, returns=returns, hparams=hparams))
    return path


@pytest.mark.parametrize("returns, named", [
    ("None", "returned NoneType None"),
    ("'loss'", "returned str 'loss'"),
    ("torch.tensor(1.0)", "returned Tensor"),
    ("{'loss': torch.tensor(1.0, requires_grad=True)}", "'loss': Tensor"),
    ("{'loss': 'low'}", "'loss': str 'low'"),
    ("{1: 0.5}", "1: float 0.5"),
    ("[logs]", "returned list"),
])
def test_train_step_returning_anything_but_a_dict_of_floats(bad, returns, named):
    file = plugin(bad.tmp_path / "plugins", "weird_logs", returns)
    bad("run", bad.suite(), "--methods", "weird_logs", "--methods-dir", file.parent,
        named=(str(file), "Plugin.train_step", named, "at step 0", ".item()"))


def test_a_misspelt_role_is_refused_at_registration_naming_the_file(bad):
    """It would otherwise rank the method as UDA and measure its gain against Source-only."""
    text = PLUGIN.format(name="lower", returns="logs", hparams=DATACLASS).replace(
        '    uses_target = False', '    uses_target = False\n    role = "lowerbound"')
    file = plugin(bad.tmp_path / "plugins", "lower", text=text)
    bad("run", bad.suite(), "--methods", "lower", "--methods-dir", file.parent,
        named=(str(file), "role = 'lowerbound' is not one of", "'lower_bound'"))


def test_hparams_that_are_not_a_dataclass(bad):
    file = plugin(bad.tmp_path / "plugins", "no_dataclass", hparams="    class Hparams:\n        weight = 1.0")
    bad("run", bad.suite(), "--methods", "no_dataclass", "--methods-dir", file.parent,
        named=(str(file), "line 9", "Hparams must be a @dataclass"))


def test_hparams_of_a_type_the_schema_cannot_read(bad):
    file = plugin(bad.tmp_path / "plugins", "odd_type", hparams="    @dataclass\n    class Hparams:\n"
                                                                "        weights: object = None")
    bad("run", bad.suite(), "--methods", "odd_type", "--methods-dir", file.parent,
        named=(str(file), "field 'weights' has type"))


def test_syntax_error_reports_the_line_of_the_plugin_file(bad):
    text = PLUGIN.format(name="typo", returns="logs", hparams=DATACLASS).replace(
        "def train_step(self, source, target, step):", "def train_step(self, source, target, step)")
    line = text.splitlines().index("    def train_step(self, source, target, step)") + 1
    file = plugin(bad.tmp_path / "plugins", "typo", text=text)
    bad("run", bad.suite(), "--methods", "typo", "--methods-dir", file.parent,
        named=(str(file), f"line {line}: SyntaxError"))


def test_error_at_import_reports_the_plugin_line_not_the_library_line(bad):
    file = plugin(bad.tmp_path / "plugins", "bad_import", text="import os\n\nimport no_such_module_xyz\n")
    bad("run", bad.suite(), "--methods", "bad_import", "--methods-dir", file.parent,
        named=(str(file), "line 3: ModuleNotFoundError", "no_such_module_xyz"))


def test_plugin_reusing_a_builtin_name_is_an_error_for_that_name_only(bad, capsys):
    file = plugin(bad.tmp_path / "plugins", "my_minent", text=PLUGIN.format(
        name="minent", returns="logs", hparams=DATACLASS))
    bad("run", bad.suite(), "--methods", "minent", "--methods-dir", file.parent,
        named=("method 'minent' is defined twice", str(file), "methods/minent.py"))
    found = available([file.parent])   # every other method still works, the built-in minent among them
    assert {"source_only", "advent", "oracle"} <= set(found.methods)
    assert found.origin["minent"].parent.name == "methods" and found.origin["minent"].name == "minent.py"
    assert get_method("source_only", [file.parent]) is found.methods["source_only"]
    assert "already registered by" in found.broken[file.resolve()]


def test_plugin_name_that_is_not_a_folder_name(bad):
    file = plugin(bad.tmp_path / "plugins", "escape", text=PLUGIN.format(name="../escape", returns="logs",
                                                                        hparams=DATACLASS))
    bad("run", bad.suite(), "--methods", "escape", "--methods-dir", file.parent,
        named=(str(file), "name = '../escape' must be a folder name"))


def test_plugin_without_train_step(bad):
    file = plugin(bad.tmp_path / "plugins", "lazy", text=textwrap.dedent('''
        from udabench import Method, register


        @register
        class Lazy(Method):
            name = "lazy"
    '''))
    bad("run", bad.suite(), "--methods", "lazy", "--methods-dir", file.parent,
        named=(str(file), "line 5", "does not define train_step"))


def test_register_on_something_that_is_not_a_method(bad):
    file = plugin(bad.tmp_path / "plugins", "not_a_method", text=textwrap.dedent('''
        from udabench import register


        @register
        class NotAMethod:
            name = "not_a_method"
    '''))
    bad("run", bad.suite(), "--methods", "not_a_method", "--methods-dir", file.parent,
        named=(str(file), "expects a subclass of udabench.Method"))


def test_missing_methods_dir(bad):
    bad("run", bad.suite(), "--methods-dir", bad.tmp_path / "nowhere", named=("nowhere", "does not exist"))
