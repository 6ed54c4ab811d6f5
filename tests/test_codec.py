"""codec: image sizing, encoding to token sets, decoding them back with the model a file names, the seeding rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from support import CASES, TINY, TINY_GD, make_model_dir, photo, require_reference
from wetok.codec import Codec, pack
from wetok.errors import WetokError
from wetok.execution import Execution
from wetok.images import CropBox, resize_shorter_center_crop, save_image, stretch_resize
from wetok.tokenizer import seeded_noise
from wetok.tokens import write_tokens

RECON_TOL = 1e-4


@pytest.mark.parametrize("case", CASES)
def test_fixture_token_files_decode_to_the_fixture_reconstruction(case):
    ref = require_reference()
    exp = torch.load(ref / f"{case}_expected.pt", weights_only=True)
    model, tokens = Codec().open_tokens(ref / f"{case}_tokens.json")
    noise = exp["ema_noise"][0:1] if "ema_noise" in exp else None
    pictures = wetok.crop(model.decode(tokens.tokens, noise=noise), tokens.crop)
    want = exp["ema_recon"][0:1].clamp(-1, 1)
    assert pictures.shape == want.shape
    assert (pictures - want).abs().max().item() < RECON_TOL


def test_gd_decoding_without_the_fixture_noise_differs_and_seed_is_reproducible():
    ref = require_reference()
    exp = torch.load(ref / "tiny_gd_d32_expected.pt", weights_only=True)
    model, tokens = Codec().open_tokens(ref / "tiny_gd_d32_tokens.json")
    a = Codec(model, seed=1).decode(tokens)
    b = Codec(model, seed=1).decode(tokens)
    c = Codec(model, seed=2).decode(tokens)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    assert (a - exp["ema_recon"][0:1].clamp(-1, 1)).abs().max() > 1e-3


def _sized(size: int, resize: str = "crop", f: int = 4) -> Codec:
    config = TINY if f == 4 else wetok.TokenizerConfig(channels=32, channel_mult=(1,) * 5, num_res_blocks=1, latent_channels=8, groups=2)
    return Codec(wetok.Tokenizer(config), size=size, resize=resize)  # type: ignore[arg-type]


def test_size_policies():
    image = Image.fromarray(photo(50, 80))
    crop = _sized(32, "crop").prepare(image, "x")
    want = torch.from_numpy(resize_shorter_center_crop(np.asarray(image), 32)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(crop.pixels[0], want) and crop.crop == CropBox(0, 0, 32, 32) and crop.original_size == (50, 80)
    stretch = _sized(32, "stretch").prepare(image, "x")
    want = torch.from_numpy(np.array(stretch_resize(np.asarray(image), 32))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(stretch.pixels[0], want)
    own = _sized(0, f=16).prepare(image, "x")
    assert own.shape == (64, 80) and own.crop == CropBox(7, 0, 50, 80)
    odd = _sized(30).prepare(image, "x")
    assert odd.shape == (32, 32) and odd.crop == CropBox(1, 1, 30, 30)


def test_image_smaller_than_one_token_is_refused():
    with pytest.raises(WetokError, match=r"tiny.png: image 3x5 is smaller than one token \(4x4 pixels\)"):
        _sized(0).prepare(Image.fromarray(photo(5, 3)), "tiny.png")
    with pytest.raises(WetokError, match="--size 2 is smaller than one token"):
        _sized(2).prepare(Image.fromarray(photo(50, 50)), "x")


@pytest.mark.parametrize("config", [TINY, TINY_GD], ids=["plain", "generative"])
def test_own_resolution_roundtrip_matches_reconstruct(tmp_path, config):
    directory = make_model_dir(tmp_path / "m", config)
    codec = Codec(wetok.load(directory), size=0)
    image = codec.prepare(Image.fromarray(photo(21, 30)), "x")
    (tokens,) = codec.encode_prepared([image])
    noise = seeded_noise((config.latent_channels, *tokens.grid), [0]) if config.generative else None
    pictures = codec.decode(tokens)
    assert pictures.shape == (1, 3, 21, 30)
    original = image.pixels[:, :, image.crop.top : image.crop.top + 21, image.crop.left : image.crop.left + 30]
    direct = codec.model.reconstruct(original, noise=noise)
    assert (pictures - direct).abs().max().item() < 1e-5


def test_decoding_with_another_architecture_is_a_clear_error(tmp_path):
    one = make_model_dir(tmp_path / "one", TINY)
    other = make_model_dir(tmp_path / "other", TINY_GD)
    tokens = Codec(wetok.load(one), size=0).encode(Image.fromarray(photo(16, 16)))
    path = write_tokens(tmp_path / "t.wtok", tokens)
    with pytest.raises(WetokError, match=r"t.wtok: tokens were made by one \(architecture [0-9a-f]{16}\), but the model is"):
        Codec(wetok.load(other)).open_tokens(path)
    # Without an override, the weights named in the file are found beside it.
    model, _ = Codec().open_tokens(path)
    assert model.identity.weights_file == "one"
    (tmp_path / "one").rename(tmp_path / "moved")
    with pytest.raises(WetokError, match="made with weights 'one'.*not found"):
        Codec().open_tokens(path)


def test_seeding_rule_image_i_of_a_run_gets_seed_plus_i(tmp_path):
    """Whatever the batching: image i of a decode gets noise from seed + i."""
    model = wetok.load(make_model_dir(tmp_path / "gd", TINY_GD))
    codec = Codec(model, size=16, seed=7)
    sets = [codec.encode(Image.fromarray(photo(16, 16, seed=k))) for k in range(3)]
    together = codec.decode(pack(sets))
    for i, one in enumerate(sets):
        alone = Codec(model, size=16, seed=7 + i).decode(one)
        assert (together[i : i + 1] - alone).abs().max() < 1e-5  # batched convolutions round a little differently
        assert torch.equal(codec.decode(one, indices=[i]), alone)
    direct = model.decode(pack(sets).tokens, seed=7)
    assert torch.equal(together, direct)
    assert (together[0] - Codec(model, size=16, seed=7).decode(sets[1])[0]).abs().max() > 1e-3


def test_encoding_needs_a_model():
    with pytest.raises(WetokError, match="encoding needs a model"):
        Codec().encode(Image.fromarray(photo(16, 16)))


def test_save_image_refuses_unknown_suffix_and_writes_atomically(tmp_path):
    pixels = torch.zeros(1, 3, 8, 8)
    with pytest.raises(WetokError, match=r"out.xyz: cannot tell the image format"):
        save_image(tmp_path / "out.xyz", pixels)
    save_image(tmp_path / "out.jpg", pixels)
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]


# ---- paths read from token files (issue 17: #8) -------------------------------------------------
import dataclasses
import json
import os
from pathlib import Path

from support import cli
from wetok.weights import ema_key


class _TouchesMarker:
    """Unpickling it runs `touch MARKER` (a planted payload)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tokens_of(model: wetok.Tokenizer, **identity) -> wetok.TokenSet:
    tokens = Codec(model, size=16).encode(Image.fromarray(photo(16, 16)))
    tokens.identity = dataclasses.replace(model.identity, **identity)
    return tokens


