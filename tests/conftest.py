"""Shared test fixtures: paths to the reference data produced by the original implementation.

Without those fixtures the tests that need them skip, or under CI=true fail (`support.require_reference`),
and the run ends with one line saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support import REFERENCE, REFERENCE_NOT_FOUND, require_reference

_missing: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and REFERENCE_NOT_FOUND in report.longreprtext:
        _missing.add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _missing:
        terminalreporter.write_line(
            f"CI=true and no reference fixtures at {REFERENCE}: {len(_missing)} test(s) that need them failed; "
            "put ../shared (with fixtures/reference) beside the checkout, or name the folder in $WETOK_REFERENCE",
            red=True, bold=True)


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
