"""Helpers shared by the training tests: tiny image folders and tiny configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny-cpu.yaml"


def make_images(folder: Path, count: int = 6, size: tuple[int, int] = (40, 56), seed: int = 0) -> list[Path]:
    """`count` smooth random RGB PNGs (height, width = size) in folder/a and folder/b/c (nested)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        sub = folder / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, size=(size[0] // 8 + 1, size[1] // 8 + 1, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((size[1], size[0]), Image.BILINEAR)
        path = sub / f"img{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def read_metrics(run_dir: Path) -> list[dict]:
    """The JSON lines of RUN_DIR/metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
