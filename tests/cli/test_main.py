"""The `wetok` command line, run in-process through `wetok.cli.main` (and twice as a real process)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from support import CASES, REPO, TINY, TINY_GD, cli, listing, make_model_dir, require_reference, write_photo
from wetok import TokenizerConfig
from wetok.cli.main import build_parser, main
from wetok.cli.options import tile_spec
from wetok.images import to_pil
from wetok.tiling import TileSpec
from wetok.tokens import read_tokens


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny", TINY)


@pytest.fixture(scope="module")
def gd_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny-gd", TINY_GD)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---- the three commands and the single-entry form ------------------------------------------
def test_encode_decode_reconstruct_one_image(tmp_path, capsys, model_dir):
    image = write_photo(tmp_path / "in" / "photo.jpg", 70, 90)
    code, out, err = cli(capsys, "encode", image, "-o", tmp_path / "photo.wtok", "--ckpt", model_dir, "--size", "32")
    assert (code, out, err) == (0, "wetok: encoded 1 image\n", "")
    tokens = read_tokens(tmp_path / "photo.wtok")
    assert tokens.grid == (8, 8) and tokens.original_size == (70, 90) and tokens.resize == "crop"
    # 8*8 cells x 8 bits = 64 bytes after the header
    header = struct.unpack_from("<H", (tmp_path / "photo.wtok").read_bytes(), 6)[0]
    assert (tmp_path / "photo.wtok").stat().st_size == header + 64

    code, out, _ = cli(capsys, "decode", tmp_path / "photo.wtok", "-o", tmp_path / "photo.png", "--ckpt", model_dir)
    assert (code, out) == (0, "wetok: decoded 1 image\n")
    decoded = np.asarray(Image.open(tmp_path / "photo.png"))
    assert decoded.shape == (32, 32, 3)

    code, out, _ = cli(capsys, "reconstruct", image, "-o", tmp_path / "recon.png", "--ckpt", model_dir, "--size", "32")
    assert (code, out) == (0, "wetok: reconstructed 1 image\n")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "recon.png")), decoded)
    assert listing(tmp_path) == ["in/photo.jpg", "photo.png", "photo.wtok", "recon.png"]


def test_own_resolution_comes_back_at_its_size(tmp_path, capsys, monkeypatch, gd_dir):
    image = write_photo(tmp_path / "odd.png", 37, 51)
    assert cli(capsys, "encode", image, "-o", tmp_path / "odd.json", "--ckpt", gd_dir, "--size", "0")[0] == 0
    doc = json.loads((tmp_path / "odd.json").read_text())
    assert doc["token_grid"] == [19, 26] and doc["crop_box"] == [0, 0, 37, 51] and doc["image_size"] == [38, 52]
    monkeypatch.chdir(gd_dir.parent)  # the model the file names is looked up beside it or in the working directory
    assert cli(capsys, "decode", tmp_path / "odd.json", "-o", tmp_path / "odd_dec.png", "--seed", "3")[0] == 0
    assert Image.open(tmp_path / "odd_dec.png").size == (51, 37)
    assert cli(capsys, "reconstruct", image, "-o", tmp_path / "odd_rec.png", "--ckpt", gd_dir, "--size", "0", "--seed", "3")[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "odd_rec.png")), np.asarray(Image.open(tmp_path / "odd_dec.png")))


def test_single_entry_form_picks_the_mode_from_the_extension(tmp_path, capsys, monkeypatch, model_dir):
    image = write_photo(tmp_path / "a.webp", 40, 40)
    code, out, _ = cli(capsys, "--input", image, "--output", tmp_path / "a.json", "--ckpt", model_dir, "--size", "16", "--resize", "stretch")
    assert (code, out) == (0, "wetok: encoded 1 image\n")
    assert json.loads((tmp_path / "a.json").read_text())["image_size"] == 16
    monkeypatch.chdir(model_dir.parent)  # where the model the file names is looked up (besides the file's folder)
    code, out, _ = cli(capsys, "--image", tmp_path / "a.json", "--output", tmp_path / "a.png")
    assert (code, out) == (0, "wetok: decoded 1 image\n")
    code, out, _ = cli(capsys, image, tmp_path / "b.png", "--mode", "reconstruct", "--ckpt", model_dir, "--size", "16")
    assert (code, out) == (0, "wetok: reconstructed 1 image\n")
    assert Image.open(tmp_path / "b.png").size == (16, 16)


@pytest.mark.parametrize("case", CASES)
def test_json_matches_the_original_tool_both_ways(tmp_path, capsys, monkeypatch, case):
    ref = require_reference()
    exp = torch.load(ref / f"{case}_expected.pt", weights_only=True)
    image = tmp_path / "image0.png"
    to_pil(exp["image"][0:1])[0].save(image)
    size = str(exp["image"].shape[-1])
    fixture = json.loads((ref / f"{case}_tokens.json").read_text())
    for resize in ("crop", "stretch"):
        out = tmp_path / f"{resize}.json"
        argv = ["encode", image, "-o", out, "--ckpt", ref / f"{case}.ckpt", "--config", ref / f"{case}.yaml", "--size", size, "--resize", resize]
        assert cli(capsys, *argv)[0] == 0
        mine = json.loads(out.read_text())
        assert mine["wetok"] == fixture["wetok"]
        assert mine["image_size"] == fixture["image_size"]
    # ... and the fixture file decodes (model found from its own config/ckpt entries, beside it).
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "decode", ref / f"{case}_tokens.json", "-o", tmp_path / "dec.png")[0] == 0
    want = to_pil(exp["ema_recon"][0:1].clamp(-1, 1))[0]
    got = np.asarray(Image.open(tmp_path / "dec.png")).astype(int)
    if case == "tiny_gd_d32":  # the fixture's noise is not the CLI's seeded noise
        assert got.shape == np.asarray(want).shape
    else:
        assert np.abs(got - np.asarray(want).astype(int)).max() <= 1


# ---- many files ----------------------------------------------------------------------------
def test_directory_in_mirrored_out_bad_files_skipped(tmp_path, capsys, model_dir):
    src = tmp_path / "photos"
    write_photo(src / "a.png", 40, 48)
    write_photo(src / "sub" / "b.jpg", 64, 40)
    write_photo(src / "sub" / "deeper" / "c.bmp", 33, 33)
    (src / "sub" / "empty.png").write_bytes(b"")
    (src / "broken.jpg").write_bytes((src / "sub" / "b.jpg").read_bytes()[:300])
    (src / "notes.txt").write_text("not an image")
    code, out, err = cli(capsys, "encode", src, "-o", tmp_path / "tok", "--ckpt", model_dir, "--size", "32", "--batch-size", "2")
    assert code == 1
    assert out.startswith("wetok: encoded 3 images, skipped 2 (") and out.endswith(", ignored 1 other file\n")
    skipped = err.strip().splitlines()
    assert len(skipped) == 2 and all(line.startswith("wetok: skipped ") for line in skipped)
    assert any("empty.png: empty file" in line for line in skipped)
    assert any("broken.jpg: truncated or corrupt image" in line for line in skipped)
    assert listing(tmp_path / "tok") == ["a.wtok", "sub/b.wtok", "sub/deeper/c.wtok"]

    code, out, err = cli(capsys, "decode", tmp_path / "tok", "-o", tmp_path / "dec", "--ckpt", model_dir)
    assert (code, out, err) == (0, "wetok: decoded 3 images\n", "")
    assert listing(tmp_path / "dec") == ["a.png", "sub/b.png", "sub/deeper/c.png"]


def test_several_images_packed_into_one_wtok(tmp_path, capsys, model_dir):
    paths = [write_photo(tmp_path / f"p{i}.png", 30 + 10 * i, 50, seed=i) for i in range(3)]
    code, out, _ = cli(capsys, "encode", *paths, "-o", tmp_path / "all.wtok", "--ckpt", model_dir, "--size", "24")
    assert (code, out) == (0, "wetok: encoded 3 images\n")
    blob = (tmp_path / "all.wtok").read_bytes()
    header = struct.unpack_from("<H", blob, 6)[0]
    assert struct.unpack_from("<I", blob, 8)[0] == 3
    assert len(blob) == header + 3 * (6 * 6 * 8 // 8)
    code, out, _ = cli(capsys, "decode", tmp_path / "all.wtok", "-o", tmp_path / "out" / "all.png", "--ckpt", model_dir)
    assert (code, out) == (0, "wetok: decoded 3 images\n")
    assert listing(tmp_path / "out") == ["all_0000.png", "all_0001.png", "all_0002.png"]
    # Each packed image decodes as it does alone.
    cli(capsys, "reconstruct", paths[1], "-o", tmp_path / "one.png", "--ckpt", model_dir, "--size", "24")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), np.asarray(Image.open(tmp_path / "out" / "all_0001.png")))


# ---- bad input: one line naming the file, non-zero exit, nothing written --------------------
def _tokens_for(tmp_path: Path, capsys, model_dir: Path) -> Path:
    image = write_photo(tmp_path / "src.png", 16, 16)
    assert cli(capsys, "encode", image, "-o", tmp_path / "good.wtok", "--ckpt", model_dir, "--size", "16")[0] == 0
    assert cli(capsys, "encode", image, "-o", tmp_path / "good.json", "--ckpt", model_dir, "--size", "16")[0] == 0
    return tmp_path / "good.wtok"


def _original_json(tmp_path: Path, name: str, values: np.ndarray, dtype: str = "uint8", **drop) -> Path:
    doc = {
        "wetok": {"data": base64.b64encode(values.astype(dtype).tobytes()).decode(), "dtype": dtype, "shape": [values.size]},
        "config": None,
        "ckpt": None,
        "image_size": 16,
    }
    for key in drop:
        doc.pop(key)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


BAD_INPUTS = [
    "missing", "empty", "truncated", "not-an-image", "unsupported-format", "unknown-extension", "smaller-than-a-token",
    "corrupt-wtok", "truncated-wtok", "truncated-json", "out-of-range", "wrong-dtype", "wrong-shape",
    "json-missing-fields", "other-model", "unwritable-output", "output-is-input",
    "bomb", "bad-format-suffix",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_one_line_nonzero_nothing_written(tmp_path, capsys, model_dir, gd_dir, case):
    m = ["--ckpt", str(model_dir)]
    good = _tokens_for(tmp_path, capsys, model_dir)
    blob = good.read_bytes()
    photo_path = write_photo(tmp_path / "photo.png", 40, 40)
    out = tmp_path / "out" / "result"
    enc = lambda src, *extra: ["encode", src, "-o", f"{out}.wtok", *m, *extra]  # noqa: E731
    dec = lambda src, *extra: ["decode", src, "-o", f"{out}.png", *extra]  # noqa: E731
    if case == "missing":
        argv, named, problem = enc(tmp_path / "nope.png"), "nope.png", "no such file"
    elif case == "empty":
        (tmp_path / "e.jpg").write_bytes(b"")
        argv, named, problem = enc(tmp_path / "e.jpg"), "e.jpg", "empty file"
    elif case == "truncated":
        write_photo(tmp_path / "full.png", 64, 64)
        (tmp_path / "t.png").write_bytes((tmp_path / "full.png").read_bytes()[:200])
        argv, named, problem = enc(tmp_path / "t.png"), "t.png", "truncated or corrupt image"
    elif case == "not-an-image":
        (tmp_path / "n.png").write_text("hello, I am text")
        argv, named, problem = enc(tmp_path / "n.png"), "n.png", "not an image"
    elif case == "unsupported-format":
        (tmp_path / "d.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        argv, named, problem = enc(tmp_path / "d.svg"), "d.svg", "not an image, or a format Pillow cannot read"
    elif case == "unknown-extension":
        (tmp_path / "d.xyz").write_text("x")
        argv, named, problem = ["--input", str(tmp_path / "d.xyz"), "--output", f"{out}.wtok", *m], "d.xyz", "cannot tell the mode"
    elif case == "smaller-than-a-token":
        write_photo(tmp_path / "tiny.png", 3, 9)
        argv, named, problem = enc(tmp_path / "tiny.png", "--size", "0"), "tiny.png", "smaller than one token"
    elif case == "corrupt-wtok":
        bad = bytearray(blob)
        bad[-1] ^= 0x01
        (tmp_path / "c.wtok").write_bytes(bytes(bad))
        argv, named, problem = dec(tmp_path / "c.wtok"), "c.wtok", "checksum mismatch"
    elif case == "truncated-wtok":
        (tmp_path / "t.wtok").write_bytes(blob[:-5])
        argv, named, problem = dec(tmp_path / "t.wtok"), "t.wtok", "truncated .wtok file"
    elif case == "truncated-json":
        (tmp_path / "t.json").write_text((tmp_path / "good.json").read_text()[:150])
        argv, named, problem = dec(tmp_path / "t.json"), "t.json", "not valid JSON"
    elif case == "out-of-range":
        path = _original_json(tmp_path, "r.json", np.full(16 * 2, 200))
        argv, named, problem = dec(path, *m), "r.json", "out of range for 4-bit groups"
    elif case == "wrong-dtype":
        path = _original_json(tmp_path, "f.json", np.zeros(32), dtype="float32")
        argv, named, problem = dec(path, *m), "f.json", "not an integer type"
    elif case == "wrong-shape":
        path = _original_json(tmp_path, "s.json", np.zeros(30))
        argv, named, problem = dec(path, *m), "s.json", "30 tokens do not fill a 4x4 grid of 2 groups"
    elif case == "json-missing-fields":
        path = _original_json(tmp_path, "m.json", np.zeros(32), image_size=True)
        argv, named, problem = dec(path, *m), "m.json", "missing 'image_size'"
    elif case == "other-model":
        argv, named, problem = dec(good, "--ckpt", str(gd_dir)), "good.wtok", "tokens were made by tiny"
    elif case == "unwritable-output":
        (tmp_path / "afile").write_text("x")
        argv = ["encode", str(photo_path), "-o", str(tmp_path / "afile" / "x.wtok"), *m]
        named, problem = "afile/x.wtok", "cannot create the output directory"
        out = tmp_path / "afile" / "x"
    elif case == "output-is-input":
        argv, named, problem = ["reconstruct", str(photo_path), "-o", str(photo_path), *m], "photo.png", "output is the input file itself"
    elif case == "bomb":
        argv, named, problem = enc(photo_path, "--max-pixels", "1000"), "photo.png", "decompression-bomb limit"
    elif case == "bad-format-suffix":
        argv, named, problem = ["decode", str(good), "-o", str(tmp_path / "x.notanimage")], "x.notanimage", "cannot tell the image format"
    before = listing(tmp_path)
    code, stdout, err = cli(capsys, *argv)
    line = one_error_line(err)
    assert code == 2 and stdout == ""
    assert line.startswith("wetok: error: ") and named in line and problem in line, line
    assert listing(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_bomb_guard_can_be_lifted(tmp_path, capsys, model_dir):
    image = write_photo(tmp_path / "big.png", 40, 40)
    assert cli(capsys, "encode", image, "-o", tmp_path / "a.wtok", "--ckpt", model_dir, "--max-pixels", "1000")[0] == 2
    capsys.readouterr()
    assert cli(capsys, "encode", image, "-o", tmp_path / "a.wtok", "--ckpt", model_dir, "--max-pixels", "0", "--size", "16")[0] == 0


def test_debug_shows_the_traceback(tmp_path, capsys, model_dir):
    code, _, err = cli(capsys, "encode", tmp_path / "nope.png", "-o", tmp_path / "x.wtok", "--ckpt", model_dir, "--debug")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("wetok: error: ")


def test_no_model_given_says_there_is_no_default_yet(tmp_path, capsys, no_default_model):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    image = write_photo(tmp_path / "a.png", 16, 16)
    code, _, err = cli(capsys, "encode", image, "-o", tmp_path / "a.wtok")
    assert code == 2
    assert "no model given, and this wetok build has no default model yet" in one_error_line(err)
    assert listing(tmp_path) == ["a.png"]


def test_token_files_of_the_default_model_decode_with_it(tmp_path, capsys, monkeypatch):
    import wetok.weights

    monkeypatch.setattr(wetok.weights, "DEFAULT_MODEL_DIR", tmp_path / "bundled")
    make_model_dir(tmp_path / "bundled")  # stands in for the package's default model
    work = tmp_path / "work"
    image = write_photo(work / "a.png", 24, 32)
    assert cli(capsys, "encode", image, "-o", work / "a.wtok", "--size", "16")[0] == 0
    code, _, err = cli(capsys, "decode", work / "a.wtok", "-o", work / "a_dec.png")
    assert code == 0, err
    assert cli(capsys, "decode", work / "a.wtok", "-o", work / "a_ckpt.png", "--ckpt", tmp_path / "bundled")[0] == 0
    decoded = np.asarray(Image.open(work / "a_dec.png"))
    assert decoded.shape == (16, 16, 3) and np.array_equal(decoded, np.asarray(Image.open(work / "a_ckpt.png")))
    # A later build whose default model has another architecture says so instead of decoding.
    shutil.rmtree(tmp_path / "bundled")
    make_model_dir(tmp_path / "bundled", TokenizerConfig(channels=32, channel_mult=(1, 1, 2), num_res_blocks=1, latent_channels=12, groups=3))
    code, _, err = cli(capsys, "decode", work / "a.wtok", "-o", work / "b.png")
    assert code == 2 and "different architecture" in one_error_line(err)
    assert not (work / "b.png").exists()


def test_usage_errors_exit_2(capsys):
    assert main(["encode", "--size", "big"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--version"]) == 0
    assert wetok.__version__ in capsys.readouterr().out


def test_tile_stats_choose_the_tiled_normalisation(capsys):
    def tile(*extra: str):
        return tile_spec(build_parser().parse_args(["encode", "in.png", "--output", "out", *extra]))

    assert tile() == TileSpec(512, 128, "image")
    assert tile("--tile-stats", "window", "--tile", "256") == TileSpec(256, 128, "window")
    assert tile("--tile", "0") is None
    assert tile("--no-progress") == TileSpec(512, 128, "image", progress=False)
    assert main(["encode", "--tile-stats", "4"]) == 2
    assert "argument --tile-stats: invalid choice: '4'" in capsys.readouterr().err


def test_packed_output_refuses_mixed_sizes(tmp_path, capsys, model_dir):
    a = write_photo(tmp_path / "a.png", 16, 16)
    b = write_photo(tmp_path / "b.png", 16, 24)
    code, out, err = cli(capsys, "encode", a, b, "-o", tmp_path / "ab.wtok", "--ckpt", model_dir, "--size", "0")
    assert code == 1 and out.startswith("wetok: encoded 1 image, skipped 1")
    assert "b.png: token grid (4, 6) differs from the first image's (4, 4)" in err
    assert read_tokens(tmp_path / "ab.wtok").num_images == 1


# ---- real processes ------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_python_dash_m_wetok_runs(tmp_path, model_dir):
    image = write_photo(tmp_path / "a.png", 20, 20)
    done = subprocess.run(
        [sys.executable, "-m", "wetok", "reconstruct", str(image), "-o", str(tmp_path / "b.png"), "--ckpt", str(model_dir), "--size", "16"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "wetok: reconstructed 1 image\n"
    bad = subprocess.run([sys.executable, "-m", "wetok", "decode", str(tmp_path / "no.wtok"), "-o", str(tmp_path / "c.png")],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == f"wetok: error: {tmp_path / 'no.wtok'}: no such file"


def test_console_script_runs(tmp_path, model_dir):
    script = Path(sys.executable).parent / "wetok"
    if not script.exists():
        script = Path(shutil.which("wetok") or "")
    if not script.is_file():
        pytest.skip("the wetok console script is not installed in this environment (pip install -e .)")
    image = write_photo(tmp_path / "a.png", 20, 20)
    done = subprocess.run([str(script), "--input", str(image), "--output", str(tmp_path / "a.wtok"), "--ckpt", str(model_dir), "--size", "16"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_tokens(tmp_path / "a.wtok").grid == (4, 4)


def test_pillow_warnings_about_damaged_metadata_stay_quiet(tmp_path, capsys, monkeypatch, model_dir):
    import warnings

    import wetok.codec

    image = write_photo(tmp_path / "w.png", 16, 16)
    original = wetok.codec.read_image

    def noisy(*args, **kwargs):
        warnings.warn_explicit("Corrupt EXIF data", UserWarning, "TiffImagePlugin.py", 1, module="PIL.TiffImagePlugin")
        return original(*args, **kwargs)

    monkeypatch.setattr(wetok.codec, "read_image", noisy)
    argv = ["encode", image, "-o", tmp_path / "w.wtok", "--ckpt", model_dir, "--size", "16"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli(capsys, *argv) == (0, "wetok: encoded 1 image\n", "")
    assert caught == []
    with pytest.warns(UserWarning, match="Corrupt EXIF data"):
        assert cli(capsys, *argv, "--debug")[0] == 0


def test_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch, model_dir):
    import wetok.codec

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(wetok.codec.Codec, "encode_prepared", exhausted)
    image = write_photo(tmp_path / "a.png", 16, 16)
    code, _, err = cli(capsys, "encode", image, "-o", tmp_path / "a.wtok", "--ckpt", model_dir)
    assert code == 2
    assert one_error_line(err) == (
        "wetok: error: out of memory (CUDA out of memory. Tried to allocate 20.00 GiB); try a smaller --batch-size or --tile"
    )
    assert not (tmp_path / "a.wtok").exists()


def test_generative_decoding_seeds_image_i_of_the_run_with_seed_plus_i(tmp_path, capsys, gd_dir):
    """The same rule as the library and evaluation: the images of a packed file, and the files of
    a folder (an unreadable one counting as one image), get noise from --seed + i, whatever the batching."""
    from wetok.tokenizer import seeded_noise

    images = [write_photo(tmp_path / "in" / f"{k}.png", 16, 16, seed=k) for k in range(3)]
    assert cli(capsys, "encode", *images, "-o", tmp_path / "all.wtok", "--ckpt", gd_dir, "--size", "16")[0] == 0
    tokens = read_tokens(tmp_path / "all.wtok")
    model = wetok.load(gd_dir)
    for batch in ("1", "3"):
        out = tmp_path / f"out{batch}"
        assert cli(capsys, "decode", tmp_path / "all.wtok", "-o", out / "all.png", "--seed", "5", "--batch-size", batch, "--ckpt", gd_dir)[0] == 0
        for k in range(3):
            noise = seeded_noise((model.bits_per_token, *tokens.grid), [5 + k])
            want = np.asarray(to_pil(model.decode(tokens.tokens[k : k + 1], noise=noise))[0]).astype(int)
            got = np.asarray(Image.open(out / f"all_{k:04d}.png")).astype(int)
            assert np.abs(got - want).max() <= 1  # batched convolutions may round one pixel level differently
    folder = tmp_path / "files"
    for k in range(3):
        assert cli(capsys, "encode", images[k], "-o", folder / f"{k}.wtok", "--ckpt", gd_dir, "--size", "16")[0] == 0
    (folder / "0.wtok").write_bytes(b"WTOK broken")
    code, out, _ = cli(capsys, "decode", folder, "-o", tmp_path / "dec", "--seed", "5", "--ckpt", gd_dir)
    assert code == 1 and out.startswith("wetok: decoded 2 images, skipped 1")
    noise = seeded_noise((model.bits_per_token, *tokens.grid), [5 + 2])
    want = np.asarray(to_pil(model.decode(tokens.tokens[2:3], noise=noise))[0]).astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "dec" / "2.png")).astype(int) - want).max() <= 1


# ---- issue 17: hostile and broken inputs --------------------------------------------------------
def _broken_exif_jpeg(path: Path) -> Path:
    """Orientation 6 beside an XResolution stored as text (Pillow's exif_transpose raises TypeError on it)."""
    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (0x011A, 2, 4, b"abc\0"), (0x0128, 2, 4, b"in\0\0")]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHL", t, ty, c) + v for t, ty, c, v in entries) + b"\0" * 4
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 40, 3), 120, np.uint8)).save(path, exif=b"Exif\0\0II*\0" + struct.pack("<L", 8) + ifd)
    return path


