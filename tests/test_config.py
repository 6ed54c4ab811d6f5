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


# ---- forged and mistyped configurations (issue 17: #6, #7) ------------------------------------
def _meta_parameters(config: TokenizerConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in wetok.Tokenizer(config).parameters())


def test_parameter_count_is_exact_without_building_the_model():
    import random

    for config in PRESETS.values():
        assert config.parameter_count() == _meta_parameters(config)
    rng = random.Random(17)
    for _ in range(25):
        config = TokenizerConfig(
            channels=16 * rng.randint(1, 4),
            channel_mult=tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 5))),
            num_res_blocks=rng.randint(1, 3),
            latent_channels=6 * rng.randint(1, 3),
            groups=rng.choice([1, 2, 3, 6]),
            generative=rng.random() < 0.5,
            in_channels=rng.randint(1, 4),
            out_channels=rng.randint(1, 4),
            norm_groups=rng.choice([1, 2, 4, 8, 16]),
        )
        assert config.parameter_count() == _meta_parameters(config), config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 1_000_000},
        {"channels": 32 * 2**20, "channel_mult": (1,)},
        {"channel_mult": (1, 2, 2, 100_000)},
        {"num_res_blocks": 10**9},
        {"num_res_blocks": 10**40},
        {"latent_channels": 2**30, "groups": 2**27},
        {"in_channels": 10**9},
        {"out_channels": 10**12},
        {"channels": 2**4096},
    ],
)
def test_configs_asking_for_a_huge_model_are_one_line_at_once(kwargs):
    import time

    start = time.perf_counter()
    with pytest.raises(wetok.ConfigError, match=r"parameters.*at most 2\*\*31") as info:
        TokenizerConfig(**kwargs)
    assert time.perf_counter() - start < 0.5 and "\n" not in str(info.value)


def test_the_largest_preset_fits_the_bound():
    from wetok.config import MAX_PARAMETERS

    assert max(p.parameter_count() for p in PRESETS.values()) < MAX_PARAMETERS


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("channels", "32", "channels must be a positive integer, got '32'"),
        ("channels", 32.0, "channels must be a positive integer, got 32.0"),
        ("channels", None, "channels must be a positive integer, got None"),
        ("channels", True, "channels must be a positive integer, got True"),
        ("channels", [32], r"channels must be a positive integer, got \[32\]"),
        ("channels", -32, "channels must be a positive integer, got -32"),
        ("groups", 2.5, "groups must be a positive integer, got 2.5"),
        ("num_res_blocks", "2", "num_res_blocks must be a positive integer"),
        ("latent_channels", {"a": 1}, "latent_channels must be a positive integer"),
        ("norm_groups", False, "norm_groups must be a positive integer"),
        ("in_channels", 3.5, "in_channels must be a positive integer"),
        ("generative", "yes", "generative must be true or false, got 'yes'"),
        ("generative", 1, "generative must be true or false, got 1"),
        ("generative", None, "generative must be true or false"),
        ("channel_mult", ["x", 2], r"channel_mult\[0\] must be a positive integer, got 'x'"),
        ("channel_mult", [1, [2]], r"channel_mult\[1\] must be a positive integer, got \[2\]"),
        ("channel_mult", [1, 2.0], r"channel_mult\[1\] must be a positive integer, got 2.0"),
        ("channel_mult", [1, None], r"channel_mult\[1\] must be a positive integer, got None"),
        ("channel_mult", [1, True], r"channel_mult\[1\] must be a positive integer, got True"),
        ("channel_mult", "12", "channel_mult must be a list of positive integers, got '12'"),
        ("channel_mult", 2, "channel_mult must be a list of positive integers, got 2"),
        ("channel_mult", None, "channel_mult must be a list"),
        ("channel_mult", [], "channel_mult must hold 1 to 16 levels"),
        ("channel_mult", [1] * 17, "channel_mult must hold 1 to 16 levels"),
        ("name", 5, "name must be a string or null"),
        ("hub", "GrayShine/WeTok", "hub must be a mapping"),
        ("hub", {"repo_id": 3, "filename": "x"}, "hub.repo_id must be a non-empty string"),
        ("hub", {"repo_id": "a", "filename": "x", "colour": 1}, "hub: unknown keys colour"),
    ],
)
def test_config_values_of_the_wrong_type_are_one_config_error(key, value, message):
    """Through the constructor and through `from_dict` (what a saved model's config.json feeds)."""
    with pytest.raises(wetok.ConfigError, match=message):
        TokenizerConfig(**{key: value})
    data = TokenizerConfig().to_dict()
    data[key] = value
    with pytest.raises(wetok.ConfigError, match=message) as info:
        TokenizerConfig.from_dict(data)
    assert "\n" not in str(info.value)


