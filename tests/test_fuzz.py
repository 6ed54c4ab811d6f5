"""Fuzzing the inputs a stranger can hand wetok: mutated token files, images, saved-model configs
and training configs. Every outcome must be a success or a clean refusal: exit code 0, 1 (some
files skipped) or 2 with `wetok: ...` lines only (no traceback), and nothing left behind (no
temporary files, no output for an input that failed). Seeded, so a failure names a case that
reproduces; about a few hundred cases in well under a minute."""

from __future__ import annotations

import json
import random
import re
import traceback
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from support import TINY_CONFIG, listing, make_model_dir, photo
from wetok.cli.main import main
from wetok.errors import WetokError
from wetok.training.config import load_train_config

CASES_PER_KIND = 80


# ---- mutations ---------------------------------------------------------------------------------
def mutate_bytes(blob: bytes, rng: random.Random) -> bytes:
    """One of: flip bits, overwrite a run, truncate, insert, append, duplicate a slice, zero a run."""
    data = bytearray(blob)
    kind = rng.randrange(7)
    if kind == 0 or not data:
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        start = rng.randrange(len(data))
        data[start : start + rng.randint(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == 2:
        del data[rng.randrange(len(data)) :]
    elif kind == 3:
        at = rng.randrange(len(data) + 1)
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 4:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 256)))
    elif kind == 5:
        start = rng.randrange(len(data))
        data[start:start] = data[start : start + rng.randint(1, 64)]
    else:
        start = rng.randrange(len(data))
        data[start : start + rng.randint(1, 64)] = bytes(min(64, len(data) - start))
    return bytes(data)


ODD_VALUES = [None, True, -1, 0, 1, 2**40, -(2**63), 1e308, float("nan"), "x", "", "../../etc/passwd", "/abs/path",
              [], [1, 2], {}, {"a": 1}, "\x00", "ü" * 300]


def mutate_document(doc: object, rng: random.Random) -> object:
    """A JSON-like document with one entry replaced by an odd value, deleted, or nested deeply."""
    doc = json.loads(json.dumps(doc))
    containers: list = [doc]
    paths = []
    while containers:
        node = containers.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            paths.append((node, key))
            if isinstance(value, (dict, list)):
                containers.append(value)
    if not paths:
        return doc
    node, key = rng.choice(paths)
    choice = rng.randrange(4)
    if choice == 0 and isinstance(node, dict):
        del node[key]
    elif choice == 1:
        node[key] = f"__DEEP_{rng.choice([10, 1000, 200_000])}__"  # `to_json` writes it as that many nested arrays
    else:
        node[key] = rng.choice(ODD_VALUES)
    return doc


def to_json(doc: object) -> str:
    """JSON text of `doc`, with each "__DEEP_N__" string written as N nested arrays around 1."""
    return re.sub(r'"__DEEP_(\d+)__"', lambda m: "[" * int(m[1]) + "1" + "]" * int(m[1]), json.dumps(doc, allow_nan=True))


# ---- checking one run --------------------------------------------------------------------------
def run_cli(capsys, argv: list[str], what: str) -> tuple[int, str]:
    """Run `wetok ARGV` in-process; fail naming `what` on any exception or non-wetok output."""
    try:
        code = main(argv)
    except Exception:  # noqa: BLE001 - the point: nothing may escape
        pytest.fail(f"{what}: exception escaped the command line:\n{traceback.format_exc()}")
    captured = capsys.readouterr()
    assert code in (0, 1, 2), f"{what}: exit code {code}"
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err, f"{what}: {captured.err}"
    for line in lines:
        assert line.startswith("wetok: "), f"{what}: unexpected line on stderr: {line!r}"
    return code, captured.err


def no_leftovers(folder: Path, what: str) -> None:
    stray = [name for name in listing(folder) if name.endswith(".tmp")]
    assert stray == [], f"{what}: left behind {stray}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("fuzz-model") / "tiny")


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory, model_dir) -> dict[str, bytes]:
    """A valid .wtok, JSON token file, PNG and JPEG made by wetok itself."""
    folder = tmp_path_factory.mktemp("fuzz-valid")
    Image.fromarray(photo(24, 32)).save(folder / "a.png")
    Image.fromarray(photo(24, 32, seed=1)).save(folder / "a.jpg", quality=80)
    assert main(["encode", str(folder / "a.png"), "-o", str(folder / "a.wtok"), "--ckpt", str(model_dir), "--size", "16"]) == 0
    assert main(["encode", str(folder / "a.png"), "-o", str(folder / "a.json"), "--ckpt", str(model_dir), "--size", "16"]) == 0
    return {name: (folder / name).read_bytes() for name in ("a.wtok", "a.json", "a.png", "a.jpg")}


