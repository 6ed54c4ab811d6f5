"""Helpers shared by the command-line and token-file tests: the reference fixtures' location,
a tiny random-weight model saved to disk, and small test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wetok import Tokenizer, TokenizerConfig
from wetok.cli import main

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference"
CASES = ("tiny_d16", "tiny_d8_g8", "tiny_gd_d32")

TINY = TokenizerConfig(channels=32, channel_mult=(1, 1, 2), num_res_blocks=1, latent_channels=8, groups=2)
"""f = 4, 8 bits per cell in 2 groups of 4 bits: fast enough for many CLI runs."""
TINY_GD = TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=12, groups=3, generative=True)
"""f = 2, generative decoder, 3 groups of 4 bits."""


def require_reference() -> Path:
    """The reference fixtures directory, or skip (CI has ../shared beside the checkout)."""
    if not (REFERENCE / "cases.json").is_file():
        pytest.skip(f"reference fixtures not found at {REFERENCE} (they live in ../shared beside the checkout)")
    return REFERENCE


def make_model_dir(directory: Path, config: TokenizerConfig = TINY, seed: int = 0) -> Path:
    """Save a random-weight tokenizer (`Tokenizer.save`) into `directory`."""
    torch.manual_seed(seed)
    model = Tokenizer(config)
    with torch.no_grad():
        for p in model.parameters():  # larger weights than the default init: varied tokens
            p.add_(torch.randn_like(p) * 0.05)
    return model.save(directory)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 (H, W, 3) picture."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def write_photo(path: Path, height: int, width: int, seed: int = 0, **save_args) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(height, width, seed)).save(path, **save_args)
    return path


def listing(directory: Path) -> list[str]:
    """Every file under `directory` (relative names), hidden ones too: catches left-over temp files."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """Run `wetok ARGV` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