def test_numpy_integers_are_integers():
    import numpy as np

    config = TokenizerConfig(channels=np.int64(32), channel_mult=np.array([1, 2]), num_res_blocks=np.int32(1),
                             latent_channels=8, groups=2)
    assert config == TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8, groups=2)
    assert type(config.channels) is int and all(type(m) is int for m in config.channel_mult)


def test_first_width_must_fit_the_group_norms():
    # every level's width a multiple of 32, but the first block normalises `channels` = 16
    with pytest.raises(wetok.ConfigError, match=r"multiples of norm_groups \(32\), got channels = 16"):
        TokenizerConfig(channels=16, channel_mult=(2, 4))


@pytest.mark.parametrize("data", [[1, 2], "channels", 5, None])
def test_from_dict_needs_a_mapping(data):
    with pytest.raises(wetok.ConfigError, match="must be a mapping"):
        TokenizerConfig.from_dict(data)


def released_doc(**changes) -> dict:
    """A released-layout config (the tiny_d16 fixture's model section) with `changes`: keys
    `ddconfig.X` or `init_args.X` set to a value (None as a value; `...` deletes the key)."""
    doc = {"model": {"init_args": {
        "ddconfig": {"double_z": False, "z_channels": 32, "resolution": 128, "in_channels": 3, "out_ch": 3, "ch": 32,
                     "ch_mult": [1, 1, 2, 2, 2], "num_res_blocks": 2},
        "n_embed": 256, "embed_dim": 32, "num_codebooks": 4,
    }}}
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        target = doc["model"]["init_args"] if section == "init_args" else doc["model"]["init_args"]["ddconfig"]
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return doc


def test_released_dict_baseline():
    assert TokenizerConfig.from_released_dict(released_doc()) == TokenizerConfig(
        channels=32, channel_mult=(1, 1, 2, 2, 2), num_res_blocks=2, latent_channels=32, groups=4)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"ddconfig__ch": 1_000_000}, "parameters"),
        ({"ddconfig__ch": "32"}, "model.init_args.ddconfig.ch must be a positive integer, got '32'"),
        ({"ddconfig__ch": 32.5}, "ddconfig.ch must be a positive integer"),
        ({"ddconfig__ch": None}, "ddconfig.ch must be a positive integer, got None"),
        ({"ddconfig__ch": ...}, "missing 'ch'"),
        ({"ddconfig__ch_mult": ["x", 2]}, r"ddconfig.ch_mult\[0\] must be a positive integer, got 'x'"),
        ({"ddconfig__ch_mult": [[1], 2]}, r"ddconfig.ch_mult\[0\] must be a positive integer"),
        ({"ddconfig__ch_mult": 12}, "ddconfig.ch_mult must be a list"),
        ({"ddconfig__ch_mult": []}, "ddconfig.ch_mult must be a list"),
        ({"ddconfig__ch_mult": [1] * 40}, "ddconfig.ch_mult must hold 1 to 16 levels"),
        ({"ddconfig__num_res_blocks": 2.5}, "ddconfig.num_res_blocks must be a positive integer"),
        ({"ddconfig__num_res_blocks": 10**12}, "parameters"),
        ({"ddconfig__z_channels": True}, "ddconfig.z_channels must be a positive integer, got True"),
        ({"ddconfig__z_channels": 16}, "z_channels \\(16\\) differs from embed_dim \\(32\\)"),
        ({"ddconfig__out_ch": "3"}, "ddconfig.out_ch must be a positive integer"),
        ({"init_args__n_embed": "256"}, "init_args.n_embed must be a positive integer"),
        ({"init_args__n_embed": ...}, "missing 'n_embed'"),
        ({"init_args__num_codebooks": [4]}, "init_args.num_codebooks must be a positive integer"),
        ({"init_args__num_codebooks": 3}, "divisible by groups"),
        ({"init_args__embed_dim": 0}, "init_args.embed_dim must be a positive integer, got 0"),
        ({"init_args__gan_decoder": "yes"}, "gan_decoder must be true or false, got 'yes'"),
        ({"init_args__gan_decoder": 1}, "gan_decoder must be true or false"),
        ({"init_args__ddconfig": [1, 2]}, "ddconfig is not a mapping"),
    ],
)
def test_released_layout_with_wrong_values_is_one_config_error(changes, message):
    with pytest.raises(wetok.ConfigError, match=message) as info:
        TokenizerConfig.from_released_dict(released_doc(**changes))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("doc", [None, [], "model", {"model": None}, {"model": [1]}, {"model": {"init_args": "x"}}, {"model": {}}])
