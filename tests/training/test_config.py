"""Training configuration: YAML files, overrides and the errors a user can make."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import REPO, TINY_CONFIG
from wetok.errors import ConfigError
from wetok.training.config import TrainConfig, load_train_config

TOKENIZER_CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("ar-"))
"""The shipped tokenizer training configs (configs/ar-*.yaml are the generator's)."""


@pytest.mark.parametrize("path", TOKENIZER_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path):
    cfg = load_train_config(path, ["init.checkpoint=x.ckpt"] if "stage2" in path.name else [])
    assert cfg.data.size % cfg.tokenizer_config().downsample == 0


def test_tiny_config_values():
    cfg = load_train_config(TINY_CONFIG)
    assert cfg.tokenizer_config().downsample == 4
    assert cfg.tokenizer_config().latent_channels == 16 and not cfg.tokenizer_config().generative
    assert cfg.loss.perceptual_weight == 0.0 and cfg.loss.gan_start == 2
    assert cfg.optim.betas == (0.5, 0.9) and cfg.optim.lr == 1e-4  # the original's defaults


def test_defaults_are_the_original_recipe():
    lo = TrainConfig().loss
    assert (lo.l1_weight, lo.perceptual_weight, lo.gan_weight, lo.entropy_weight, lo.commitment_weight) == (1.0, 1.0, 0.1, 0.1, 0.25)
    assert (lo.lecam_weight, lo.lecam_decay) == (0.05, 0.999)
    assert TrainConfig().optim.ema_decay == 0.999
    assert TrainConfig().discriminator.filters == 64 and TrainConfig().discriminator.layers == 3


def test_round_trip_through_yaml(tmp_path):
    cfg = load_train_config(TINY_CONFIG, ["optim.schedule=step", "optim.drop_steps=[2, 3]"])
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_train_config(path) == cfg
    assert cfg.optim.drop_steps == (2, 3)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.learning_rate=1"], "unknown key(s) in section 'optim': learning_rate"),
        (["optimizer.lr=1"], "unknown key(s) in the top level: optimizer"),
        (["optim.lr=fast"], "optim.lr: expected a number, got 'fast'"),
        (["train.steps=1.5"], "train.steps: expected an integer"),
        (["data.flip=1"], "data.flip: expected true or false"),
        (["optim.betas=[0.5]"], "optim.betas: expected 2 values, got 1"),
        (["train.stage=3"], "train.stage must be 1 or 2"),
        (["train.stage=2"], "stage 2 starts from a stage-1 model: set init.checkpoint"),
        (["train.precision=fp8"], "train.precision must be fp32, bf16 or fp16"),
        (["train.channels_last=1"], "train.channels_last: expected true or false, got 1"),
        (["train.channels_last=nhwc"], "train.channels_last: expected true or false, got 'nhwc'"),
        (["train.timeout_minutes=0"], "train.timeout_minutes must be above 0"),
        (["train.timeout_minutes=.nan"], "train.timeout_minutes must be above 0"),
        (["data.size=30"], "data.size 30 is not a multiple of the downsample factor 4"),
        (["loss.gan_weight=-1"], "loss.gan_weight must be >= 0"),
        (["model.preset=imagenet-d8"], "model: give either preset or architecture keys"),
        (["model.groups=5"], "latent_channels (16) must be divisible by groups (5)"),
        (["oops"], "--set expects section.key=value"),
        (["optim.decay_start=-1"], "optim.decay_start must be null or from optim.warmup_steps"),
        (["optim.decay_start=99999999"], "to below train.steps"),
        (["optim.decay_start=2"], "optim.decay_start applies to optim.schedule=cosine or linear only, got schedule 'constant'"),
        (["optim.schedule=cosine", "optim.drop_steps=[5]"], "optim.drop_steps applies to optim.schedule=step only"),
        (["init.deepen=true"], "init.deepen applies to a start from init.checkpoint"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_train_config(TINY_CONFIG, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_train_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="a mapping of sections"):
        load_train_config(bad)


def test_preset_architecture():
    cfg = TrainConfig.from_dict({"model": {"preset": "general-cr24"}})
    tc = cfg.tokenizer_config()
    assert (tc.channels, tc.latent_channels, tc.groups, tc.name) == (256, 64, 8, None)
    stage2 = TrainConfig.from_dict({"model": {"preset": "general-cr24"}, "train": {"stage": 2}, "init": {"checkpoint": "a"}})
    assert stage2.tokenizer_config().generative


def test_channels_last_follows_the_precision_unless_set(tmp_path):
    assert TrainConfig().train.channels_last is None and not TrainConfig().train.nhwc  # fp32: contiguous
    assert load_train_config(TINY_CONFIG, ["train.precision=bf16"]).train.nhwc
    assert load_train_config(TINY_CONFIG, ["train.precision=fp16"]).train.nhwc
    assert load_train_config(REPO / "configs" / "default-model.yaml").train.nhwc  # bf16
    assert load_train_config(TINY_CONFIG, ["train.channels_last=true"]).train.nhwc
    assert not load_train_config(TINY_CONFIG, ["train.precision=bf16", "train.channels_last=false"]).train.nhwc
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  precision: bf16\n  channels_last: no\n")  # YAML 1.1 booleans, as yaml.safe_load reads them
    assert load_train_config(path).train.channels_last is False
    path.write_text("train:\n  precision: bf16\n  channels_last: null\n")
    cfg = load_train_config(path)
    assert cfg.train.channels_last is None and cfg.train.nhwc
    again = tmp_path / "again.yaml"
    again.write_text(cfg.to_yaml())
    assert load_train_config(again) == cfg


def test_exponent_without_dot_is_a_number():
    assert load_train_config(TINY_CONFIG, ["optim.lr=2e-4"]).optim.lr == 2e-4


def test_stage1_yaml_documents_every_key():
    import dataclasses

    import yaml

    documented = yaml.safe_load((REPO / "configs" / "stage1.yaml").read_text())
    for section in dataclasses.fields(TrainConfig):
        keys = {f.name for f in dataclasses.fields(section.type if not isinstance(section.type, str) else
                                                   type(getattr(TrainConfig(), section.name)))}
        assert set(documented[section.name]) == keys, section.name
