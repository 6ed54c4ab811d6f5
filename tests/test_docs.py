"""The documentation agrees with the code and stays a reference for users: the `.wtok` table of
docs/token-formats.md is the format the code writes, every relative link leads to a file, the
README stays short, and no project text names one machine's paths."""

from __future__ import annotations

import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import wetok
from wetok.images import CropBox
from wetok.tokens import _FIXED, TokenSet, write_tokens

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MODEL_CARD = REPO / "src" / "wetok" / "default_model" / "MODEL_CARD.md"

# ---- the .wtok table ----------------------------------------------------------------------------
TYPE_CODES = {"u8": "B", "u16": "H", "u32": "I"}
ROW = re.compile(r"^(\S+)\s+(\S+)\s+(bytes|u8|u16|u32|ascii|utf-8|bits)\s+(.+)$")


def wtok_rows() -> list[tuple[str, str, str, str]]:
    """(offset, size, type, field) of every row of the one `.wtok` table in docs/token-formats.md."""
    text = (REPO / "docs" / "token-formats.md").read_text()
    tables = re.findall(r"```text\n(offset size type +field\n.*?)```", text, flags=re.S)
    assert len(tables) == 1, "docs/token-formats.md must hold the .wtok table exactly once"
    rows = []
    for line in tables[0].splitlines()[1:]:
        match = ROW.match(line)
        assert match, f"unparsable row of the .wtok table: {line!r}"
        rows.append(match.groups())
    return rows


def fixed_rows() -> list[tuple[int, int, str, str]]:
    return [(int(o), int(s), t, f) for o, s, t, f in wtok_rows() if o.isdigit() and s.isdigit() and int(o) < _FIXED.size]


def test_wtok_table_is_documented_once_in_the_docs_only():
    assert wtok_rows()
    assert "offset size type" not in README.read_text()


def test_fixed_part_of_the_table_matches_the_struct():
    """Row by row: offset, size and type of every field of `_FIXED`, and nothing else."""
    codes = re.findall(r"\d*[a-zA-Z]", _FIXED.format.lstrip("<"))
    rows = fixed_rows()
    assert len(rows) == len(codes), f"{len(rows)} documented fields, the struct has {len(codes)}"
    for index, ((offset, size, kind, name), code) in enumerate(zip(rows, codes, strict=True)):
        prefix = "<" + "".join(codes[:index])
        assert offset == struct.calcsize(prefix), f"{name}: documented at {offset}, the struct has it at {struct.calcsize(prefix)}"
        assert size == struct.calcsize("<" + code), f"{name}: documented size {size}, struct code {code!r}"
        expected = f"{size}s" if kind == "bytes" else TYPE_CODES[kind]
        assert code == expected, f"{name}: documented as {kind} {size}, struct code {code!r}"
    last = rows[-1]
    assert last[0] + last[1] == _FIXED.size
    variable = [o for o, *_ in wtok_rows() if not (o.isdigit() and int(o) < _FIXED.size)]
    assert variable[0] == str(_FIXED.size), "the variable part starts where the fixed part ends"


# What the test file below holds, by the first words of each documented field.
TOKENS = torch.randint(0, 2**4, (2, 5, 7, 3), generator=torch.Generator().manual_seed(0))
IDENTITY = wetok.ModelIdentity("0123456789abcdef", preset="imagenet-d16", weights_file="my weights.ckpt", weights="raw")
TOKEN_SET = TokenSet(TOKENS, bits_per_group=4, downsample=4, identity=IDENTITY, crop=CropBox(1, 2, 17, 25),
                     original_size=(300, 451), resize="stretch", size=20)
PRESET, WEIGHTS = b"imagenet-d16", b"my weights.ckpt"
EXPECTED = {
    "magic": b"WTOK",
    "format version": 1,
    "resize mode": 2,
    "header size": 62 + len(PRESET) + len(WEIGHTS),
    "number of images": 2,
    "token grid height": 5,
    "token grid width": 7,
    "groups": 3,
    "bits per group": 4,
    "weights:": 1,
    "downsample factor": 4,
    "resize size": 20,
    "original image height": 300,
    "original image width": 451,
    "crop box top": 1,
    "crop box left": 2,
    "crop box height": 17,
    "crop box width": 25,
    "CRC-32": None,  # checked against the file's own bytes
    "architecture hash": bytes.fromhex("0123456789abcdef"),
    "length P": len(PRESET),
    "preset name": PRESET,
    "length W": len(WEIGHTS),
    "weights file name": WEIGHTS,
    "the tokens": None,  # unpacked by the documented bit order below
}