def test_broken_metadata_and_decoders_never_end_a_folder_run(tmp_path, capsys, monkeypatch, model_dir):
    from PIL import features

    src = tmp_path / "in"
    write_photo(src / "a.png", 32, 32)
    _broken_exif_jpeg(src / "exif.jpg")
    expect_skipped = []
    if features.check("avif"):
        write_photo(src / "damaged.avif", 32, 48)
        data = bytearray((src / "damaged.avif").read_bytes())
        start = data.find(b"mdat") + 4
        data[start:] = bytes(len(data) - start)  # RuntimeError: Failed to decode frame 0, in Pillow
        (src / "damaged.avif").write_bytes(bytes(data))
        expect_skipped.append("damaged.avif: truncated or corrupt image")
    code, out, err = cli(capsys, "encode", src, "-o", tmp_path / "tok", "--ckpt", model_dir, "--size", "16")
    assert code == (1 if expect_skipped else 0), err
    assert out.startswith("wetok: encoded 2 images") and "Traceback" not in err
    assert all(any(s in line for line in err.splitlines()) for s in expect_skipped)
    assert listing(tmp_path / "tok") == ["a.wtok", "exif.wtok"]
    assert read_tokens(tmp_path / "tok" / "exif.wtok").original_size == (40, 24)  # turned upright: 24 wide, 40 high
    # One file alone: one line naming it.
    code, _, err = cli(capsys, "reconstruct", _broken_exif_jpeg(tmp_path / "one.jpg"), "-o", tmp_path / "one.png", "--ckpt", model_dir,
                       "--size", "0")
    assert code == 0 and Image.open(tmp_path / "one.png").size == (24, 40)
    if expect_skipped:
        code, _, err = cli(capsys, "encode", src / "damaged.avif", "-o", tmp_path / "x.wtok", "--ckpt", model_dir)
        assert code == 2 and "damaged.avif: truncated or corrupt image (RuntimeError" in one_error_line(err)
        assert not (tmp_path / "x.wtok").exists()


