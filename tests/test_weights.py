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


# ---- model files checked before anything is allocated (issue 17: #6, #7) ----------------------
def released_layout(model: wetok.Tokenizer, transform=lambda name, tensor: tensor) -> dict:
    """A released-layout checkpoint of `model`'s weights (raw and EMA copies), each tensor
    passed through `transform(name, tensor)`."""
    state = {}
    for name, tensor in model.state_dict().items():
        state[name] = transform(name, tensor)
        state[ema_key(name)] = transform(name, tensor)
    return {"state_dict": state}


def meta_model(config: wetok.TokenizerConfig) -> wetok.Tokenizer:
    with torch.device("meta"):
        return wetok.Tokenizer(config)


@pytest.fixture
def built_models(monkeypatch) -> list[bool]:
    """Every Tokenizer that `wetok.weights` builds, as True when on the meta device (nothing allocated)."""
    import wetok.weights

    built: list[bool] = []

    class Spy(wetok.weights.Tokenizer):
        def __init__(self, config):
            super().__init__(config)
            built.append(next(self.parameters()).is_meta)

    monkeypatch.setattr(wetok.weights, "Tokenizer", Spy)
    return built


def _refused(path, match, **kwargs) -> str:
    import time

    start = time.perf_counter()
    with pytest.raises(wetok.CheckpointError, match=match) as info:
        wetok.load(path, **kwargs)
    assert time.perf_counter() - start < 2, "a forged file must fail fast"
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


FORGED_TENSORS = {
    "empty": (lambda name, t: torch.empty(0), "mis-shaped"),
    "one value": (lambda name, t: torch.zeros(1), "mis-shaped"),
    "transposed": (lambda name, t: t.reshape(-1).flip(0).reshape(*reversed(t.shape)) if t.dim() > 1 and len(set(t.shape)) > 1 else torch.zeros(2, 2, 2, 2, 2), "mis-shaped"),
    "int64": (lambda name, t: torch.zeros(t.shape, dtype=torch.int64), "is int64, not floating point"),
    "bool": (lambda name, t: torch.zeros(t.shape, dtype=torch.bool), "is bool, not floating point"),
    "complex": (lambda name, t: torch.zeros(t.shape, dtype=torch.complex64), "is complex64, not floating point"),
    "meta": (lambda name, t: torch.empty(t.shape, device="meta"), "holds no data"),
    "expanded": (lambda name, t: torch.zeros(1).expand(t.shape), "an expanded or forged view"),
}


@pytest.mark.parametrize("kind", list(FORGED_TENSORS))
@pytest.mark.parametrize("with_config", [True, False], ids=["config", "inferred"])
def test_forged_tensors_are_refused_before_a_model_is_built(tmp_path, built_models, kind, with_config):
    transform, match = FORGED_TENSORS[kind]
    path = tmp_path / f"{kind}.ckpt"
    torch.save(released_layout(meta_model(SMALL) if kind != "transposed" else wetok.Tokenizer(SMALL), transform), path)
    built_models.clear()
    if with_config:
        _refused(path, match, config=SMALL)
    else:  # the architecture is read off the forged shapes: refused there or when loading
        _refused(path, "do not describe|" + match)
    assert not any(on_meta is False for on_meta in built_models)


def test_three_kilobyte_file_for_the_largest_preset_fails_fast(tmp_path, built_models):
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.empty(0), "decoder.conv_in.weight": torch.empty(0)}}, path)
    assert path.stat().st_size < 3000
    _refused(path, "no EMA weights", config="general-cr768")
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.empty(0), ema_key("encoder.conv_in.weight"): torch.empty(0)}}, path)
    message = _refused(path, "mis-shaped", config="general-cr768")
    assert "missing" in message
    _refused(path, "do not describe a WeTok encoder/decoder")
    assert built_models and all(built_models)  # meta models for the config given, nothing real


def test_shapes_implying_a_huge_model_are_refused_from_the_shapes(tmp_path, built_models):
    channels = 1_000_000 // 32 * 32  # a 10 KB file whose shapes say channels 999,968 (4.7e14 parameters)
    state = {"encoder.conv_in.weight": torch.zeros(1).expand(channels, 3, 3, 3)}
    for level, key in enumerate(("encoder.down.0.block.0.conv2.weight", "encoder.down.1.block.0.conv2.weight")):
        state[key] = torch.zeros(1).expand(channels * (level + 1), 1, 1, 1)
    state["encoder.conv_out.weight"] = torch.zeros(16, 1, 1, 1)
    state["decoder.conv_in.weight"] = torch.zeros(1, 16, 3, 3)
    state["decoder.conv_out.weight"] = torch.zeros(3, 1, 3, 3)
    path = tmp_path / "huge.ckpt"
    torch.save({"state_dict": state}, path)
    _refused(path, "parameters.*at most 2\\*\\*31", weights="raw")
    assert built_models == []