# ---- the fuzz tests ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a.wtok", "a.json"])
def test_mutated_token_files_decode_or_are_refused(tmp_path, capsys, model_dir, valid_files, name):
    rng = random.Random(f"tokens-{name}")
    original = valid_files[name]
    for case in range(CASES_PER_KIND):
        if name.endswith(".json") and case % 2:
            blob = to_json(mutate_document(json.loads(original), rng)).encode()
        else:
            blob = mutate_bytes(original, rng)
        work = tmp_path / f"case{case}"
        work.mkdir()
        (work / name).write_bytes(blob)
        out = work / "out.png"
        what = f"{name} case {case} ({len(blob)} bytes)"
        code, _ = run_cli(capsys, ["decode", str(work / name), "-o", str(out), "--ckpt", str(model_dir)], what)
        if code == 2:
            assert not out.exists(), f"{what}: an output was written for a refused input"
        no_leftovers(work, what)


def test_mutated_images_encode_or_are_skipped(tmp_path, capsys, model_dir, valid_files):
    rng = random.Random("images")
    folder = tmp_path / "in"
    folder.mkdir()
    for case in range(CASES_PER_KIND):
        name = "a.png" if case % 2 else "a.jpg"
        (folder / f"{case:03d}{Path(name).suffix}").write_bytes(mutate_bytes(valid_files[name], rng))
    out = tmp_path / "out"
    code, err = run_cli(capsys, ["encode", str(folder), "-o", str(out), "--ckpt", str(model_dir), "--size", "16",
                                 "--no-progress"], "a folder of mutated images")
    assert code in (0, 1)
    for source in sorted(folder.iterdir()):
        target = out / source.with_suffix(".wtok").name
        skipped = f"wetok: skipped {source}:" in err
        assert target.exists() != skipped, f"{source.name}: output and skip disagree"
    no_leftovers(out, "mutated images")
    # one at a time: a single input that fails is an error with no output
    for case, source in enumerate(sorted(folder.iterdir())[:20]):
        target = tmp_path / f"single{case}.wtok"
        code, _ = run_cli(capsys, ["encode", str(source), "-o", str(target), "--ckpt", str(model_dir), "--size", "16"], source.name)
        assert (code == 0) == target.exists()
    no_leftovers(tmp_path, "single mutated images")


def test_mutated_saved_model_configs_load_or_are_refused(tmp_path, capsys, model_dir, valid_files):
    rng = random.Random("model-config")
    config = json.loads((model_dir / "config.json").read_text())
    weights = (model_dir / "model.safetensors").read_bytes()
    (tmp_path / "a.png").write_bytes(valid_files["a.png"])
    for case in range(CASES_PER_KIND):
        directory = tmp_path / f"model{case}"
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(weights if case % 3 else mutate_bytes(weights, rng))
        (directory / "config.json").write_text(to_json(mutate_document(config, rng)))
        out = tmp_path / f"out{case}.wtok"
        what = f"saved model case {case}: {(directory / 'config.json').read_text()[:200]}"
        code, _ = run_cli(capsys, ["encode", str(tmp_path / "a.png"), "-o", str(out), "--ckpt", str(directory), "--size", "16"], what)
        assert (code == 0) == out.exists(), what
    no_leftovers(tmp_path, "mutated model configs")


def test_mutated_training_configs_parse_or_are_one_line_errors():
    rng = random.Random("train-config")
    base = yaml.safe_load(TINY_CONFIG.read_text())
    for case in range(4 * CASES_PER_KIND):
        doc = mutate_document(base, rng)
        try:
            text = yaml.safe_dump(doc)
        except (yaml.YAMLError, RecursionError):
            continue  # not expressible as YAML: nothing a user could write
        path_text = text if case % 5 else mutate_bytes(text.encode(), rng).decode("utf-8", errors="replace")
        try:
            _load_text(path_text)
        except WetokError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"case {case}: not one line: {message!r}"
        except Exception:  # noqa: BLE001
            pytest.fail(f"training config case {case} escaped as a traceback:\n{path_text[:500]}\n{traceback.format_exc()}")


def _load_text(text: str):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(text)
    try:
        return load_train_config(fh.name)
    finally:
        Path(fh.name).unlink()


def test_random_bytes_under_every_input_suffix(tmp_path, capsys, model_dir):
    """Files that are no format at all, under every suffix the tools accept."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "in"
    folder.mkdir()
    for k, suffix in enumerate([".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".ppm", ".pgm"]):
        (folder / f"r{k}{suffix}").write_bytes(rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes())
    code, _ = run_cli(capsys, ["encode", str(folder), "-o", str(tmp_path / "out"), "--ckpt", str(model_dir), "--no-progress"],
                      "random bytes as images")
    assert code == 2 and not any((tmp_path / "out").rglob("*.wtok"))
    for k, suffix in enumerate([".wtok", ".json"]):
        (folder / f"t{k}{suffix}").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    code, _ = run_cli(capsys, ["decode", str(folder), "-o", str(tmp_path / "dec"), "--ckpt", str(model_dir), "--no-progress"],
                      "random bytes as token files")
    assert code == 2
    no_leftovers(tmp_path, "random bytes")
