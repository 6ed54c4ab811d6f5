"""Configuration: presets against the released architectures, the released YAML layout, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import wetok
from wetok import PRESETS, TokenizerConfig

# official_architectures.json entry for each preset
OFFICIAL = {
    "imagenet-d8": "compratio48 = ImageNet downsample8 (d8, 32 bits, 4 groups)",
    "imagenet-d16": "compratio192 = ImageNet downsample16 (d16, 32 bits, 4 groups)",
    "general-cr24": "compratio24 (d8, 64 bits/token, 8 groups)",
    "general-cr48": "compratio48 = ImageNet downsample8 (d8, 32 bits, 4 groups)",
    "general-cr192": "compratio192 = ImageNet downsample16 (d16, 32 bits, 4 groups)",
    "general-cr768": "compratio768 (d32, 32 bits, 4 groups, generative decoder)",
}


def test_preset_names():
    assert list(PRESETS) == [
        "imagenet-d8",
        "imagenet-d16",
        "general-cr24",
        "general-cr48",
        "general-cr192",
        "general-cr768",
    ]
    assert PRESETS["imagenet-d8"].hub.filename == "ImageNet/downsample8/WeTok.ckpt"
    assert PRESETS["general-cr24"].hub.filename == "GeneralDomain/compratio24/WeTok.ckpt"
    assert all(p.hub.repo_id == "GrayShine/WeTok" and p.name == name for name, p in PRESETS.items())


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_preset_matches_released_state_dict(official_architectures, name):
    official = official_architectures[OFFICIAL[name]]
    config = PRESETS[name]
    with torch.device("meta"):
        model = wetok.Tokenizer(config)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == official["state_dict_shapes"]
    assert sum(p.numel() for p in model.encoder.parameters()) == official["encoder_params"]
    assert sum(p.numel() for p in model.decoder.parameters()) == official["decoder_params"]
    assert config.downsample == official["downsample"]
    assert config.compression_ratio() == official["compression_ratio"]
    assert config.generative == official["gan_decoder"]
    assert config.codebook_size == official["n_embed"] and config.groups == official["num_codebooks"]
    h = official["latent_hw_at_256"]
    assert h * h * config.latent_channels == official["token_bits_at_256"]


def test_released_yaml(reference):
    cfg = TokenizerConfig.from_released_yaml(reference / "tiny_d16.yaml")
    assert cfg == TokenizerConfig(channels=32, channel_mult=(1, 1, 2, 2, 2), num_res_blocks=2, latent_channels=32, groups=4)
    gd = TokenizerConfig.from_released_yaml(reference / "tiny_gd_d32.yaml")
    assert gd.generative and gd.downsample == 32


def test_dict_round_trip_and_hash():
    cfg = PRESETS["general-cr768"]
    again = TokenizerConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.architecture_hash() == cfg.architecture_hash()
    assert PRESETS["imagenet-d8"].architecture_hash() == PRESETS["general-cr48"].architecture_hash()
    assert PRESETS["imagenet-d8"].architecture_hash() != PRESETS["general-cr24"].architecture_hash()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latent_channels": 30, "groups": 4}, "divisible"),
        ({"channels": 48}, "multiples of norm_groups \\(32\\)"),
        ({"channels": 32, "channel_mult": (1, 2), "norm_groups": 3}, "multiples of norm_groups \\(3\\)"),
        ({"norm_groups": 0}, "norm_groups must be a positive integer"),
        ({"channel_mult": ()}, "channel_mult"),
        ({"groups": 0}, "positive"),
        ({"latent_channels": 64, "groups": 2}, "at most 24"),
    ],
)
def test_invalid_configs(kwargs, message):
    with pytest.raises(wetok.ConfigError, match=message):
        TokenizerConfig(**kwargs)


def test_norm_groups_is_part_of_the_architecture_only_when_not_32():
    small = TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8, groups=2)
    fewer = dataclasses.replace(small, norm_groups=8)
    assert "norm_groups" not in small.architecture() and fewer.architecture()["norm_groups"] == 8
    assert small.architecture_hash() != fewer.architecture_hash()
    assert TokenizerConfig.from_dict(fewer.to_dict()) == fewer
    assert fewer.describe().endswith("GroupNorm 8 groups") and "GroupNorm" not in small.describe()
    # The released architectures keep the hashes they had before the field existed (the
    # README's tiny_d16 example prints this one; .wtok files store it).
    tiny_d16 = TokenizerConfig(channels=32, channel_mult=(1, 1, 2, 2, 2), num_res_blocks=2, latent_channels=32, groups=4)
    assert tiny_d16.architecture_hash() == "b4ca75986e0b0ec1"


def test_unknown_dict_keys():
    with pytest.raises(wetok.ConfigError, match="unknown tokenizer config keys: colour"):
        TokenizerConfig.from_dict({"colour": 1})


def test_bad_yaml_files(tmp_path):
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(wetok.ConfigError, match="not valid YAML"):
        TokenizerConfig.from_released_yaml(tmp_path / "broken.yaml")
    (tmp_path / "other.yaml").write_text("trainer: {devices: 8}\n")
    with pytest.raises(wetok.ConfigError, match="not a WeTok model config"):
        TokenizerConfig.from_released_yaml(tmp_path / "other.yaml")
    with pytest.raises(wetok.ConfigError, match="cannot read"):
        TokenizerConfig.from_released_yaml(tmp_path / "absent.yaml")


def test_mismatched_n_embed(reference, tmp_path):
    text = (reference / "tiny_d16.yaml").read_text().replace("n_embed: 256", "n_embed: 512")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(wetok.ConfigError, match="n_embed 512"):
        TokenizerConfig.from_released_yaml(tmp_path / "c.yaml")


def test_unknown_preset():
    with pytest.raises(wetok.ConfigError, match="known presets: imagenet-d8"):
        wetok.get_preset("imagenet-d4")