def _planted(folder: Path, marker: Path) -> tuple[wetok.Tokenizer, Path]:
    """A released-layout checkpoint of a TINY model that also holds a payload: loading it with
    trust_pickle runs `touch marker`."""
    torch.manual_seed(0)
    model = wetok.Tokenizer(TINY)
    state = {**model.state_dict(), **{ema_key(k): v for k, v in model.state_dict().items()}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evil.ckpt"
    torch.save({"state_dict": state, "payload": _TouchesMarker(str(marker))}, path)
    return model, path


@pytest.mark.parametrize("layout", ["wtok-weights-name", "json-ckpt", "json-weights-file", "original-json-ckpt"])
def test_trust_pickle_never_applies_to_a_model_a_token_file_names(tmp_path, capsys, monkeypatch, layout):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "payload-ran"
    model, evil = _planted(tmp_path / "stranger", marker)
    folder = evil.parent
    if layout == "wtok-weights-name":
        path = write_tokens(folder / "t.wtok", _tokens_of(model, weights_file="evil.ckpt", weights="ema"))
    elif layout == "json-ckpt":
        path = write_tokens(folder / "t.json", _tokens_of(model, weights_file="other", ckpt="evil.ckpt"))
    elif layout == "json-weights-file":
        path = write_tokens(folder / "t.json", _tokens_of(model, weights_file="evil.ckpt"))
    else:
        doc = json.loads(write_tokens(folder / "t.json", _tokens_of(model)).read_text())
        path = folder / "t.json"
        path.write_text(json.dumps({k: doc[k] for k in ("wetok", "image_size")} | {"ckpt": "evil.ckpt", "config": None}))
    for attempt in range(2):  # the API (a Codec has no way to trust a file-named model), then --trust-pickle
        if attempt == 0:
            with pytest.raises(wetok.UnsafeCheckpointError) as info:
                Codec().open_tokens(path)
            message = str(info.value)
        else:
            code, _, message = cli(capsys, "decode", path, "-o", tmp_path / "out.png", "--trust-pickle")
            assert code == 2 and message.startswith("wetok: error:")
        assert "never unpickled" in message and f"--ckpt {folder / 'evil.ckpt'} --trust-pickle" in message
        assert "\n" not in message.strip()
        assert not marker.exists()
    assert not (tmp_path / "out.png").exists()


def _outside_model(tmp_path: Path) -> wetok.Tokenizer:
    """A real saved model at tmp/outside/model, which a token file in tmp/a/b must not reach."""
    return wetok.load(make_model_dir(tmp_path / "outside" / "model", TINY))


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../../outside/model", "path separator"),
        ("ABSOLUTE", "path separator"),
        ("outside/model", "path separator"),
        ("..\\..\\outside\\model", "path separator"),
        ("..", "not a file name"),
        (".", "not a file name"),
        ("model\0", "NUL"),
    ],
)
def test_a_wtok_weights_name_is_a_base_name_only(tmp_path, monkeypatch, name, reason):
    model = _outside_model(tmp_path)
    monkeypatch.chdir(tmp_path)  # "outside/model" would be found from here
    name = str(tmp_path / "outside" / "model") if name == "ABSOLUTE" else name
    (tmp_path / "a" / "b").mkdir(parents=True)
    path = write_tokens(tmp_path / "a" / "b" / "t.wtok", _tokens_of(model, weights_file=name))
    with pytest.raises(WetokError, match=f"weights file name .* is not followed \\(.*{reason}.*\\); pass the model with --ckpt") as info:
        Codec().open_tokens(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    # the model the user names decodes it
    assert Codec(model).open_tokens(path)[0] is model


@pytest.mark.parametrize(
    "entry, reason",
    [
        ("ABSOLUTE", "absolute path"),
        ("../../outside/model", "'\\.\\.'"),
        ("sub/../../../outside/model", "'\\.\\.'"),
        ("..\\..\\outside\\model", "'\\.\\.'"),
        ("/etc/passwd", "absolute path"),
        ("model\0x", "NUL"),
    ],
)
@pytest.mark.parametrize("key", ["ckpt", "config"])
def test_json_entries_must_be_relative_paths_without_dotdot(tmp_path, monkeypatch, entry, reason, key):
    model = _outside_model(tmp_path)
    monkeypatch.chdir(tmp_path / "outside")
    entry = str(tmp_path / "outside" / "model") if entry == "ABSOLUTE" else entry
    (tmp_path / "a" / "b").mkdir(parents=True)
    make_model_dir(tmp_path / "a" / "b" / "mine", TINY)
    doc = json.loads(write_tokens(tmp_path / "a" / "b" / "t.json", _tokens_of(model)).read_text())
    original = {k: doc[k] for k in ("wetok", "image_size")}  # the original tool's layout: no grid, no identity
    original |= {"ckpt": entry, "config": None} if key == "ckpt" else {"ckpt": "mine", "config": entry}
    path = tmp_path / "a" / "b" / "t.json"
    path.write_text(json.dumps(original))
    with pytest.raises(WetokError, match=f'its "{key}" entry .* is not followed \\(.*{reason}.*\\)') as info:
        Codec().open_tokens(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value) and "--ckpt" in str(info.value)


def test_relative_json_entries_are_found_beside_the_file_then_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "tok").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    beside = wetok.load(make_model_dir(tmp_path / "tok" / "models" / "m", TINY, seed=1))
    doc = json.loads(write_tokens(tmp_path / "tok" / "t.json", _tokens_of(beside)).read_text())
    path = tmp_path / "tok" / "t.json"
    path.write_text(json.dumps({k: doc[k] for k in ("wetok", "image_size")} | {"ckpt": "models/m", "config": None}))
    model, tokens = Codec().open_tokens(path)
    assert torch.equal(model.state_dict()["decoder.conv_out.weight"], beside.state_dict()["decoder.conv_out.weight"])
    assert tokens.grid == (4, 4)
    # only in the working directory: found there
    (tmp_path / "tok" / "models").rename(tmp_path / "cwd" / "models")
    assert Codec().open_tokens(path)[0].identity.weights_file == "m"
    (tmp_path / "cwd" / "models").rename(tmp_path / "elsewhere")
    with pytest.raises(WetokError, match=r"the model it names \(models/m\) is not found beside it or in the working directory"):
        Codec().open_tokens(path)


