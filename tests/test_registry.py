import pytest

from msabench.errors import DuplicateComponentError, MsabenchError, UnknownComponentError
from msabench.registry import Registry


class Thing:
    name = "thing-one"


def test_class_and_lazy_registration():
    reg = Registry()
    reg.add("fusion", Thing, plugin="p")
    reg.add("fusion", "tests.test_registry:Thing", name="thing-one-lazy", plugin="p")
    assert reg.names("fusion") == ["thing-one", "thing-one-lazy"]
    assert reg.load("fusion", "thing-one") is Thing
    # a lazy entry whose class carries another name is refused when loaded
    with pytest.raises(MsabenchError, match="must agree"):
        reg.load("fusion", "thing-one-lazy")


def test_lazy_reference_is_imported_only_on_load():
    reg = Registry()
    entry = reg.add("method", "no_such_module_xyz:Cls", name="ghost", plugin="p")
    assert entry.is_lazy and entry._loaded is None
    with pytest.raises(MsabenchError, match="could not be loaded.*no_such_module_xyz"):
        reg.load("method", "ghost")


def test_duplicate_names_are_refused_with_both_origins():
    reg = Registry()
    reg.add("method", Thing, plugin="first")
    with pytest.raises(DuplicateComponentError) as err:
        reg.add("method", "x.y:Thing", name="thing-one", plugin="second")
    assert "first" in str(err.value) and "second" in str(err.value)
    # through the plugin-facing registrar the duplicate is recorded, not raised
    register = reg.registrar("method", "third")
    register("x.y:Other", name="thing-one")
    assert reg.problems and reg.problems[0][0] == "third"
    assert reg.get("method", "thing-one").plugin == "first"


def test_unknown_name_suggests_close_match_and_lists_known():
    reg = Registry()
    reg.add("dataset", "a.b:C", name="mosei", plugin="p")
    reg.add("dataset", "a.b:D", name="mosi", plugin="p")
    with pytest.raises(UnknownComponentError) as err:
        reg.get("dataset", "mossi")
    msg = str(err.value)
    assert "Did you mean 'mosi'" in msg
    assert "Known datasets: mosei, mosi" in msg


@pytest.mark.parametrize("bad", ["Bad_Name", "", "-x", "a b"])
def test_invalid_names_refused(bad):
    reg = Registry()
    with pytest.raises(MsabenchError):
        reg.add("metric", "a.b:C", name=bad, plugin="p")


def test_lazy_reference_requires_name_and_colon():
    reg = Registry()
    with pytest.raises(MsabenchError, match="without name"):
        reg.add("metric", "a.b:C", plugin="p")
    with pytest.raises(MsabenchError, match="module:Class"):
        reg.add("metric", "a.b.C", name="c", plugin="p")
