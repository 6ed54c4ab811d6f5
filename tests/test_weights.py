"""Checkpoint files: safe loading, EMA/raw selection, clear errors, wetok's own format."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import pytest
import torch

import wetok
from wetok.weights import ema_key, read_torch_file

SMALL = wetok.TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=16, groups=2)


class _RunsCode:
    """Pickles to a call of os.system: loading it would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(wetok.UnsafeCheckpointError, match="arbitrary unpickling.*trust_pickle=True"):
        wetok.load(path)
    with pytest.raises(wetok.UnsafeCheckpointError):
        read_torch_file(path)
    assert not marker.exists()


def test_trust_pickle_opt_in(tmp_path, reference):
    state = torch.load(reference / "tiny_d16.ckpt", weights_only=True)
    state["hparams"] = argparse.Namespace(lr=1e-4)  # not on torch's allow-list
    path = tmp_path / "pickled.ckpt"
    torch.save(state, path)
    with pytest.raises(wetok.UnsafeCheckpointError, match="argparse.Namespace"):
        wetok.load(path, config=reference / "tiny_d16.yaml")
    model = wetok.load(path, config=reference / "tiny_d16.yaml", trust_pickle=True)
    assert model.config.downsample == 16


def test_wrong_architecture_is_one_clear_error(reference):
    with pytest.raises(wetok.CheckpointError) as info:
        wetok.load(reference / "tiny_d16.ckpt", config=reference / "tiny_d8_g8.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert "mis-shaped" in message and "missing" in message and "unexpected" in message
    assert "The file implies d16, ch 32 x (1,1,2,2,2), 2 res blocks, 32 bits" in message
    assert "the model is d8" in message


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"hello world\n", "unrecognised file header"),
    ],
)
def test_non_checkpoint_files(tmp_path, content, message):
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    with pytest.raises(wetok.CheckpointError, match=message):
        wetok.load(path)


@pytest.mark.parametrize("fraction", [0.5, 0.01])
def test_truncated_checkpoint(tmp_path, reference, fraction):
    data = (reference / "tiny_d16.ckpt").read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(wetok.CheckpointError, match="truncated or corrupt"):
        wetok.load(path, config=reference / "tiny_d16.yaml")


def test_missing_source():
    with pytest.raises(wetok.CheckpointError, match="no such file, directory or preset"):
        wetok.load("/nonexistent/model.ckpt")


def test_not_a_tokenizer_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"transformer.w": torch.zeros(2)}}, path)
    with pytest.raises(wetok.CheckpointError, match="not a WeTok tokenizer checkpoint"):
        wetok.load(path)


def test_ema_and_raw_weights_differ_and_loss_keys_ignored(reference):
    state = torch.load(reference / "tiny_d8_g8.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("loss.discriminator") for k in state)
    ema = wetok.load(reference / "tiny_d8_g8.ckpt", config=reference / "tiny_d8_g8.yaml")
    raw = wetok.load(reference / "tiny_d8_g8.ckpt", config=reference / "tiny_d8_g8.yaml", weights="raw")
    name = "encoder.conv_in.weight"
    assert torch.equal(ema.state_dict()[name], state[ema_key(name)])
    assert torch.equal(raw.state_dict()[name], state[name])
    assert not torch.equal(state[name], state[ema_key(name)])


def test_raw_only_file_asks_for_raw(tmp_path, reference):
    state = torch.load(reference / "tiny_d16.ckpt", weights_only=True)
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith("model_ema.")}
    path = tmp_path / "raw.ckpt"
    torch.save(state, path)
    with pytest.raises(wetok.CheckpointError, match="no EMA weights.*weights='raw'"):
        wetok.load(path, config=reference / "tiny_d16.yaml")
    assert wetok.load(path, config=reference / "tiny_d16.yaml", weights="raw").config.downsample == 16


def test_bare_state_dict_and_preset_config(tmp_path):
    torch.manual_seed(0)
    model = wetok.Tokenizer(SMALL)
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    loaded = wetok.load(path, weights="raw", config=SMALL)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_save_load_identical_outputs(tmp_path, reference, expected):
    model = wetok.load(reference / "tiny_gd_d32.ckpt", config=reference / "tiny_gd_d32.yaml")
    out_dir = model.save(tmp_path / "saved")
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors"]
    again = wetok.load(out_dir)
    assert again.config == model.config
    image = expected("tiny_gd_d32")["image"]
    tokens = model.encode(image)
    assert torch.equal(again.encode(image), tokens)
    noise = torch.randn(2, 32, 2, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.decode(tokens, noise=noise), model.decode(tokens, noise=noise))
    # saving again over the same directory leaves no temporary files behind
    model.save(out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors"]


def test_saved_directory_errors(tmp_path):
    model = wetok.Tokenizer(SMALL)
    directory = model.save(tmp_path / "m")
    (directory / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes()[:100])
    with pytest.raises(wetok.CheckpointError, match="truncated or corrupt weights"):
        wetok.load(directory)
    (tmp_path / "empty").mkdir()
    with pytest.raises(wetok.CheckpointError, match="no config.json"):
        wetok.load(tmp_path / "empty")
    (directory / "config.json").write_text("{not json")
    with pytest.raises(wetok.CheckpointError, match="unreadable model config"):
        wetok.load(directory)


def test_default_model_missing_is_clear(no_default_model):
    assert not wetok.default_model_available()
    with pytest.raises(wetok.CheckpointError, match="no default model"):
        wetok.load()


def _populate_hub_cache(hf_home, repo_id, filename, source):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    target = repo_dir / "snapshots" / commit / filename
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


HUB_SCRIPT = """
import sys, torch, wetok, wetok.weights as loader
from wetok.config import HubWeights
from dataclasses import replace
cfg = wetok.TokenizerConfig.from_released_yaml(sys.argv[1])
loader.PRESETS = {**wetok.PRESETS, "tiny-d16": replace(cfg, name="tiny-d16", hub=HubWeights("GrayShine/WeTok", "Tiny/downsample16/WeTok.ckpt"))}
model = wetok.load("tiny-d16")
print(model.config.name, model.encode(torch.zeros(1, 3, 32, 32)).shape)
try:
    wetok.load("imagenet-d16")
except wetok.WeightsNotFoundError as exc:
    print("ERROR", exc)
"""


def test_preset_from_offline_hub_cache(tmp_path, reference):
    _populate_hub_cache(tmp_path, "GrayShine/WeTok", "Tiny/downsample16/WeTok.ckpt", reference / "tiny_d16.ckpt")
    env = dict(os.environ, HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, str(reference / "tiny_d16.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "tiny-d16 torch.Size([1, 2, 2, 4])"
    assert lines[1].startswith("ERROR released weights for imagenet-d16 (GrayShine/WeTok/ImageNet/downsample16/WeTok.ckpt)")
    assert "huggingface-cli download GrayShine/WeTok ImageNet/downsample16/WeTok.ckpt" in lines[1]


def test_preset_without_network_fails_at_once(tmp_path, monkeypatch):
    """No cache and a Hub host that does not resolve: a clear error without huggingface_hub's
    retries (which wait about 25 s on a machine without network)."""
    import socket

    import huggingface_hub

    from wetok.weights import hub_weights_path

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(wetok.WeightsNotFoundError) as info:
        hub_weights_path(wetok.PRESETS["imagenet-d16"])
    message = str(info.value)
    assert "cannot resolve huggingface.co: Name or service not known" in message
    assert "huggingface-cli download GrayShine/WeTok ImageNet/downsample16/WeTok.ckpt" in message