def test_unsafe_ckpt_entry_falls_back_to_the_identity_the_file_records(tmp_path):
    """A wetok JSON file records the model's identity too: an absolute "ckpt" is not followed, the
    weights file name beside the token file is (and the architecture hash is still checked)."""
    model = wetok.load(make_model_dir(tmp_path / "model", TINY))
    path = write_tokens(tmp_path / "t.json", _tokens_of(model, ckpt=str(tmp_path / "model")))
    assert json.loads(path.read_text())["ckpt"] == str(tmp_path / "model")
    found, _ = Codec().open_tokens(path)
    assert found.identity.weights_file == "model"


def test_hostile_token_files_through_the_codec_are_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    for path in (deep, Path("/dev/zero")):
        with pytest.raises(WetokError) as info:
            Codec().open_tokens(path)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


# ---- the pixels processed are bounded (issue 17, #5); seeds in range (#13) -----------------------
@pytest.mark.parametrize("size", [65536, 1_000_000, -1])
def test_sizes_outside_the_wtok_field_are_refused(size):
    with pytest.raises(WetokError, match=r"--size must be 0 \(own resolution\) or a number of pixels up to 65535"):
        Codec(wetok.Tokenizer(TINY), size=size)


DEFAULT = 89_478_485  # images.DEFAULT_MAX_PIXELS


