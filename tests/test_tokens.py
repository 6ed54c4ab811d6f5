"""Token files: bit packing, the .wtok layout byte by byte, the original JSON both ways, and
every kind of damaged file."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import zlib

import numpy as np
import pytest
import torch

import wetok
from support import CASES, require_reference
from wetok.config import ModelIdentity
from wetok.errors import WetokError
from wetok.images import CropBox
from wetok.tokens import (
    TokenSet,
    json_document,
    pack_tokens,
    packed_size,
    read_json_text,
    read_tokens,
    read_wtok_bytes,
    unpack_tokens,
    write_tokens,
    wtok_bytes,
)


def token_set(n: int = 2, h: int = 3, w: int = 5, g: int = 4, b: int = 8, seed: int = 0, **kw) -> TokenSet:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 2**b, (n, h, w, g), generator=gen)
    ident = kw.pop("identity", ModelIdentity("0123456789abcdef", "imagenet-d16", "WeTok.ckpt", "ema"))
    return TokenSet(tokens, b, kw.pop("downsample", 16), identity=ident, **kw)


@pytest.mark.parametrize("b", [1, 3, 8, 10, 24])
def test_pack_roundtrip_and_exact_size(b):
    ts = token_set(n=3, h=3, w=5, g=2, b=b, seed=b)
    blob = pack_tokens(ts.tokens, b)
    per_image = (3 * 5 * 2 * b + 7) // 8
    assert len(blob) == 3 * per_image == 3 * packed_size((3, 5), 2, b)
    assert torch.equal(unpack_tokens(blob, 3, (3, 5), 2, b, "x"), ts.tokens)


def test_pack_bit_order_is_channel_order_lsb_first():
    # One cell, two groups of 4 bits: tokens 0b0001 (channel 0 set) and 0b1000 (channel 7 set).
    tokens = torch.tensor([[[[1, 8]]]])
    assert pack_tokens(tokens, 4) == bytes([0b1000_0001])
    # Bits of channel k go to stream bit k: the same as the model's codes, sign > 0 -> 1.
    model = wetok.Tokenizer(wetok.TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8, groups=2))
    codes = model.tokens_to_codes(tokens)[0, :, 0, 0]
    bits = np.unpackbits(np.frombuffer(pack_tokens(tokens, 4), np.uint8), bitorder="little")
    assert bits.tolist() == (codes > 0).int().tolist()


def test_wtok_header_layout_as_documented():
    ts = token_set(n=2, h=3, w=5, g=4, b=8, crop=CropBox(1, 2, 40, 70), original_size=(41, 71), resize="none", size=0)
    blob = wtok_bytes(ts)
    header_size = struct.unpack_from("<H", blob, 6)[0]
    assert header_size <= 128
    assert len(blob) == header_size + 2 * (3 * 5 * 32 // 8)
    assert blob[:4] == b"WTOK" and blob[4] == 1 and blob[5] == 0
    assert struct.unpack_from("<IHHHBBHH", blob, 8) == (2, 3, 5, 4, 8, 0, 16, 0)
    assert struct.unpack_from("<6I", blob, 24) == (41, 71, 1, 2, 40, 70)
    crc = struct.unpack_from("<I", blob, 48)[0]
    zeroed = bytearray(blob)
    zeroed[48:52] = b"\0\0\0\0"
    assert crc == zlib.crc32(zeroed)
    assert blob[52:60].hex() == "0123456789abcdef"
    p = blob[60]
    assert blob[61 : 61 + p] == b"imagenet-d16"
    wl = blob[61 + p]
    assert blob[62 + p : 62 + p + wl] == b"WeTok.ckpt" and 62 + p + wl == header_size
    # A reader needing nothing but the README: tokens of image 1 from its bytes.
    per_image = 3 * 5 * 32 // 8
    raw = np.frombuffer(blob[header_size + per_image : header_size + 2 * per_image], np.uint8)
    bits = np.unpackbits(raw, bitorder="little").reshape(3, 5, 4, 8)
    assert torch.equal(torch.from_numpy((bits * (1 << np.arange(8))).sum(-1)), ts.tokens[1])


def test_wtok_roundtrip_keeps_everything(tmp_path):
    ts = token_set(n=3, h=2, w=7, g=8, b=4, downsample=8, crop=CropBox(3, 0, 10, 56), original_size=(300, 200), resize="crop", size=56)
    path = write_tokens(tmp_path / "t.wtok", ts)
    back = read_tokens(path)
    assert torch.equal(back.tokens, ts.tokens)
    assert (back.bits_per_group, back.downsample, back.crop, back.original_size, back.resize, back.size) == (
        4, 8, CropBox(3, 0, 10, 56), (300, 200), "crop", 56
    )
    assert back.identity == ts.identity


def test_long_weights_name_is_truncated_to_fit_128_bytes():
    ts = token_set(identity=ModelIdentity("0123456789abcdef", "general-cr768", "w" * 300 + ".ckpt", "raw"))
    blob = wtok_bytes(ts)
    assert struct.unpack_from("<H", blob, 6)[0] == 128
    back = read_wtok_bytes(blob, "x")
    assert back.identity is not None and back.identity.weights == "raw" and back.identity.weights_file == "w" * 53


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:30], "truncated"),
        (lambda b: b + b"\0", "trailing"),
        (lambda b: b[:70] + bytes([b[70] ^ 0x10]) + b[71:], "checksum"),
        (lambda b: b"WTOX" + b[4:], "bad magic"),
        (lambda b: b[:4] + bytes([9]) + b[5:], "newer"),
        (lambda b: b"", "bad magic"),
    ],
)
def test_damaged_wtok_is_refused(damage, message):
    blob = wtok_bytes(token_set())
    with pytest.raises(WetokError, match=message):
        read_wtok_bytes(damage(blob), "f.wtok")


def test_json_document_is_the_original_layout():
    ts = token_set(n=1, h=4, w=4, g=4, b=8)
    ts.identity = dataclasses.replace(ts.identity, config="m.yaml", ckpt="m.ckpt")
    doc = json_document(ts)
    assert list(doc)[:4] == ["wetok", "config", "ckpt", "image_size"]
    assert doc["image_size"] == 64 and doc["config"] == "m.yaml" and doc["ckpt"] == "m.ckpt"
    data = np.frombuffer(base64.b64decode(doc["wetok"]["data"]), dtype=doc["wetok"]["dtype"])
    assert doc["wetok"]["dtype"] == "uint8" and doc["wetok"]["shape"] == [64]
    assert torch.equal(torch.from_numpy(data.astype(np.int64)), ts.tokens.flatten())
    back = read_json_text(json.dumps(doc), "x")
    assert torch.equal(back.tokens, ts.tokens) and back.identity == ts.identity


def test_json_dtype_follows_the_original_rule():
    wide = token_set(n=1, h=2, w=2, g=1, b=12)
    wide.tokens[0, 0, 0, 0] = 4000
    assert json_document(wide)["wetok"]["dtype"] == "uint16"


def original_json(tokens: np.ndarray, image_size: int = 64, dtype: str = "uint8", **extra) -> str:
    doc = {
        "wetok": {"data": base64.b64encode(tokens.astype(dtype).tobytes()).decode(), "dtype": dtype, "shape": [tokens.size]},
        "config": "m.yaml",
        "ckpt": "m.ckpt",
        "image_size": image_size,
    }
    doc.update(extra)
    return json.dumps(doc)


def test_original_json_needs_the_model_for_its_grid():
    text = original_json(np.arange(64) % 256)
    ts = read_json_text(text, "x", downsample=16, groups=4)
    assert ts.grid == (4, 4) and ts.bits_per_group == -1 and ts.model_hint == {"config": "m.yaml", "ckpt": "m.ckpt"}
    with pytest.raises(WetokError, match="does not say its grid"):
        read_json_text(text, "x")


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ("[1, 2]", "not a token file"),
        (json.dumps({"config": "a"}), "missing 'wetok', 'image_size'"),
        (json.dumps({"wetok": {"data": ""}, "image_size": 64}), "missing 'wetok.dtype', 'wetok.shape'"),
        (original_json(np.zeros(64), dtype="float32"), "not an integer type"),
        (original_json(np.zeros(60)), "60 tokens do not fill a 4x4 grid of 4 groups"),
        (original_json(np.zeros(64)).replace('"data": "', '"data": "!!'), "not valid base64"),
        (original_json(np.zeros(64)).replace('"shape": [64]', '"shape": [65]'), "needs 65"),
        (original_json(np.zeros(64)).replace('"shape": [64]', '"shape": "64"'), "must be a list"),
        (original_json(np.zeros(64), token_grid=[4]), "token_grid"),
        (original_json(np.zeros(64), crop_box=[0, 0, 65, 64]), "outside"),
    ],
)
def test_bad_json_is_refused(text, message):
    with pytest.raises(WetokError, match=message):
        read_json_text(text, "t.json", downsample=16, groups=4)


def test_out_of_range_json_tokens_are_refused(tmp_path):
    from wetok.tokens import finish_json_tokens

    ts = read_json_text(original_json(np.full(64, 300), dtype="uint16"), "t.json", downsample=16, groups=4)
    cfg = wetok.TokenizerConfig(channels=32, channel_mult=(1, 1, 2, 2, 2), num_res_blocks=1, latent_channels=32, groups=4)
    with pytest.raises(WetokError, match=r"t.json: token values 300..300 are out of range for 8-bit groups"):
        finish_json_tokens(ts, cfg, "t.json")


def test_read_tokens_file_errors(tmp_path):
    with pytest.raises(WetokError, match="no such file"):
        read_tokens(tmp_path / "missing.wtok")
    (tmp_path / "empty.json").write_bytes(b"")
    with pytest.raises(WetokError, match="empty file"):
        read_tokens(tmp_path / "empty.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WetokError, match="neither .wtok nor UTF-8 JSON"):
        read_tokens(tmp_path / "bin.json")
    (tmp_path / "fake.wtok").write_text("{}")
    with pytest.raises(WetokError, match="bad magic"):
        read_tokens(tmp_path / "fake.wtok")


@pytest.mark.parametrize("case", CASES)
def test_fixture_json_files_read_as_image0_tokens(case):
    ref = require_reference()
    exp = torch.load(ref / f"{case}_expected.pt", weights_only=True)
    model = wetok.load(ref / f"{case}.ckpt", config=ref / f"{case}.yaml")
    ts = read_tokens(ref / f"{case}_tokens.json", downsample=model.downsample, groups=model.groups)
    per_image = exp["ema_indices"].numel() // 2
    assert torch.equal(ts.tokens.flatten(), exp["ema_indices"][:per_image])
    assert ts.model_hint == {"config": str(ref / f"{case}.yaml"), "ckpt": str(ref / f"{case}.ckpt")}


JUNK = [None, True, -1, 0, 1.5, "x", "", [], [1, 2], [[1]], {"a": 1}, 2**70]


def _paths(doc: dict, prefix: tuple = ()) -> list[tuple]:
    found = []
    for key, value in doc.items():
        found.append(prefix + (key,))
        if isinstance(value, dict):
            found += _paths(value, prefix + (key,))
    return found


def test_json_with_any_field_replaced_by_junk_fails_cleanly():
    """Every field of a wetok JSON file, set to every kind of wrong value: a WetokError or a
    readable token set, never another exception."""
    from wetok.tokens import finish_json_tokens

    cfg = wetok.TokenizerConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=8, groups=2)
    good = json_document(token_set(n=1, h=3, w=3, g=2, b=4, downsample=4))
    outcomes = {"error": 0, "read": 0}
    for path in _paths(good):
        for junk in JUNK:
            doc = json.loads(json.dumps(good))
            target = doc
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = junk
            try:
                ts = read_json_text(json.dumps(doc), "f.json", downsample=4, groups=2)
                ts = finish_json_tokens(ts, cfg, "f.json") if ts.bits_per_group < 0 else ts
                assert ts.tokens.shape == (1, 3, 3, 2)
                outcomes["read"] += 1
            except WetokError as exc:
                assert str(exc).startswith("f.json: ") and "\n" not in str(exc)
                outcomes["error"] += 1
    assert outcomes["error"] > 50 and outcomes["read"] > 50


def test_every_single_byte_change_of_a_wtok_file_is_caught():
    blob = wtok_bytes(token_set(n=2, h=2, w=3, g=2, b=5))
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x5A
        with pytest.raises(WetokError):
            read_wtok_bytes(bytes(damaged), "f.wtok")
