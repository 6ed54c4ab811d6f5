"""Shared test fixtures: paths to the reference data produced by the original implementation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "fixtures" / "reference"
CASES = ("tiny_d16", "tiny_d8_g8", "tiny_gd_d32")


def require_reference() -> Path:
    """The fixtures directory, or skip the test when this checkout has no ../shared beside it."""
    if not (REFERENCE / "cases.json").is_file():
        pytest.skip(f"reference fixtures not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def reference() -> Path:
    return require_reference()


@pytest.fixture(scope="session")
def cases(reference: Path) -> dict:
    return json.loads((reference / "cases.json").read_text())


@pytest.fixture(scope="session")
def expected(reference: Path):
    cache: dict[str, dict] = {}

    def get(case: str) -> dict:
        if case not in cache:
            cache[case] = torch.load(reference / f"{case}_expected.pt", weights_only=True)
        return cache[case]

    return get


@pytest.fixture(scope="session")
def official_architectures(reference: Path) -> dict:
    return json.loads((reference / "official_architectures.json").read_text())


@pytest.fixture
def no_default_model(monkeypatch, tmp_path) -> None:
    """Pretend this build carries no default model (the package's folder is pointed elsewhere)."""
    import wetok.loader

    monkeypatch.setattr(wetok.loader, "DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