def test_released_layout_of_the_wrong_shape(doc):
    with pytest.raises(wetok.ConfigError, match="not a WeTok model config"):
        TokenizerConfig.from_released_dict(doc)


def test_released_yaml_file_errors_name_the_file_and_key(tmp_path):
    import yaml

    path = tmp_path / "forged.yaml"
    path.write_text(yaml.safe_dump(released_doc(ddconfig__ch=1_000_000)))
    with pytest.raises(wetok.ConfigError, match=r"forged.yaml: this configuration describes a model of .* parameters"):
        TokenizerConfig.from_released_yaml(path)
    path.write_text(yaml.safe_dump(released_doc(ddconfig__ch_mult=["x", 2])))
    with pytest.raises(wetok.ConfigError, match=r"forged.yaml: model.init_args.ddconfig.ch_mult\[0\]"):
        TokenizerConfig.from_released_yaml(path)
    path.write_text("model:\n  init_args:\n    n_embed: " + "9" * 5000 + "\n")
    with pytest.raises(wetok.ConfigError, match="forged.yaml"):
        TokenizerConfig.from_released_yaml(path)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(wetok.ConfigError, match="forged.yaml"):
        TokenizerConfig.from_released_yaml(path)


def test_config_files_that_are_not_small_regular_files_are_refused_unread(tmp_path):
    import os

    from wetok.config import MAX_CONFIG_BYTES

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(wetok.ConfigError, match="pipe.yaml: cannot read config: is a named pipe"):
        TokenizerConfig.from_released_yaml(fifo)
    with pytest.raises(wetok.ConfigError, match="cannot read config: is a"):
        TokenizerConfig.from_released_yaml("/dev/zero")
    with pytest.raises(wetok.ConfigError, match="cannot read config: is a directory"):
        TokenizerConfig.from_released_yaml(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(wetok.ConfigError, match="big.yaml: .* larger than a config file can be"):
        TokenizerConfig.from_released_yaml(big)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(wetok.ConfigError, match="binary.yaml: not a text config file"):
        TokenizerConfig.from_released_yaml(tmp_path / "binary.yaml")


@pytest.mark.parametrize(
    "model, message",
    [
        ({"channels": 1_000_000}, "parameters"),
        ({"channels": "32"}, "model.channels: expected an integer"),
        ({"channel_mult": ["x", 2]}, r"model.channel_mult\[0\]: expected an integer"),
        ({"groups": 2.5}, "model.groups: expected an integer"),
        ({"num_res_blocks": 10**9}, "parameters"),
    ],
)
def test_training_configs_model_section_is_checked_the_same_way(model, message):
    from wetok.training.config import TrainConfig

    with pytest.raises(wetok.ConfigError, match=message):
        TrainConfig.from_dict({"model": model}).tokenizer_config()


def _junk(rng):
    return [None, True, False, 0, -1, 2.5, "32", "", [], [1, "x"], [[1]], {"a": 1}, 2**40, 10**300, float("nan"),
            int(rng.integers(1, 5000)), [int(rng.integers(1, 9)) for _ in range(int(rng.integers(0, 20)))]][int(rng.integers(0, 17))]


def test_fuzzed_configs_are_a_config_or_one_config_error():
    """Seeded random values in every field of `from_dict` and of the released layout: a config
    (of at most 2**31 parameters) or a one-line `ConfigError`, never another exception."""
    import numpy as np

    from wetok.config import MAX_PARAMETERS

    rng = np.random.default_rng(7)
    base = TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8, groups=2).to_dict()
    outcomes = {"config": 0, "error": 0}
    for _ in range(1500):
        data = dict(base)
        for _ in range(int(rng.integers(1, 3))):
            data[list(base)[int(rng.integers(0, len(base)))]] = _junk(rng)
        try:
            config = TokenizerConfig.from_dict(data)
            assert config.parameter_count() <= MAX_PARAMETERS
            outcomes["config"] += 1
        except wetok.ConfigError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    for _ in range(1500):
        doc = released_doc()
        for _ in range(int(rng.integers(1, 3))):
            args = doc["model"]["init_args"]
            section = args if rng.random() < 0.4 or not isinstance(args["ddconfig"], dict) else args["ddconfig"]
            section[list(section)[int(rng.integers(0, len(section)))]] = _junk(rng)
        try:
            TokenizerConfig.from_released_dict(doc)
            outcomes["config"] += 1
        except wetok.ConfigError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["config"] > 50 and outcomes["error"] > 2000, outcomes