@pytest.mark.parametrize(
    "size, max_pixels, refused",
    [(20000, DEFAULT, True), (9459, DEFAULT, False), (9460, DEFAULT, True), (9460, 10**6, True), (20000, 5 * 10**8, False),
     (20000, None, False), (256, 1000, False)],
)
def test_a_size_of_more_pixels_than_the_limit_is_refused_when_the_codec_is_made(size, max_pixels, refused):
    """size x size is bounded by the larger of --max-pixels and the default limit (9459 x 9459 =
    89,472,681 is just under it); a lower --max-pixels bounds the files and resizes, not the size asked for."""
    from wetok.images import DEFAULT_MAX_PIXELS

    assert DEFAULT == DEFAULT_MAX_PIXELS
    if refused:
        with pytest.raises(WetokError, match=rf"--size {size} makes {size}x{size} = {size * size} pixels per image"):
            Codec(wetok.Tokenizer(TINY), size=size, max_pixels=max_pixels)
    else:
        assert Codec(wetok.Tokenizer(TINY), size=size, max_pixels=max_pixels).size == size


@pytest.mark.parametrize("shape", [(1, 12000), (12000, 1), (2, 50000), (1, 200000)])
def test_prepare_refuses_resizes_out_of_proportion_naming_the_source(shape):
    array = np.zeros((*shape, 3), np.uint8)
    with pytest.raises(WetokError, match=r"^thin.png: resizing the shorter side to 256 .* over the limit of 89478485"):
        _sized(256, "crop").prepare(array, "thin.png")
    assert _sized(256, "stretch").prepare(array, "thin.png").shape == (256, 256)  # a stretch processes 256 x 256 only


