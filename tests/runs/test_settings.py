"""Run settings: YAML values checked and converted into frozen dataclasses, `--set` overrides,
settings files and the one-line errors a user can make."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from wetok.errors import ConfigError
from wetok.runs.settings import load_settings, parse_overrides, settings_from_dict, settings_to_dict, settings_to_yaml


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    drops: tuple[int, ...] = ()
    clip: float | None = 1.0
    name: str = "adamw"
    fused: bool = False
    accum: int = 1


@dataclass(frozen=True)
class Settings:
    optim: Optim = field(default_factory=Optim)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optim.accum > 8:
            raise ConfigError(f"optim.accum must be at most 8, got {self.optim.accum}")


def test_values_are_converted_to_the_annotated_types():
    s = settings_from_dict(Settings, {"optim": {"lr": "2e-4", "betas": [0.5, 0.9], "drops": [3, 5], "clip": None, "accum": 2},
                                      "seed": 4})
    assert s == Settings(optim=Optim(lr=2e-4, betas=(0.5, 0.9), drops=(3, 5), clip=None, accum=2), seed=4)
    assert isinstance(s.optim.lr, float) and isinstance(s.optim.betas, tuple)
    assert settings_from_dict(Settings, {"optim": {"lr": 1}}).optim.lr == 1.0 and isinstance(
        settings_from_dict(Settings, {"optim": {"lr": 1}}).optim.lr, float)


def test_round_trip_through_dict_and_yaml():
    s = Settings(optim=Optim(betas=(0.5, 0.9), drops=(2, 3), clip=None), seed=3)
    plain = settings_to_dict(s)
    assert plain == {"optim": {"lr": 1e-4, "betas": [0.5, 0.9], "drops": [2, 3], "clip": None, "name": "adamw", "fused": False,
                               "accum": 1}, "seed": 3}
    assert settings_from_dict(Settings, plain) == s
    text = settings_to_yaml(s)
    assert text.startswith("optim:\n  lr: 0.0001\n  betas:\n  - 0.5\n")  # in field order
    import yaml

    assert settings_from_dict(Settings, yaml.safe_load(text)) == s


@pytest.mark.parametrize(
    "data, message",
    [
        ({"optim": {"learning_rate": 1}}, "unknown key(s) in section 'optim': learning_rate (known: accum, betas, clip, drops, fused, lr, name)"),
        ({"optimizer": {}}, "unknown key(s) in the top level: optimizer (known: optim, seed)"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected a number, got 'fast'"),
        ({"optim": {"lr": True}}, "optim.lr: expected a number, got True"),
        ({"optim": {"accum": 1.5}}, "optim.accum: expected an integer, got 1.5"),
        ({"optim": {"accum": True}}, "optim.accum: expected an integer, got True"),
        ({"optim": {"fused": 1}}, "optim.fused: expected true or false, got 1"),
        ({"optim": {"name": 3}}, "optim.name: expected a string, got 3"),
        ({"optim": {"betas": [0.5]}}, "optim.betas: expected 2 values, got 1"),
        ({"optim": {"betas": 0.5}}, "optim.betas: expected a list, got 0.5"),
        ({"optim": {"drops": [1, "x"]}}, "optim.drops[1]: expected an integer, got 'x'"),
        ({"optim": 3}, "optim: expected a mapping of keys, got 3"),
        ({"optim": {"accum": 9}}, "optim.accum must be at most 8, got 9"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(Settings, data)
    assert str(caught.value) == message


def test_overrides_parse_yaml_values():
    assert parse_overrides(["optim.lr=2e-4", "train.stage=2", "eval.folder=null", "eval.size="]) == {
        "optim": {"lr": "2e-4"}, "train": {"stage": 2}, "eval": {"folder": None, "size": None}}
    assert parse_overrides(["optim.betas=[0.5, 0.9]", "seed=3"]) == {"optim": {"betas": [0.5, 0.9]}, "seed": 3}


@pytest.mark.parametrize(
    "pairs, message",
    [
        (["oops"], "--set expects section.key=value, got 'oops'"),
        (["=3"], "--set expects section.key=value, got '=3'"),
        (["optim.lr=[1"], "--set 'optim.lr=[1': the value is not valid YAML"),
        (["seed=1", "seed.x=2"], "--set 'seed.x=2': seed is not a section"),
    ],
)
def test_override_errors(pairs, message):
    with pytest.raises(ConfigError) as caught:
        parse_overrides(pairs)
    assert str(caught.value) == message


def test_load_settings_reads_a_file_then_the_overrides(tmp_path):
    assert load_settings(Settings, None) == Settings()
    assert load_settings(Settings, None, ["optim.accum=3"]) == Settings(optim=Optim(accum=3))
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 3e-4\n  accum: 2\nseed: 5\n")
    assert load_settings(Settings, path, ["optim.accum=4"]) == Settings(optim=Optim(lr=3e-4, accum=4), seed=5)
    assert load_settings(Settings, str(path)) == Settings(optim=Optim(lr=3e-4, accum=2), seed=5)
    path.write_text("")
    assert load_settings(Settings, path) == Settings()


def test_load_settings_errors_name_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    cases = [
        (None, f"{path}: cannot read config: no such file"),
        ("optim: [unclosed\n", f"{path}: not valid YAML"),
        ("- a list\n", f"{path}: a training config is a mapping of sections"),
        ("optim:\n  lr: fast\n", f"{path}: optim.lr: expected a number, got 'fast'"),
        ("optim:\n  accum: 9\n", f"{path}: optim.accum must be at most 8, got 9"),
    ]
    for text, message in cases:
        if text is not None:
            path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_settings(Settings, path)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"is a directory, not a config file"):
        load_settings(Settings, tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings, None, ["optim.lr=fast"])
    assert str(caught.value) == "optim.lr: expected a number, got 'fast'"
