"""Options that document themselves: one frozen dataclass per mechanism and objective, one checker,
and ``probattn list --options NAME`` printing what the dataclass declares."""

import dataclasses
import json
import re

import pytest

from probattn.attention import AttentionContext, attention_class, available_attention, build_attention
from probattn.cli import main
from probattn.errors import ConfigError
from probattn.options import NON_NEGATIVE, POSITIVE_INT, Options, option
from probattn.train.objectives import OBJECTIVES, objective_class

from .conftest import REPO


@dataclasses.dataclass(frozen=True)
class Toy(Options):
    label = "toy option"
    n: int = option(3, "a count", POSITIVE_INT)
    x: float = option(0.5, "a weight", NON_NEGATIVE)
    mode: str = option("a", "a choice", ("a", "b"))
    on: bool = option(True, "a flag", bool)
    maybe: float | None = option(None, "unset means: ask n", NON_NEGATIVE)


@pytest.mark.parametrize("given,message", [
    ({"n": 0}, "toy option n must be a positive integer, got 0"),
    ({"n": 2.0}, "toy option n must be a positive integer, got 2.0"),
    ({"x": -1}, "toy option x must be a finite number >= 0, got -1"),
    ({"x": True}, "toy option x must be a finite number >= 0, got True"),
    ({"mode": "c"}, "toy option mode must be one of a, b, got 'c'"),
    ({"on": 1}, "toy option on must be true or false, got 1"),
    ({"maybe": "big"}, "toy option maybe must be a finite number >= 0, got 'big'"),
    ({"m": 1}, "toy 'x' has no option(s) m; allowed: n, x, mode, on, maybe"),
])
def test_one_checker_names_the_field_and_the_rule(given, message):
    with pytest.raises(ConfigError) as e:
        Toy.parse(given, "toy 'x'")
    assert str(e.value) == message


def test_defaults_are_written_once_and_values_frozen():
    t = Toy.parse({"x": 1}, "toy")
    assert (t.n, t.x, t.mode, t.on, t.maybe) == (3, 1.0, "a", True, None)
    assert isinstance(t.x, float)  # JSON "1" where a real number is meant
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.n = 4  # type: ignore[misc]
    assert Toy.parse(None, "toy") == Toy()


def test_every_mechanism_and_declared_objective_has_help_for_every_field():
    classes = [attention_class(n).Options for n in available_attention()]
    classes += [objective_class(n).Options for n in OBJECTIVES]
    assert len(classes) >= 9
    for cls in classes:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), (cls.__name__, f.name)
        cls()  # the defaults pass their own checks


def test_a_built_mechanism_holds_its_parsed_options():
    m = build_attention("gpam", AttentionContext(n_head=2, head_dim=4, options={"lam": 0.5, "tied": False}))
    assert m.options.lam == 0.5 and m.options.lam_minus == 0.5 and m.options.granularity == "layer"
    m = build_attention("linear", AttentionContext(n_head=2, head_dim=4))
    assert m.chunk_size == 64


def _list_options(name, capsys):
    code = main(["list", "--options", name])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_options_prints_each_field_default_and_help(capsys):
    code, out, _ = _list_options("gpam", capsys)
    lines = out.splitlines()
    fields = dataclasses.fields(attention_class("gpam").Options)
    assert code == 0 and lines[0] == "attention gpam:" and len(lines) == 1 + len(fields)
    for f, line in zip(fields, lines[1:]):
        name_default, help_text = line.split(None, 3)[:3], line.split(None, 3)[3]
        assert name_default == [f.name, "=", json.dumps(f.default)] and help_text == f.metadata["help"]
    code, out, _ = _list_options("softmax", capsys)
    assert code == 0 and out.splitlines() == ["attention softmax:", "  (no options)"]
    code, out, _ = _list_options("embedding_noise", capsys)
    assert code == 0 and out.splitlines()[1].split()[:3] == ["sigma", "=", "0.3"]


def test_list_options_of_the_barrier_objective_prints_its_declared_fields(capsys):
    code, out, _ = _list_options("barrier", capsys)
    fields = dataclasses.fields(objective_class("barrier").Options)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "objective barrier:" and len(lines) == 1 + len(fields)
    for f, line in zip(fields, lines[1:]):
        assert line.split(None, 3)[:3] == [f.name, "=", json.dumps(f.default)]
        assert line.split(None, 3)[3] == f.metadata["help"]
    assert lines[1].split()[:3] == ["lam", "=", "0.05"]


def test_list_options_of_an_unknown_name_is_one_error_line(capsys):
    code, out, err = _list_options("nope", capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and out == "" and len(lines) == 1
    assert lines[0].startswith("probattn: error:") and "'nope'" in lines[0] and "gpam" in lines[0]


def test_the_gpam_docs_table_states_the_declared_defaults():
    text = (REPO / "docs" / "gpam.md").read_text(encoding="utf-8")
    table = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, re.M)
    rows = {name: value.strip().strip("`") for name, value in table}
    for f in dataclasses.fields(attention_class("gpam").Options):
        assert f.name in rows, f.name
        if f.default is not None:  # unset defaults are described (= lam, 2.0 when trainable)
            assert rows[f.name] == json.dumps(f.default).strip('"'), f.name


# -- run configurations: one set of helpers for language-model and translation runs -------------

def test_from_fields_names_unknown_fields():
    from probattn.options import from_fields

    assert from_fields(Toy, {"n": 5}) == Toy(n=5)
    with pytest.raises(ConfigError, match=r"^unknown Toy field\(s\): a, b$"):
        from_fields(Toy, {"b": 1, "a": 2, "n": 5})
    with pytest.raises(ConfigError, match=r"^unknown toy options field\(s\): z$"):
        from_fields(Toy, {"z": 1}, "toy options")


@pytest.mark.parametrize("kind", ["lm", "nmt"])
def test_run_configs_share_round_trip_errors_and_overrides(kind):
    from probattn.nmt.config import NMTRunConfig, nmt_overrides, nmt_preset
    from probattn.train.config import RunConfig, apply_overrides, preset_config

    cls, preset, override, name = ((RunConfig, preset_config, apply_overrides, "tiny") if kind == "lm"
                                   else (NMTRunConfig, nmt_preset, nmt_overrides, "smoke"))
    config = preset(name)
    assert cls.from_dict(json.loads(config.to_json())) == config
    changed = override(config, {"train": {"max_steps": 3}, "data": {}})
    assert type(changed) is cls and changed.train.max_steps == 3 and changed.preset == name
    assert dataclasses.replace(changed, train=config.train) == config  # nothing else moved
    data = config.to_dict()
    data["data"]["nope"] = 1
    with pytest.raises(ConfigError, match=r"^unknown data section field\(s\): nope$"):
        cls.from_dict(data)
    with pytest.raises(ConfigError, match="^unknown config section 'optim'$"):
        override(config, {"optim": {}})
    with pytest.raises(ConfigError, match="preset 'nope'; available: "):
        preset("nope")
