"""Loading and saving generators: wetok's directories (tokenizer included, referenced or absent),
released checkpoints without their YAML, and hostile or mismatched files refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support import listing, make_generator
from wetok import ar
from wetok import load as load_tokenizer
from wetok.ar.config import TransformerConfig
from wetok.ar.weights import matching_preset
from wetok.errors import CheckpointError, ConfigError, WetokError


def _logits(model: ar.Transformer) -> torch.Tensor:
    cfg = model.config
    tokens = torch.randint(0, cfg.vocab_size, (2, cfg.positions, cfg.groups), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(tokens, torch.tensor([0, 4]))


def test_save_and_load_round_trip_with_the_tokenizer_included(tmp_path: Path):
    model = make_generator()
    ar.save(model, tmp_path / "g")
    assert listing(tmp_path / "g") == ["config.json", "model.safetensors", "tokenizer/config.json", "tokenizer/model.safetensors"]
    again = ar.load(tmp_path / "g")
    assert again.config == model.config and not again.training
    assert torch.equal(_logits(again), _logits(model))
    assert again.tokenizer is not None and again.tokenizer.config == model.tokenizer.config
    tokens = ar.generate(model, [1, 2], seeds=[0, 1])
    assert torch.equal(again.tokenizer.decode(tokens), model.tokenizer.decode(tokens))


def test_a_referenced_tokenizer_is_loaded_from_its_path_relative_to_the_directory(tmp_path: Path):
    model = make_generator()
    model.tokenizer.save(tmp_path / "tok")
    ar.save(model, tmp_path / "g", tokenizer_source="../tok")
    assert json.loads((tmp_path / "g" / "config.json").read_text())["tokenizer"] == {"source": "../tok"}
    assert not (tmp_path / "g" / "tokenizer").exists()
    again = ar.load(tmp_path / "g")
    assert again.tokenizer is not None and again.tokenizer.config == model.tokenizer.config


def test_a_generator_without_a_tokenizer_and_one_given_at_load(tmp_path: Path):
    model = make_generator()
    tokenizer = model.tokenizer
    model.attach_tokenizer(None)
    ar.save(model, tmp_path / "g")
    assert ar.load(tmp_path / "g").tokenizer is None
    tokenizer.save(tmp_path / "tok")
    assert ar.load(tmp_path / "g", tokenizer=tmp_path / "tok").tokenizer.config == tokenizer.config
    assert ar.load(tmp_path / "g", tokenizer=load_tokenizer(tmp_path / "tok")).tokenizer is not None


def test_a_tokenizer_with_other_groups_is_refused(tmp_path: Path):
    from support import TINY, make_model_dir
    from wetok import TokenizerConfig

    model = make_generator()
    ar.save(model, tmp_path / "g")
    make_model_dir(tmp_path / "fits", TINY)  # 2 groups of 4 bits, like the generator
    assert ar.load(tmp_path / "g", tokenizer=tmp_path / "fits").tokenizer.config == TINY
    make_model_dir(tmp_path / "other", TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=12, groups=3))
    with pytest.raises(CheckpointError, match="3 groups of 4 bits; the generator predicts 2 sub-tokens of 4 bits"):
        ar.load(tmp_path / "g", tokenizer=tmp_path / "other")


def _released_file(path: Path, model: ar.Transformer, *, with_tokenizer: bool = True) -> Path:
    state = {f"transformer.{k}": v for k, v in model.transformer_state_dict().items()}
    if with_tokenizer:
        state.update({f"first_stage_model.{k}": v for k, v in model.tokenizer.state_dict().items()})
    torch.save({"state_dict": state, "epoch": 1, "global_step": 2}, path)
    return path


def test_a_released_layout_file_loads_with_params_of_each_kind(tmp_path: Path):
    model = make_generator()
    path = _released_file(tmp_path / "g.ckpt", model)
    params = model.config.to_released_params()
    for given in (params, model.config):
        loaded = ar.load(path, given)
        assert torch.equal(_logits(loaded), _logits(model))
        assert loaded.tokenizer is not None and loaded.tokenizer.config.groups == 2
    yaml_path = tmp_path / "g.yaml"
    yaml_path.write_text(json.dumps({"model": {"init_args": {"transformer_config": {"params": params}}}}))  # JSON is YAML
    assert ar.load(path, yaml_path).config == model.config
    assert ar.load(_released_file(tmp_path / "bare.ckpt", model, with_tokenizer=False), params).tokenizer is None


def test_without_params_only_a_preset_shaped_file_loads(tmp_path: Path):
    model = make_generator()
    path = _released_file(tmp_path / "g.ckpt", model)
    with pytest.raises(CheckpointError, match="match no generator preset"):
        ar.load(path)
    with torch.device("meta"):
        b = ar.Transformer(ar.PRESETS["B"])
    assert matching_preset(b.state_dict()) == ar.PRESETS["B"]
    assert matching_preset(model.transformer_state_dict()) is None


def test_bad_files_are_refused_in_one_line(tmp_path: Path):
    model = make_generator()
    params = model.config.to_released_params()
    tokenizer_only = tmp_path / "tok.ckpt"
    torch.save({"state_dict": model.tokenizer.state_dict()}, tokenizer_only)
    with pytest.raises(CheckpointError, match="no transformer.\\* weights"):
        ar.load(tokenizer_only, params)
    path = _released_file(tmp_path / "g.ckpt", model)
    wrong = {**params, "dim": 64, "n_head": 4}
    with pytest.raises(CheckpointError, match="mis-shaped"):
        ar.load(path, wrong)
    (tmp_path / "trunc.ckpt").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt|not a readable PyTorch checkpoint"):
        ar.load(tmp_path / "trunc.ckpt", params)

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"state_dict": {}, "x": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="arbitrary unpickling"):
        ar.load(tmp_path / "evil.ckpt", params)
    with pytest.raises(CheckpointError, match="no such file"):
        ar.load(tmp_path / "missing.ckpt")
    with pytest.raises(ConfigError, match="keys the original GPT does not take: bogus"):
        ar.load(path, {**params, "bogus": 1})


def test_a_forged_saved_config_is_refused_before_anything_is_allocated(tmp_path: Path):
    model = make_generator()
    ar.save(model, tmp_path / "g")
    meta_path = tmp_path / "g" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["dim"] = 2**20
    meta["config"]["spatial_layers"] = 10**6
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="parameters; at most"):
        ar.load(tmp_path / "g")
    meta_path.write_text(json.dumps({"format": "wetok", "version": 1, "config": {}}))
    with pytest.raises(CheckpointError, match="not a wetok-ar model config \\(it holds a 'wetok' model\\)"):
        ar.load(tmp_path / "g")
    with pytest.raises(WetokError, match="carries its configuration"):
        ar.load(tmp_path, {"block_size": 16})


def test_parameter_counts_are_exact():
    for config in (make_generator().config, TransformerConfig(grid_size=2, groups=3, bits_per_group=2, dim=16, heads=2, kv_heads=1,
                                                                   spatial_layers=1, factorized_layers=1, num_classes=3)):
        assert config.parameter_count() == sum(p.numel() for p in ar.Transformer(config).parameters())
    for name, config in ar.PRESETS.items():
        with torch.device("meta"):
            built = ar.Transformer(config)
        assert config.parameter_count() == sum(p.numel() for p in built.parameters()), name
    assert [round(c.parameter_count() / 1e6, 1) for c in ar.PRESETS.values()] == [337.1, 796.3, 1477.0]
