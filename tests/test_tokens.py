"""Token files: bit packing, the .wtok layout byte by byte, the original JSON both ways, and
every kind of damaged file."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import zlib
from pathlib import Path

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
    find_beside,
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
    # the entries as the file gives them; followed beside the token file (`find_beside`)
    assert ts.model_hint == {"config": f"{case}.yaml", "ckpt": f"{case}.ckpt"}
    assert find_beside(ts.model_hint["ckpt"], ref / f"{case}_tokens.json") == ref / f"{case}.ckpt"


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


# ---- hostile token files (issue 17: #9, #12, and fuzzing) ---------------------------------------
def _one_line_error(call, source: str) -> str:
    with pytest.raises(WetokError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.startswith(source), message
    return message


@pytest.mark.parametrize("depth", [1_000, 200_000])
@pytest.mark.parametrize("where", ["top", "wetok", "shape", "crop_box"])
def test_deeply_nested_json_is_one_line(tmp_path, depth, where):
    nest = "[" * depth + "]" * depth
    if where == "top":
        text = nest
    else:
        doc = json.loads(original_json(np.zeros(64)))
        doc[where if where != "shape" else "wetok"] = "NEST"
        if where == "shape":
            doc["wetok"] = {"data": "", "dtype": "uint8", "shape": "NEST"}
        text = json.dumps(doc).replace('"NEST"', nest)
    path = tmp_path / "deep.json"
    path.write_text(text)
    _one_line_error(lambda: read_tokens(path, downsample=16, groups=4), str(path))
    _one_line_error(lambda: read_json_text(text, "t.json", downsample=16, groups=4), "t.json")


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "1" * 10_000, "1e99999", "NaN"])
def test_absurd_json_numbers_are_one_line(literal):
    text = original_json(np.zeros(64)).replace('"image_size": 64', f'"image_size": {literal}')
    _one_line_error(lambda: read_json_text(text, "t.json", downsample=16, groups=4), "t.json")


def test_non_regular_token_files_are_refused_unread(tmp_path):
    import os
    import time

    fifo = tmp_path / "pipe.wtok"
    os.mkfifo(fifo)  # reading it would block forever
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), Path("/dev/urandom"), fifo, link):
        start = time.perf_counter()
        message = _one_line_error(lambda path=path: read_tokens(path), str(path))
        assert "only regular files are read" in message and time.perf_counter() - start < 1
    assert "is a directory" in _one_line_error(lambda: read_tokens(tmp_path), str(tmp_path))
    long_name = tmp_path / ("x" * 5000)
    assert "cannot read" in _one_line_error(lambda: read_tokens(long_name), str(long_name))


@pytest.mark.parametrize("kind", ["wtok", "json", "json-named-wtok"])
def test_token_files_over_the_size_caps_are_refused_unread(tmp_path, kind):
    import time

    from wetok.tokens import JSON_MAX_BYTES, WTOK_MAX_BYTES

    path = tmp_path / ("big.wtok" if kind != "json" else "big.json")
    limit = WTOK_MAX_BYTES if kind == "wtok" else JSON_MAX_BYTES
    with path.open("wb") as fh:  # sparse: no disk space used
        fh.write(b"WTOK" if kind == "wtok" else b'{"wetok": ')
        fh.truncate(limit + 1)
    start = time.perf_counter()
    message = _one_line_error(lambda: read_tokens(path), str(path))
    assert f"{limit + 1} bytes" in message and str(limit) in message and time.perf_counter() - start < 1


def test_files_of_too_many_tokens_are_refused_before_unpacking(tmp_path, monkeypatch):
    import wetok.tokens

    ts = token_set(n=3, h=2, w=3, g=2, b=4)
    wtok = write_tokens(tmp_path / "t.wtok", ts)
    one = token_set(n=1, h=2, w=3, g=2, b=4)
    js = write_tokens(tmp_path / "t.json", one)
    monkeypatch.setattr(wetok.tokens, "MAX_TOKENS", 2 * 3 * 2 * 2)  # two images' worth
    assert "36 tokens, more than one token file may hold (24)" in _one_line_error(lambda: read_tokens(wtok), str(wtok))
    assert read_tokens(js).tokens.shape == (1, 2, 3, 2)
    monkeypatch.setattr(wetok.tokens, "MAX_TOKENS", 11)
    assert "holds 12 tokens" in _one_line_error(lambda: read_tokens(js), str(js))


def test_unpacking_in_chunks_gives_the_same_tokens(monkeypatch):
    import wetok.tokens

    for n, h, w, g, b in [(7, 3, 5, 2, 5), (5, 2, 2, 3, 24), (9, 4, 4, 1, 1), (1, 6, 7, 4, 8)]:
        ts = token_set(n=n, h=h, w=w, g=g, b=b, seed=n + b)
        blob = pack_tokens(ts.tokens, b)
        for chunk in (1, 8, 100, 1 << 26):
            monkeypatch.setattr(wetok.tokens, "UNPACK_CHUNK_BITS", chunk)
            assert torch.equal(unpack_tokens(blob, n, (h, w), g, b, "x"), ts.tokens)
    bad = bytearray(pack_tokens(token_set(n=3, h=1, w=1, g=1, b=3).tokens, 3))
    bad[2] |= 0x80  # a padding bit of the last image
    monkeypatch.setattr(wetok.tokens, "UNPACK_CHUNK_BITS", 8)
    with pytest.raises(WetokError, match="non-zero padding"):
        unpack_tokens(bytes(bad), 3, (1, 1), 1, 3, "x")


def _with_crc(blob: bytes | bytearray) -> bytes:
    fixed = bytearray(blob)
    if len(fixed) >= 52:
        struct.pack_into("<I", fixed, 48, 0)
        struct.pack_into("<I", fixed, 48, zlib.crc32(fixed) & 0xFFFFFFFF)
    return bytes(fixed)


def test_forged_string_lengths_with_a_valid_checksum_are_refused():
    blob = bytearray(wtok_bytes(token_set(n=1, h=1, w=1, g=1, b=8)))
    for plen in (200, 255, blob[60] + 1):
        forged = bytearray(blob)
        forged[60] = plen
        _one_line_error(lambda forged=forged: read_wtok_bytes(_with_crc(forged), "f.wtok"), "f.wtok")


def _mutations(blob: bytes, rng: np.random.Generator, count: int):
    """`count` damaged copies of `blob`: flipped bits, random bytes, truncations, extensions,
    insertions, deletions and repeated slices, one to a few at a time."""
    for _ in range(count):
        data = bytearray(blob)
        for _ in range(int(rng.integers(1, 4))):
            op = int(rng.integers(0, 7))
            pos = int(rng.integers(0, max(1, len(data))))
            if op == 0 and data:
                data[pos] ^= 1 << int(rng.integers(0, 8))
            elif op == 1 and data:
                data[pos] = int(rng.integers(0, 256))
            elif op == 2:
                data = data[:pos]
            elif op == 3:
                data += bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
            elif op == 4:
                data[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8))
            elif op == 5:
                del data[pos : pos + int(rng.integers(1, 8))]
            else:
                data[pos:pos] = data[pos : pos + int(rng.integers(1, 32))] * int(rng.integers(1, 4))
        yield bytes(data)


def _outcome(read, source: str) -> str:
    try:
        result = read()
    except WetokError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(source), message
        return "error"
    assert isinstance(result, TokenSet)
    assert result.tokens.dtype == torch.int64 and result.tokens.dim() == 4
    if result.bits_per_group > 0 and result.tokens.numel():
        assert 0 <= int(result.tokens.min()) and int(result.tokens.max()) < 2**result.bits_per_group
    return "read"


def test_fuzzed_wtok_files_are_a_token_set_or_a_wetok_error():
    """Thousands of seeded mutations of valid .wtok files, with the checksum left as it is and
    recomputed (so that the header's values themselves are explored): never another exception."""
    rng = np.random.default_rng(17)
    seeds = [
        token_set(n=2, h=2, w=3, g=2, b=5),
        token_set(n=1, h=1, w=1, g=1, b=1, identity=ModelIdentity("00" * 8, None, None, "saved")),
        token_set(n=3, h=2, w=2, g=4, b=8, crop=CropBox(1, 2, 20, 25), original_size=(99, 77), resize="crop", size=32),
        token_set(n=1, h=3, w=1, g=3, b=24, identity=ModelIdentity("ff" * 8, "imagenet-d8", "a/../b\0c", "raw")),
    ]
    outcomes = {"error": 0, "read": 0}
    for ts in seeds:
        blob = wtok_bytes(ts)
        for damaged in _mutations(blob, rng, 700):
            outcomes[_outcome(lambda damaged=damaged: read_wtok_bytes(damaged, "f.wtok"), "f.wtok")] += 1
            outcomes[_outcome(lambda damaged=damaged: read_wtok_bytes(_with_crc(damaged), "f.wtok"), "f.wtok")] += 1
        header = struct.unpack_from("<H", blob, 6)[0]
        for _ in range(500):  # the header's fields in place, checksum recomputed
            damaged = bytearray(blob)
            for _ in range(int(rng.integers(1, 3))):
                damaged[int(rng.integers(4, header))] = int(rng.integers(0, 256))
            outcomes[_outcome(lambda damaged=damaged: read_wtok_bytes(_with_crc(damaged), "f.wtok"), "f.wtok")] += 1
    assert outcomes["error"] > 4000 and outcomes["read"] > 20, outcomes


def test_fuzzed_json_token_files_are_a_token_set_or_a_wetok_error(tmp_path):
    """Byte-level mutations of JSON token files (wetok's and the original layout), read as text
    and through `read_tokens`; and structural ones: any value replaced by random JSON."""
    from wetok.tokens import finish_json_tokens

    rng = np.random.default_rng(23)
    cfg = wetok.TokenizerConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=8, groups=2)
    wetok_doc = json.dumps(json_document(token_set(n=1, h=3, w=3, g=2, b=4, downsample=4)))
    original = original_json(np.arange(36) % 16, image_size=12)
    outcomes = {"error": 0, "read": 0}
    path = tmp_path / "f.json"

    def read_text(blob: bytes):
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:
            raise WetokError("f.json: not UTF-8") from None
        ts = read_json_text(text, "f.json", downsample=4, groups=2)
        return finish_json_tokens(ts, cfg, "f.json") if ts.bits_per_group < 0 else ts

    for text in (wetok_doc, original):
        for k, damaged in enumerate(_mutations(text.encode(), rng, 1000)):
            outcomes[_outcome(lambda damaged=damaged: read_text(damaged), "f.json")] += 1
            if k % 10 == 0:
                path.write_bytes(damaged)
                outcomes[_outcome(lambda: read_tokens(path, downsample=4, groups=2), str(path))] += 1

    def random_value(depth: int = 0):
        pick = int(rng.integers(0, 9 if depth < 3 else 6))
        if pick == 6:
            return [random_value(depth + 1) for _ in range(int(rng.integers(0, 4)))]
        if pick == 7:
            return {str(i): random_value(depth + 1) for i in range(int(rng.integers(0, 3)))}
        if pick == 8:
            return [[[[[]]]]] if depth else [[0] * 3] * 3
        return [None, True, int(rng.integers(-3, 2**40)), float(rng.normal()), "x" * int(rng.integers(0, 5)),
                "../../etc/passwd"][pick]

    good = json.loads(wetok_doc)
    for _ in range(1500):
        doc = json.loads(wetok_doc)
        for _ in range(int(rng.integers(1, 3))):
            path_keys = _paths(good)[int(rng.integers(0, len(_paths(good))))]
            target = doc
            for key in path_keys[:-1]:
                target = target[key] if isinstance(target, dict) and isinstance(target.get(key), dict) else {}
            target[path_keys[-1]] = random_value()
        outcomes[_outcome(lambda doc=doc: read_text(json.dumps(doc).encode()), "f.json")] += 1
    assert outcomes["error"] > 2000 and outcomes["read"] > 50, outcomes