def test_saved_model_with_a_forged_config_is_refused_before_allocating(tmp_path, built_models):
    import json

    directory = wetok.Tokenizer(SMALL).save(tmp_path / "m")
    meta = json.loads((directory / "config.json").read_text())
    for changes, match in [
        ({"channels": 1_000_000}, "config.json: config: this configuration describes a model of"),
        ({"channels": 512}, "mis-shaped"),
        ({**wetok.PRESETS["general-cr768"].to_dict(), "name": None, "hub": None}, "mis-shaped"),
        ({"num_res_blocks": 10**9}, "parameters"),
    ]:
        (directory / "config.json").write_text(json.dumps({**meta, "config": {**meta["config"], **changes}}))
        built_models.clear()
        _refused(directory, match)
        assert not any(on_meta is False for on_meta in built_models)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m["config"].update(channel_mult=["x", 2]), r"config.json: config: channel_mult\[0\] must be a positive integer, got 'x'"),
        (lambda m: m["config"].update(channel_mult=[[1, 2]]), r"channel_mult\[0\] must be a positive integer, got \[1, 2\]"),
        (lambda m: m["config"].update(channel_mult=None), "channel_mult must be a list"),
        (lambda m: m["config"].update(channel_mult=12), "channel_mult must be a list"),
        (lambda m: m["config"].update(channels="32"), "channels must be a positive integer, got '32'"),
        (lambda m: m["config"].update(channels=32.0), "channels must be a positive integer, got 32.0"),
        (lambda m: m["config"].update(channels=None), "channels must be a positive integer, got None"),
        (lambda m: m["config"].update(channels=True), "channels must be a positive integer, got True"),
        (lambda m: m["config"].update(groups=2.5), "groups must be a positive integer, got 2.5"),
        (lambda m: m["config"].update(latent_channels=[16]), "latent_channels must be a positive integer"),
        (lambda m: m["config"].update(norm_groups={"n": 32}), "norm_groups must be a positive integer"),
        (lambda m: m["config"].update(generative="yes"), "generative must be true or false, got 'yes'"),
        (lambda m: m["config"].update(generative=0), "generative must be true or false, got 0"),
        (lambda m: m["config"].update(hub={"repo_id": ["a"], "filename": "f"}), "hub.repo_id must be a non-empty string"),
        (lambda m: m["config"].update(colour="red"), "unknown tokenizer config keys: colour"),
        (lambda m: m.update(version="abc"), "config.json: 'version' must be a positive integer, got 'abc'"),
        (lambda m: m.update(version=1.5), "'version' must be a positive integer, got 1.5"),
        (lambda m: m.update(version=True), "'version' must be a positive integer, got True"),
        (lambda m: m.update(version=None), "'version' must be a positive integer, got None"),
        (lambda m: m.update(version=2), "written by a newer wetok"),
        (lambda m: m.update(config=[1, 2]), "'config' must be an object"),
        (lambda m: m.update(config=None), "'config' must be an object"),
        (lambda m: m.update(format=["wetok"]), "not a wetok model config"),
    ],
)
def test_saved_config_with_wrong_types_is_one_line_naming_file_and_key(tmp_path, edit, match):
    import json

    directory = wetok.Tokenizer(SMALL).save(tmp_path / "m")
    meta = json.loads((directory / "config.json").read_text())
    edit(meta)
    (directory / "config.json").write_text(json.dumps(meta))
    message = _refused(directory, match)
    assert "config.json" in message


@pytest.mark.parametrize(
    "text, match",
    [
        ("[" * 200_000 + "]" * 200_000, "unreadable model config"),
        ('{"format": "wetok", "version": ' + "9" * 5000 + ', "config": {}}', "unreadable model config"),
        ("\xff", "unreadable model config"),
    ],
)
def test_saved_config_that_cannot_be_parsed(tmp_path, text, match):
    directory = wetok.Tokenizer(SMALL).save(tmp_path / "m")
    (directory / "config.json").write_text(text)
    _refused(directory, match)


def test_model_files_that_are_not_small_regular_files_are_refused_unread(tmp_path):
    from wetok.config import MAX_CONFIG_BYTES

    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)  # opening it for reading would block
    _refused(fifo, "only regular files are read")
    directory = wetok.Tokenizer(SMALL).save(tmp_path / "m")
    (directory / "config.json").unlink()
    os.mkfifo(directory / "config.json")
    _refused(directory, "config.json: cannot read config: is a named pipe")
    (directory / "config.json").unlink()
    (directory / "config.json").write_text(" " * (MAX_CONFIG_BYTES + 1))
    _refused(directory, "larger than a config file can be")