def field_key(name: str) -> str:
    keys = [key for key in EXPECTED if name.startswith(key)]
    assert len(keys) == 1, f"documented field {name!r} matches {keys or 'none'} of the test's fields"
    return keys[0]


def offset_of(expression: str, p: int, w: int) -> int:
    assert re.fullmatch(r"(\d+|[PW])(\+(\d+|[PW]))*", expression), expression
    return eval(expression, {}, {"P": p, "W": w})  # noqa: S307 - digits, +, P and W only


def test_every_documented_field_reads_back_from_a_written_file(tmp_path):
    path = write_tokens(tmp_path / "two.wtok", TOKEN_SET)
    blob = path.read_bytes()
    p, w = len(PRESET), len(WEIGHTS)
    seen = set()
    for offset_text, size_text, kind, name in wtok_rows():
        key = field_key(name)
        seen.add(key)
        offset = offset_of(offset_text, p, w)
        if kind in TYPE_CODES:
            value = struct.unpack_from("<" + TYPE_CODES[kind], blob, offset)[0]
            assert size_text == str(struct.calcsize(TYPE_CODES[kind])), name
        elif kind in ("bytes", "ascii", "utf-8"):
            size = offset_of(size_text, p, w)
            value = blob[offset : offset + size]
        else:  # the token data
            assert key == "the tokens" and offset == EXPECTED["header size"]
            n, h, wd, g, b = 2, 5, 7, 3, 4
            per_image = (h * wd * g * b + 7) // 8
            assert len(blob) == offset + n * per_image
            raw = np.frombuffer(blob[offset:], np.uint8).reshape(n, per_image)
            bits = np.unpackbits(raw, axis=1, bitorder="little")
            assert not bits[:, h * wd * g * b :].any(), "padding bits are zero"
            values = (bits[:, : h * wd * g * b].reshape(n, h, wd, g, b).astype(np.int64) << np.arange(b)).sum(-1)
            assert np.array_equal(values, TOKENS.numpy())
            continue
        if key == "CRC-32":
            assert value == zlib.crc32(blob[:48] + b"\0\0\0\0" + blob[52:]) & 0xFFFFFFFF
        else:
            assert value == EXPECTED[key], f"{name}: read {value!r} at offset {offset}, wrote {EXPECTED[key]!r}"
    assert seen == set(EXPECTED), f"fields not documented: {sorted(set(EXPECTED) - seen)}"
    assert wetok.read_tokens(path).identity.weights_file == WEIGHTS.decode()


def test_the_example_reader_reads_the_file(tmp_path):
    text = (REPO / "docs" / "token-formats.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "def read_wtok" in b]
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "docs/token-formats.md[read_wtok]", "exec"), namespace)
    path = write_tokens(tmp_path / "two.wtok", TOKEN_SET)
    assert np.array_equal(namespace["read_wtok"](path.read_bytes()), TOKENS.numpy())


# ---- links, length, words -----------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("page", [README, MODEL_CARD, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files: {broken}"


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= 290, f"README.md has {lines} lines; move details into docs/"


def project_text_files() -> list[Path]:
    files = [README, *DOCS, *sorted((REPO / "configs").glob("*.yaml")), *sorted((REPO / "src").rglob("*.md"))]
    files += [p for p in sorted((REPO / "scripts").iterdir()) if p.is_file()]
    return files


WORK_LOG_WORDS = re.compile(r"(?i)session")
"""The vocabulary of a work log, which the project's files never use (history lives in git log)."""


def machine_paths() -> re.Pattern[str]:
    """The absolute folders of the machine the tests run on: the checkout's parent, the temporary
    folder and the home folder. Files name paths relative to the repository, `~/.cache` or `RUN_DIR`."""
    folders = {str(REPO.parent), tempfile.gettempdir(), str(Path.home())} - {"/"}
    return re.compile("|".join(re.escape(folder.rstrip("/") + "/") for folder in sorted(folders)))


@pytest.mark.parametrize("path", project_text_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_project_text_describes_the_software(path):
    """Files speak to users: no account of how they came to be, no one machine's paths."""
    text = path.read_text()
    found = [m.group(0) for pattern in (WORK_LOG_WORDS, machine_paths()) for m in pattern.finditer(text)]
    assert not found, f"{path.relative_to(REPO)}: {sorted(set(found))}"