@pytest.mark.parametrize(
    "name, followable",
    [
        ("WeTok.ckpt", True), ("my weights.ckpt", True), ("default_model", True), ("..x", True), ("x..", True),
        ("../../outside/model", False), ("/etc/passwd", False), ("a/b", False), ("a\\b", False), ("..", False),
        (".", False), ("", False), ("x\0y", False), ("C:\\x", False),
    ],
)
def test_weights_names_must_be_plain_base_names(name, followable):
    from wetok.tokens import weights_name_problem

    assert (weights_name_problem(name) is None) == followable


@pytest.mark.parametrize(
    "entry, followable",
    [
        ("WeTok.ckpt", True), ("models/WeTok.ckpt", True), ("./m.ckpt", True), ("a/./b", True), ("..x/y", True),
        ("/abs/m.ckpt", False), ("../m.ckpt", False), ("a/../../m.ckpt", False), ("a/..", False), ("..\\m.ckpt", False),
        ("C:\\m.ckpt", False), ("C:m.ckpt", False), ("\\\\server\\share\\m", False), ("//host/m", False),
        (".", False), ("./", False), ("m\0.ckpt", False), ("x" * 5000, False),
    ],
)
def test_json_model_entries_must_be_relative_without_dotdot(entry, followable):
    from wetok.tokens import model_entry_problem

    assert (model_entry_problem(entry) is None) == followable


def test_find_beside_looks_beside_the_token_file_then_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "tok").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    token_file = tmp_path / "tok" / "t.json"
    assert find_beside("m.ckpt", token_file) is None
    (tmp_path / "cwd" / "m.ckpt").write_bytes(b"cwd")
    assert find_beside("m.ckpt", token_file) == Path("m.ckpt")
    (tmp_path / "tok" / "m.ckpt").write_bytes(b"beside")
    assert find_beside("m.ckpt", token_file) == tmp_path / "tok" / "m.ckpt"
    assert find_beside("y" * 5000, token_file) is None
