import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import plugin_source

from udabench import Method
from udabench.cli import main
from udabench.errors import ConfigError
from udabench.registry import BROKEN, BUILTIN_DIR, available, discover, get_method


def test_builtin_methods_are_discovered():
    methods = discover()
    assert {"source_only", "oracle"} <= set(methods)
    assert all(issubclass(cls, Method) and cls.paper and cls.description for cls in methods.values())


def test_plugin_in_extra_dir_is_discovered(tmp_path):
    (tmp_path / "my_method.py").write_text(plugin_source("my_method", "Mine"))
    cls = get_method("my_method", [tmp_path])
    assert cls.Hparams().weight == 1.0


def test_broken_plugin_is_reported_by_file_and_does_not_break_others(tmp_path):
    (tmp_path / "broken_one.py").write_text("import no_such_module_xyz\n")
    (tmp_path / "fine_one.py").write_text(plugin_source("fine_one", "Fine"))
    methods = discover([tmp_path])
    assert "fine_one" in methods and "source_only" in methods
    assert any(f.name == "broken_one.py" for f in BROKEN)
    with pytest.raises(ConfigError, match=r"broken_one\.py.*no_such_module_xyz"):
        get_method("broken_one", [tmp_path])


def test_unknown_method_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'source_only'"):
        get_method("source_onyl")


def test_missing_methods_dir_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        discover([tmp_path / "nowhere"])


def test_a_plugin_file_rewritten_at_the_same_path_is_imported_again(tmp_path):
    """Edited in place (a notebook session, or a test reusing a deleted temporary folder's name): the new
    contents count, whether the old version imported or was broken."""
    file = tmp_path / "edited.py"
    file.write_text(plugin_source("edited", "Edited"))
    assert get_method("edited", [tmp_path]).Hparams().weight == 1.0
    file.write_text(plugin_source("edited", "Edited").replace("weight: float = 1.0", "weight: float = 2.5"))
    assert get_method("edited", [tmp_path]).Hparams().weight == 2.5
    file.write_text("import no_such_module_xyz\n")
    with pytest.raises(ConfigError, match=r"edited\.py.*no_such_module_xyz"):
        get_method("edited", [tmp_path])
    file.write_text(plugin_source("edited", "Edited"))
    assert get_method("edited", [tmp_path]).Hparams().weight == 1.0


SUBCLASS = '''
from dataclasses import dataclass

from udabench import register
from udabench.builtin_methods.maxsquare import MaxSquare


@register
class MaxSquareL05(MaxSquare):
    {name}
    description = "MaxSquare with lambda_target 0.5"

    @dataclass
    class Hparams(MaxSquare.Hparams):
        lambda_target: float = 0.5
'''


@pytest.fixture(params=["checkout", "wheel"])
def layout(request, monkeypatch):
    """Where the built-in methods are: the checkout's methods/ folder, or (emulated) a wheel's package
    ``udabench.builtin_methods`` (setup.py ships methods/ as that package), which Python imports by itself."""
    if request.param == "wheel":
        spec = importlib.machinery.ModuleSpec("udabench.builtin_methods", None, is_package=True)
        spec.submodule_search_locations = [str(BUILTIN_DIR)]
        monkeypatch.setitem(sys.modules, spec.name, importlib.util.module_from_spec(spec))
    return request.param


def test_a_plugin_subclassing_a_builtin_is_a_method_of_its_own(tmp_path, layout):
    """Issue 23: importing a built-in to subclass it registered the built-ins a second time under the plugin's
    file in a wheel ("method 'maxsquare' is defined twice ... rename it in maxsquare_l05.py"); in a checkout the
    import failed. The plugin subclasses the very class the registry loaded, and is only its own method."""
    (tmp_path / "maxsquare_l05.py").write_text(SUBCLASS.format(name='name = "maxsquare_l05"'))
    found = available([tmp_path])
    assert not found.broken and not found.clashes
    mine, builtin = found.methods["maxsquare_l05"], found.methods["maxsquare"]
    assert issubclass(mine, builtin) and mine.Hparams().lambda_target == 0.5 and mine.Hparams().alpha == 0.2
    assert found.origin["maxsquare"] == BUILTIN_DIR.resolve() / "maxsquare.py"
    assert found.origin["maxsquare_l05"] == (tmp_path / "maxsquare_l05.py").resolve()
    assert get_method("maxsquare_iw") is found.methods["maxsquare_iw"]
    assert mine.row_label() == "maxsquare_l05" and builtin.row_label() == "MaxSquare"   # not its parent's label


def test_a_subclass_that_keeps_its_parents_name_is_the_clash_it_is(tmp_path, layout):
    (tmp_path / "maxsquare_copy.py").write_text(SUBCLASS.format(name=""))
    found = available([tmp_path])
    assert list(found.broken) == [(tmp_path / "maxsquare_copy.py").resolve()]
    assert found.origin["maxsquare"] == BUILTIN_DIR.resolve() / "maxsquare.py"
    with pytest.raises(ConfigError, match=r"'maxsquare' is defined twice.*maxsquare_copy\.py"):
        get_method("maxsquare", [tmp_path])


def test_list_methods_exits_non_zero_when_a_plugin_is_broken(tmp_path, capsys):
    (tmp_path / "broken_one.py").write_text("import no_such_module_xyz\n")
    assert main(["list", "methods", "--methods-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "source_only" in out and "BROKEN plugin" in out and "broken_one.py" in err
    (tmp_path / "broken_one.py").unlink()
    assert main(["list", "methods", "--methods-dir", str(tmp_path)]) == 0


def test_the_documented_subclass_of_a_builtin_registers(tmp_path):
    """docs/adding-a-method.md, "Subclassing a built-in": the example, dropped into a folder, is a method."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "adding-a-method.md").read_text()
    blocks = [block.split("```", 1)[0] for block in doc.split("```python\n")[1:]]
    example = next(block for block in blocks if "builtin_methods" in block)
    (tmp_path / "maxsquare_l05.py").write_text(example)
    found = available([tmp_path])
    assert not found.broken and found.methods["maxsquare_l05"].Hparams().lambda_target == 0.5
    assert found.methods["maxsquare_l05"].row_label() == "MaxSquare (λ 0.5)"