@pytest.mark.parametrize("layout", ["two-folders", "one-folder-two-formats", "case-only", "tokens-of-one-stem"])
def test_outputs_that_would_replace_each_other_are_refused_before_any_work(tmp_path, capsys, model_dir, layout):
    if layout == "two-folders":
        inputs = [write_photo(tmp_path / "a" / "x.png", 16, 16), write_photo(tmp_path / "b" / "x.png", 16, 16, seed=1)]
        argv, names = ["encode", *inputs, "-o", tmp_path / "out", "--ckpt", model_dir, "--size", "16"], ["a/x.png", "b/x.png"]
    elif layout == "one-folder-two-formats":
        write_photo(tmp_path / "in" / "x.png", 16, 16)
        write_photo(tmp_path / "in" / "x.jpg", 16, 16, seed=1)
        argv, names = ["reconstruct", tmp_path / "in", "-o", tmp_path / "out", "--ckpt", model_dir, "--size", "16"], ["x.jpg", "x.png"]
    elif layout == "case-only":
        write_photo(tmp_path / "in" / "Photo.png", 16, 16)
        write_photo(tmp_path / "in" / "photo.webp", 16, 16, seed=1)
        argv, names = ["encode", tmp_path / "in", "-o", tmp_path / "out", "--ckpt", model_dir, "--size", "16"], ["Photo.png", "photo.webp"]
    else:
        image = write_photo(tmp_path / "src.png", 16, 16)
        for suffix in ("wtok", "json"):
            assert cli(capsys, "encode", image, "-o", tmp_path / "t" / f"a.{suffix}", "--ckpt", model_dir, "--size", "16")[0] == 0
        argv, names = ["decode", tmp_path / "t" / "a.wtok", tmp_path / "t" / "a.json", "-o", tmp_path / "out", "--ckpt", model_dir], ["a.wtok", "a.json"]
    before = listing(tmp_path)
    code, out, err = cli(capsys, *argv)
    line = one_error_line(err)
    assert code == 2 and out == "" and "would be written there" in line and all(n in line for n in names), line
    assert listing(tmp_path) == before and not (tmp_path / "out").exists()