def test_the_limit_follows_max_pixels_but_always_allows_size_x_size():
    model = wetok.Tokenizer(TINY)
    wide = np.zeros((10, 400, 3), np.uint8)  # size 32: 32 x 1280 = 40,960 pixels
    assert Codec(model, size=32, max_pixels=50_000).prepare(wide, "w").shape == (32, 32)
    with pytest.raises(WetokError, match="w: resizing the shorter side to 32 of the 400x10 image would be 1280x32 = 40960 pixels, over the limit of 30000"):
        Codec(model, size=32, max_pixels=30_000).prepare(wide, "w")
    assert Codec(model, size=32, max_pixels=None).prepare(wide, "w").shape == (32, 32)
    square = np.zeros((40, 40, 3), np.uint8)
    assert Codec(model, size=32, max_pixels=100).prepare(square, "s").shape == (32, 32)  # 32 x 32 asked for: allowed
    with pytest.raises(WetokError, match=r"s: processing at its own resolution of the 40x40 image would be 40x40 = 1600 pixels, over the limit of 1000"):
        Codec(model, size=0, max_pixels=1000).prepare(square, "s")


def test_load_image_names_the_file_of_an_extreme_aspect_ratio(tmp_path):
    path = tmp_path / "line.png"
    Image.fromarray(np.zeros((1, 12000, 3), np.uint8)).save(path)
    assert path.stat().st_size < 1000
    with pytest.raises(WetokError, match=rf"^{path}: resizing the shorter side to 256 of the 12000x1 image would be 3072000x256"):
        Codec(wetok.Tokenizer(TINY)).load_image(path)


@pytest.mark.parametrize("seed", [2**63, 2**64, 10**23, -1, -(2**63)])
def test_seeds_outside_the_generator_range_are_wetok_errors(seed):
    with pytest.raises(WetokError, match=r"noise seed .* is outside 0\.\.9223372036854775807"):
        seeded_noise((2, 3, 3), [seed])
    with pytest.raises(WetokError, match="not an integer"):
        seeded_noise((2, 3, 3), ["x"])  # type: ignore[list-item]
    assert seeded_noise((2, 3, 3), [2**63 - 1, 0]).shape == (2, 2, 3, 3)


def test_a_codec_seed_that_overflows_on_a_later_image_is_a_wetok_error(tmp_path):
    model = wetok.load(make_model_dir(tmp_path / "gd", TINY_GD))
    codec = Codec(model, size=16, seed=2**63 - 2)
    tokens = pack([codec.encode(photo(16, 16, seed=k)) for k in range(3)])
    with pytest.raises(WetokError, match="noise seed 9223372036854775808 is outside"):
        codec.decode(tokens)  # images 0 and 1 fit, image 2's seed + 2 does not
    assert codec.decode(pack([tokens.image(0), tokens.image(1)])).shape == (2, 3, 16, 16)


def test_a_model_a_token_file_names_is_loaded_with_the_codecs_execution():
    ref = require_reference()
    exp = torch.load(ref / "tiny_d16_expected.pt", weights_only=True)
    model, tokens = Codec(execution=Execution("bf16")).open_tokens(ref / "tiny_d16_tokens.json")
    assert model.dtype == torch.bfloat16 and model.execution.memory_format == torch.channels_last
    image = wetok.crop(model.decode(tokens.tokens), tokens.crop)
    assert image.dtype == torch.float32
    assert (image - exp["ema_recon"][:1].clamp(-1, 1)).abs().mean().item() < 0.02
