"""The models the benchmarks run, by name: what `--model` / `--models` of `tiling.py` and
`throughput.py` take.

- `default`: the bundled default model (trained weights);
- a fixture case of ../shared/fixtures/reference or $WETOK_REFERENCE (`tiny_d16`, `tiny_d8_g8`, `tiny_gd_d32`): the
  original code's random weights, EMA;
- a model file or folder (`wetok.load`, e.g. a trained run's model);
- a preset name (`imagenet-d16`, ...): its architecture with seeded random weights, since the
  released weights are not bundled (speed does not depend on them; quality does).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

import wetok
from wetok.tokenizer import Tokenizer

REFERENCE = Path(os.environ.get("WETOK_REFERENCE") or Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference")
FIXTURES = ("tiny_d16", "tiny_d8_g8", "tiny_gd_d32")
NAMES = f"default, a fixture case ({', '.join(FIXTURES)}), a model file or folder, or a preset (random weights)"


def check_name(name: str) -> str:
    """`name` when it is one of the kinds above (a fixture's checkpoint may still be missing: that
    is said on loading), else SystemExit with one line."""
    if name != "default" and name not in FIXTURES and not Path(name).exists() and name not in wetok.PRESETS:
        raise SystemExit(f"unknown model {name!r}: give {NAMES}")
    return name


def load_model(name: str, device: str | torch.device = "cpu") -> tuple[Tokenizer, str]:
    """(model in eval mode, float32 on `device`; what it is, in words) for a name as above."""
    check_name(name)
    if name == "default":
        return wetok.load(None, device=device), "the bundled default model (trained weights)"
    if name in FIXTURES:
        if not (REFERENCE / f"{name}.ckpt").is_file():
            raise SystemExit(f"fixture checkpoint {REFERENCE / name}.ckpt not found")
        model = wetok.load(REFERENCE / f"{name}.ckpt", config=REFERENCE / f"{name}.yaml", device=device)
        return model, f"{name}: fixture checkpoint (random weights of the original code, EMA)"
    if Path(name).exists():
        return wetok.load(name, device=device), f"{name} (trained weights)"
    torch.manual_seed(0)
    model = Tokenizer(wetok.get_preset(name)).to(device).eval()
    return model, f"{name} architecture with RANDOM weights (released weights are not available here)"