def test_pictures_of_a_many_image_file_never_replace_another_files_picture(tmp_path, capsys, model_dir):
    images = [write_photo(tmp_path / f"{k}.png", 16, 16, seed=k) for k in range(3)]
    tokens = tmp_path / "t"
    assert cli(capsys, "encode", *images[:2], "-o", tokens / "all.wtok", "--ckpt", model_dir, "--size", "16")[0] == 0
    assert cli(capsys, "encode", images[2], "-o", tokens / "all_0000.wtok", "--ckpt", model_dir, "--size", "16")[0] == 0
    code, out, err = cli(capsys, "decode", tokens, "-o", tmp_path / "out", "--ckpt", model_dir)
    assert code == 1 and out.startswith("wetok: decoded 2 images, skipped 1 (")
    assert "all_0000.png: already the output of" in err and "all_0000.wtok would replace it" in err
    assert listing(tmp_path / "out") == ["all_0000.png", "all_0001.png"]
    cli(capsys, "decode", tokens / "all.wtok", "-o", tmp_path / "alone" / "all.png", "--ckpt", model_dir)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "all_0000.png")), np.asarray(Image.open(tmp_path / "alone" / "all_0000.png")))


def test_special_files_are_refused_alone_and_skipped_in_folders(tmp_path, capsys, model_dir):
    if os.path.exists("/dev/zero"):
        for argv in (["encode", "/dev/zero", "-o", tmp_path / "z.wtok", "--ckpt", model_dir],
                     ["decode", "/dev/zero", "-o", tmp_path / "z.png", "--ckpt", model_dir],
                     ["reconstruct", "/dev/zero", "-o", tmp_path / "z.png", "--ckpt", model_dir]):
            code, _, err = cli(capsys, *argv)
            assert code == 2 and "/dev/zero: is a character device" in one_error_line(err)
    src = tmp_path / "in"
    write_photo(src / "a.png", 16, 16)
    os.mkfifo(src / "pipe.png")  # reading it would wait for a writer forever
    code, out, err = cli(capsys, "encode", src, "-o", tmp_path / "tok", "--ckpt", model_dir, "--size", "16")
    assert code == 1 and out.startswith("wetok: encoded 1 image, skipped 1 (") and "pipe.png: is a named pipe" in err
    assert listing(tmp_path / "tok") == ["a.wtok"]


