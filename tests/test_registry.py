import pytest

from udabench import Method
from udabench.errors import ConfigError
from udabench.registry import BROKEN, discover, get_method

PLUGIN = '''
from dataclasses import dataclass
from udabench import Method, register

@register
class {cls}(Method):
    name = "{name}"
    paper = "test paper"
    description = "a test plugin"
    uses_target = False

    @dataclass
    class Hparams:
        weight: float = 1.0

    def train_step(self, source, target, step):
        with self.ctx.autocast():
            loss, logs = self.ctx.supervised_loss(self.ctx.model(source["image"]), source["label"])
        self.ctx.backward(self.hp.weight * loss)
        return logs
'''


def test_builtin_methods_are_discovered():
    methods = discover()
    assert {"source_only", "oracle"} <= set(methods)
    assert all(issubclass(cls, Method) and cls.paper and cls.description for cls in methods.values())


def test_plugin_in_extra_dir_is_discovered(tmp_path):
    (tmp_path / "my_method.py").write_text(PLUGIN.format(cls="Mine", name="my_method"))
    cls = get_method("my_method", [tmp_path])
    assert cls.Hparams().weight == 1.0


def test_broken_plugin_is_reported_by_file_and_does_not_break_others(tmp_path):
    (tmp_path / "broken_one.py").write_text("import no_such_module_xyz\n")
    (tmp_path / "fine_one.py").write_text(PLUGIN.format(cls="Fine", name="fine_one"))
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
    file.write_text(PLUGIN.format(cls="Edited", name="edited"))
    assert get_method("edited", [tmp_path]).Hparams().weight == 1.0
    file.write_text(PLUGIN.format(cls="Edited", name="edited").replace("weight: float = 1.0", "weight: float = 2.5"))
    assert get_method("edited", [tmp_path]).Hparams().weight == 2.5
    file.write_text("import no_such_module_xyz\n")
    with pytest.raises(ConfigError, match=r"edited\.py.*no_such_module_xyz"):
        get_method("edited", [tmp_path])
    file.write_text(PLUGIN.format(cls="Edited", name="edited"))
    assert get_method("edited", [tmp_path]).Hparams().weight == 1.0