def test_legitimate_variants_still_load(tmp_path):
    """Half-precision files are converted; a file whose tensors share storage (one tensor saved
    under several keys, slices of one buffer) gives every parameter its own memory."""
    torch.manual_seed(0)
    model = wetok.Tokenizer(SMALL)
    half = tmp_path / "half.ckpt"
    torch.save(released_layout(model, lambda name, t: t.half()), half)
    loaded = wetok.load(half, config=SMALL)
    assert loaded.dtype == torch.float32
    for name, tensor in model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[name], tensor.half().float())
    # every tensor a slice of one flat buffer, EMA and raw the same objects
    flat = torch.cat([t.reshape(-1) for t in model.state_dict().values()])
    views, offset = {}, 0
    for name, tensor in model.state_dict().items():
        views[name] = flat[offset : offset + tensor.numel()].view(tensor.shape)
        offset += tensor.numel()
    shared = tmp_path / "shared.ckpt"
    torch.save({"state_dict": {**views, **{ema_key(k): v for k, v in views.items()}}}, shared)
    loaded = wetok.load(shared, config=SMALL)
    pointers = [p.data_ptr() for p in loaded.parameters()]
    assert len(set(pointers)) == len(pointers)
    for p in loaded.parameters():
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size() and p.requires_grad
    with torch.no_grad():
        next(loaded.parameters()).add_(1)  # in place: touches one parameter only
    assert torch.equal(loaded.state_dict()["decoder.conv_out.weight"], model.state_dict()["decoder.conv_out.weight"])
    images = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(wetok.load(shared, config=SMALL, weights="raw").reconstruct(images), model.reconstruct(images))


MEMORY_SCRIPT = """
import resource, sys, time, json
from pathlib import Path
import torch, wetok
from wetok.weights import ema_key

root = Path(sys.argv[1])
big = wetok.PRESETS["general-cr768"]  # 1.67e9 parameters: 6.7 GB if it were allocated
with torch.device("meta"):
    names = {k: tuple(v.shape) for k, v in wetok.Tokenizer(big).state_dict().items()}
expanded = {key: torch.zeros(1).expand(s) for k, s in names.items() for key in (k, ema_key(k))}
torch.save({"state_dict": expanded}, root / "expanded.ckpt")
torch.save({"state_dict": {key: torch.empty(0) for k in names for key in (k, ema_key(k))}}, root / "empty.ckpt")
small = wetok.TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=16, groups=2)
directory = wetok.Tokenizer(small).save(root / "saved")
meta = json.loads((directory / "config.json").read_text())
meta["config"] = {**big.to_dict(), "name": None, "hub": None}
(directory / "config.json").write_text(json.dumps(meta))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for source, config in [(root / "expanded.ckpt", "general-cr768"), (root / "empty.ckpt", "general-cr768"), (directory, None)]:
    start = time.perf_counter()
    try:
        wetok.load(source, config=config)
        print("LOADED", source)
    except wetok.CheckpointError as exc:
        print("REFUSED", round(time.perf_counter() - start, 2), str(exc)[:300])
print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_forged_files_for_a_huge_model_stay_small_in_memory(tmp_path):
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    refused = [line for line in lines if line.startswith("REFUSED")]
    assert len(refused) == 3, result.stdout
    assert all(float(line.split()[1]) < 2 for line in refused), result.stdout
    assert "an expanded or forged view" in refused[0] and "mis-shaped" in refused[1] and "mis-shaped" in refused[2]
    assert int(lines[-1].split()[1]) < 200, result.stdout  # MB of peak memory growth


def test_zip_checkpoint_that_is_a_decompression_bomb_is_refused_unread(tmp_path):
    """torch.save stores its entries uncompressed; a forged archive whose one storage inflates
    from kilobytes to 64 MiB is refused from the archive's directory, before torch reads it."""
    import zipfile

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"encoder.w": torch.zeros(1)}}, plain)
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w") as out:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("/data/0"):
                out.writestr(zipfile.ZipInfo(name), b"\0" * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                out.writestr(zipfile.ZipInfo(name), data)
    assert bomb.stat().st_size < 200_000
    message = _refused(bomb, "decompression bomb")
    assert "claim" in message
    with pytest.raises(wetok.CheckpointError, match="decompression bomb"):
        read_torch_file(bomb)