@pytest.mark.parametrize("shape", [(1, 12000), (9000, 2), (1, 200000)])
def test_extreme_aspect_ratios_are_skipped_not_allocated(tmp_path, capsys, model_dir, shape):
    src = tmp_path / "in"
    write_photo(src / "a.png", 16, 16)
    Image.fromarray(np.zeros((*shape, 3), np.uint8)).save(src / "thin.png")  # a few hundred bytes
    code, out, err = cli(capsys, "encode", src, "-o", tmp_path / "tok", "--ckpt", model_dir)
    assert code == 1 and out.startswith("wetok: encoded 1 image, skipped 1 (")
    assert "thin.png: resizing the shorter side to 256" in err and "over the limit of" in err
    code, _, err = cli(capsys, "reconstruct", src / "thin.png", "-o", tmp_path / "thin_out.png", "--ckpt", model_dir, "--resize", "crop")
    assert code == 2 and "thin.png: resizing the shorter side" in one_error_line(err)
    assert not (tmp_path / "thin_out.png").exists()


OPTION_VALUES = [
    (["--image-format", "../x"], "not an image suffix"),
    (["--image-format", "x/y"], "not an image suffix"),
    (["--image-format", "p ng"], "not an image suffix"),
    (["--image-format", ""], "not an image suffix"),
    (["--image-format", "txt"], "Pillow cannot write"),
    (["--seed", str(10**23)], "argument --seed: must be 0.."),
    (["--seed", str(2**63)], "argument --seed: must be 0.."),
    (["--seed", "-1"], "argument --seed: must be 0.."),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["--batch-size", "-4"], "argument --batch-size: must be at least 1"),
    (["--tile", "1"], "argument --tile: must be 0 or at least 2"),
    (["--tile", "-5"], "argument --tile: must be 0 or at least 2"),
    (["--tile-overlap", "-1"], "argument --tile-overlap: must be at least 0"),
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--device", "cuda:x"], "unknown device"),
    (["--device", "meta"], "unsupported device 'meta'"),
]


