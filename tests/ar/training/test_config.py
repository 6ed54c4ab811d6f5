"""The generator training config: defaults (the original recipe), YAML, overrides and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import REPO
from wetok.ar.training.config import ARTrainConfig, load_ar_train_config
from wetok.errors import ConfigError

SHARDS = {"grid_size": 8, "groups": 2, "bits_per_group": 4}


def test_defaults_are_the_original_recipe():
    cfg = ARTrainConfig()
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.optim.weight_decay == 0.05
    assert cfg.optim.lr == 3e-4
    assert cfg.optim.grad_clip == 1.0
    assert (cfg.optim.schedule, cfg.optim.min_lr_ratio) == ("linear", 0.1)
    assert cfg.train.precision == "bf16"
    assert cfg.optim.ema_decay is None


def test_a_preset_takes_the_shards_grid_and_classes():
    cfg = load_ar_train_config(None, ["model.preset=B"])
    config = cfg.model.transformer_config(SHARDS, 10)
    assert (config.dim, config.spatial_layers, config.grid_size, config.groups, config.bits_per_group, config.num_classes) == \
        (1024, 24, 8, 2, 4, 10)
    assert config.class_dropout == 0.1


def test_explicit_architecture_and_num_classes():
    cfg = load_ar_train_config(None, ["model.dim=64", "model.heads=4", "model.spatial_layers=2", "model.factorized_layers=1",
                                      "model.num_classes=1000", "model.class_dropout=0.2"])
    config = cfg.model.transformer_config(SHARDS, 10)
    assert (config.dim, config.heads, config.num_classes, config.class_dropout) == (64, 4, 1000, 0.2)


def test_the_digits_recipe_reads(tmp_path: Path):
    cfg = load_ar_train_config(REPO / "configs" / "ar-digits.yaml")
    assert cfg.model.transformer_config(SHARDS, 10).num_classes == 10
    again = tmp_path / "again.yaml"
    again.write_text(cfg.to_yaml())
    assert load_ar_train_config(again) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.lr=-1"], "optim.lr must be positive"),
        (["optim.learning_rate=1"], "unknown key(s) in section 'optim': learning_rate"),
        (["modle.dim=3"], "unknown key(s) in the top level: modle"),
        (["train.steps=ten"], "train.steps: expected an integer"),
        (["train.precision=fp8"], "train.precision must be fp32, bf16 or fp16"),
        (["train.parallel=zero3"], "train.parallel must be ddp or fsdp"),
        (["data.views=all"], "data.views must be random or first"),
        (["optim.betas=[0.9]"], "optim.betas: expected 2 values"),
        (["optim.ema_decay=0.999", "train.parallel=fsdp"], "optim.ema_decay needs train.parallel: ddp"),
        (["init.checkpoint=x.ckpt", "model.preset=B"], "init.checkpoint decides the architecture: leave model.preset unset"),
        (["tokenizer.config=x.yaml"], "tokenizer.config applies to tokenizer.model"),
        (["optim.warmup_steps=0", "optim.decay_start=5", "optim.schedule=constant"], "optim.decay_start applies to optim.schedule=cosine or linear only"),
    ],
)
def test_config_errors_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_ar_train_config(None, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_model_section_needs_a_preset_or_an_architecture():
    with pytest.raises(ConfigError, match="set preset, or at least dim, heads"):
        ARTrainConfig().model.transformer_config(SHARDS, 10)
    with pytest.raises(ConfigError, match="either preset or architecture keys"):
        load_ar_train_config(None, ["model.preset=B", "model.dim=64"]).model.transformer_config(SHARDS, 10)


def test_a_file_error_names_the_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: [1, 2]\n")
    with pytest.raises(ConfigError, match="bad.yaml: optim.lr: expected a number"):
        load_ar_train_config(path)
