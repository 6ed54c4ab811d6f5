"""Shared test fixtures: paths to the reference data produced by the original implementation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support import require_reference


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
    import wetok.weights

    monkeypatch.setattr(wetok.weights, "DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