@pytest.mark.parametrize("command", ["decode", "reconstruct"])
@pytest.mark.parametrize("extra, problem", OPTION_VALUES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_option_values_are_one_line_exit_2_nothing_written(tmp_path, capsys, model_dir, command, extra, problem):
    image = write_photo(tmp_path / "in" / "a.png", 16, 16)
    src = image if command == "reconstruct" else tmp_path / "in" / "a.wtok"
    if command == "decode":
        assert cli(capsys, "encode", image, "-o", src, "--ckpt", model_dir, "--size", "16")[0] == 0
    before = listing(tmp_path)
    sizing = ["--size", "16"] if command == "reconstruct" else []
    code, out, err = cli(capsys, command, tmp_path / "in", "-o", tmp_path / "out", "--ckpt", model_dir, *sizing, *extra)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith("wetok: error: ") and problem in line, line
    assert listing(tmp_path) == before


@pytest.mark.parametrize(
    "extra, problem",
    [(["--size", "1000000"], "argument --size: must be 0..65535"), (["--size", "-1"], "argument --size"),
     (["--size", "65536"], "must be 0..65535"), (["--size", "20000"], "--size 20000 makes 20000x20000"),
     (["--max-pixels", "-1"], "argument --max-pixels"), (["--tile", "6"], "--tile 6 is smaller than 2 token cells"),
     (["--tile", "64", "--tile-overlap", "32"], "tile overlap 32px must be less than half the tile"),
     (["--batch-size", "0"], "--batch-size")],
)
def test_bad_sizes_and_tiles_for_encoding_are_refused_before_any_work(tmp_path, capsys, model_dir, extra, problem):
    image = write_photo(tmp_path / "a.png", 16, 16)
    code, out, err = cli(capsys, "encode", image, "-o", tmp_path / "out" / "a.wtok", "--ckpt", model_dir, *extra)
    assert code == 2 and out == "" and problem in one_error_line(err), err
    assert listing(tmp_path) == ["a.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys, model_dir):
    image = write_photo(tmp_path / "a.png", 16, 16)
    for command in ("encode", "reconstruct"):
        code, _, err = cli(capsys, command, image, "-o", tmp_path / "out" / "x.png", "--ckpt", model_dir, "--device", "cuda")
        assert code == 2 and "no CUDA device is available" in one_error_line(err)
    assert listing(tmp_path) == ["a.png"]


def test_usage_errors_are_one_line(capsys):
    assert main(["encode", "--size", "big"]) == 2
    assert one_error_line(capsys.readouterr().err) == "wetok: error: argument --size: invalid int value: 'big' (see wetok encode --help)"
    assert main(["decode", "--no-such-option"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith("wetok: error: unrecognized arguments: --no-such-option")
    assert main(["--input", "x.png", "--seed", "1e9"]) == 2
    assert "argument --seed: invalid int value" in one_error_line(capsys.readouterr().err)


def test_sigterm_ends_a_command_with_one_line_and_143(tmp_path, capsys, monkeypatch):
    import signal
    import time

    import wetok.cli.encode

    written = tmp_path / "out.bin"

    def killed_while_writing(args):
        from wetok.files import atomic_write

        def slow(tmp):
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)

        atomic_write(written, slow)
        return 0

    monkeypatch.setattr(wetok.cli.encode, "run", killed_while_writing)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["encode", "x.png", "-o", str(tmp_path / "y")]) == 143
    assert capsys.readouterr().err == "wetok: terminated\n"
    assert signal.getsignal(signal.SIGTERM) is before
    assert listing(tmp_path) == []


def test_wetok_train_keeps_its_own_sigterm_handling(tmp_path, capsys, monkeypatch):
    """While it trains, SIGTERM is `wetok train`'s "checkpoint and stop" (wetok.runs.signals.StopRequest),
    nested inside the command line's handler, which comes back after it."""
    import signal

    from support import TINY_CONFIG, make_images
    from wetok.runs.checkpoints import list_checkpoints
    from wetok.training import loop

    make_images(tmp_path / "data", 4)
    real = loop.generator_terms
    seen = []

    def interrupt(*args, **kwargs):
        seen.append(signal.getsignal(signal.SIGTERM))
        if len(seen) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "generator_terms", interrupt)
    before = signal.getsignal(signal.SIGTERM)
    status = main(["train", "--no-progress", "--config", str(TINY_CONFIG), "--data", str(tmp_path / "data"),
                   "--output", str(tmp_path / "run"), "--steps", "5", "--set", "train.ckpt_every=100"])
    err = capsys.readouterr().err
    assert status == 128 + signal.SIGTERM and "wetok: terminated" not in err
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [1]  # the loop's checkpoint on SIGTERM
    assert getattr(seen[0], "__self__", None).__class__.__name__ == "StopRequest"
    assert signal.getsignal(signal.SIGTERM) is before
