"""scripts/ship_default_model.py: a run's latest checkpoint becomes the package's default model,
with a model card whose numbers are the shipped files' own (here a 2-step tiny run, shipped into a
temporary folder instead of the package)."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch
from safetensors import safe_open

import wetok
import wetok.weights
from support import REPO, TINY_CONFIG, make_images, photo_folder
from wetok.cli.main import main
from wetok.evaluation import EvalConfig, evaluate

pytest.importorskip("skimage")


def load_script():
    spec = importlib.util.spec_from_file_location("ship_default_model", REPO / "scripts" / "ship_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_objective_in_words():
    from wetok.training.config import LossSection

    script = load_script()
    words = script.objective(LossSection(l1_weight=0, l2_weight=10, gan_weight=0, perceptual_weight=0, entropy_weight=0.05))
    assert words.startswith("10 x MSE + 0.05 x group-wise LFQ entropy + 0.25 x commitment; no GAN and no LPIPS (")
    assert script.objective(LossSection()) == "L1 + LPIPS + 0.1 x GAN + 0.1 x group-wise LFQ entropy + 0.25 x commitment"


def test_target_sentence_names_the_parts_met():
    script = load_script()
    assert script.target_sentence(26.0, 0.78).startswith("meets the project's target (mean PSNR >= 26 dB")
    assert script.target_sentence(25.58, 0.7802).startswith("meets the project's SSIM target but **not** its PSNR target (")
    assert script.target_sentence(26.1, 0.77).startswith("meets the project's PSNR target but **not** its SSIM target (")
    assert script.target_sentence(25.9, 0.779).startswith("does **not** meet the project's target (")


def test_ship_writes_weights_card_and_grid(tmp_path, capsys, monkeypatch):
    make_images(tmp_path / "data", 4)
    run = tmp_path / "run"
    assert main(["train", "--no-progress", "--config", str(TINY_CONFIG), "--data", str(tmp_path / "data"),
                 "--output", str(run), "--steps", "2"]) == 0
    heldout = photo_folder(tmp_path / "heldout")
    script = load_script()
    target = tmp_path / "package" / "default_model"
    monkeypatch.setattr(wetok.weights, "DEFAULT_MODEL_DIR", target)
    monkeypatch.setattr(script, "DEFAULT_MODEL_DIR", target)
    monkeypatch.setattr(script, "GRID", tmp_path / "docs" / "grid.png")
    capsys.readouterr()
    assert script.main(["--run", str(run), "--heldout", str(heldout), "--wall-time", "2 s", "--dtype", "float16",
                        "--history", "L1 for a step, then MSE."]) == 0
    printed = capsys.readouterr().out

    assert sorted(p.name for p in target.iterdir()) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    with safe_open(str(target / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert (tmp_path / "docs" / "grid.png").is_file()
    model = wetok.load()
    assert json.loads((target / "config.json").read_text())["config"] == model.config.to_dict()

    # The card's numbers are those of the shipped model, evaluated again here.
    again = evaluate(model, EvalConfig(data=heldout, metrics=("psnr", "ssim"), grid_count=0, progress=False)).report
    card = (target / "MODEL_CARD.md").read_text()
    row = re.search(r"\| wetok default model \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", card)
    assert row and float(row[2]) == pytest.approx(again["metrics"]["psnr"], abs=0.006)
    assert float(row[3]) == pytest.approx(again["metrics"]["ssim"], abs=6e-5)
    assert f"held-out PSNR {again['metrics']['psnr']:.2f} dB" in printed
    assert "| JPEG " in card and "| WEBP " in card and "does **not** meet" in card
    assert "2 steps (2 s)" in card and model.config.architecture_hash() in card
    assert "Stored in float16: the float32 weights give" in card
    # tiny-cpu.yaml: L1 1.0, GAN 0.1, entropy 0.1, commitment 0.25, LPIPS off
    assert ("- Objective at the end: L1 + 0.1 x GAN + 0.1 x group-wise LFQ entropy + 0.25 x commitment; no LPIPS (the "
            "ImageNet VGG16 weights") in card
    assert "- How the run got there: L1 for a step, then MSE." in card
    assert len(re.findall(r"^\| [\w/]+\.(png|jpg) \|", card, flags=re.M)) == 5  # per image; the broken file skipped
