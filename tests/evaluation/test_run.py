"""The evaluation driver: protocol numbers against an independent scikit-image computation,
skips, rFID statistics reuse, generative-decoder determinism, grid (sharding: test_data.py;
nothing evaluable, strict JSON and exactly-once checks: test_report.py).

The model is a random-weight tokenizer (`support.make_model_dir`): what is tested is the
protocol, which holds for any model, so these tests need no reference fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.metrics as skimage_metrics
import torch

import wetok
from support import TINY, TINY_GD, calibrated_inception, make_model_dir, photo_folder
from wetok.errors import WetokError
from wetok.evaluation import EvalConfig, Networks, evaluate, format_table, parse_metrics
from wetok.images import read_image, resize_shorter_center_crop, to_tensor, to_uint8
from wetok.metrics.lpips import LPIPS


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> wetok.Tokenizer:
    """f = 4, 2 groups of 4 bits: 8 bits per token."""
    return wetok.load(make_model_dir(tmp_path_factory.mktemp("model"), TINY))


def _files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.name != "broken.jpg"),
                  key=lambda p: p.relative_to(folder).as_posix())


def test_256_protocol_equals_independent_scikit_image(folder: Path, model: wetok.Tokenizer) -> None:
    # batch size 1 as below: convolutions may round differently in other batch sizes
    config = EvalConfig(data=folder, size=64, metrics="psnr,ssim,usage", batch_size=1, per_image=True, progress=False)
    report = evaluate(model, config, device="cpu").report
    want_psnr, want_ssim = [], []
    for path in _files(folder):
        original = resize_shorter_center_crop(np.asarray(read_image(path)), 64)
        recon = to_uint8(model.reconstruct(to_tensor(original)))[0]
        want_psnr.append(skimage_metrics.peak_signal_noise_ratio(original, recon))
        want_ssim.append(skimage_metrics.structural_similarity(original, recon, data_range=255, channel_axis=-1))
    got = report["per_image"]
    assert [r["path"] for r in got] == [p.relative_to(folder).as_posix() for p in _files(folder)]
    np.testing.assert_allclose([r["psnr"] for r in got], want_psnr, rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["ssim"] for r in got], want_ssim, rtol=0, atol=1e-9)
    assert report["metrics"]["psnr"] == pytest.approx(np.mean(want_psnr), abs=1e-9)
    assert report["metrics"]["ssim"] == pytest.approx(np.mean(want_ssim), abs=1e-9)
    assert report["num_images"] == 5 and report["bpp"] == pytest.approx(16 * 16 * 8 / 64**2)
    assert [s["path"] for s in report["skipped"]] == ["broken.jpg"] and "not an image" in report["skipped"][0]["reason"]
    usage = report["metrics"]["usage"]
    assert usage["tokens_per_group"] == 5 * 16 * 16 and len(usage["groups"]) == 2
    assert all(0 < g["entropy_bits"] <= 4 and 0 < g["usage"] <= 1 for g in usage["groups"])
    assert report["dataset"]["kind"] == "folder" and report["protocol"]["resolution"] == 64
    table = format_table(report)
    assert "| PSNR (dB) ↑ |" in table and f"{report['metrics']['psnr']:.3f}" in table


def test_original_resolution_pads_to_f_and_skips_large(folder: Path, model: wetok.Tokenizer) -> None:
    config = EvalConfig(data=folder, size=None, metrics="psnr,ssim", max_side=75, per_image=True, progress=False)
    report = evaluate(model, config, device="cpu").report
    kept = [p for p in _files(folder) if max(read_image(p).size) <= 75]
    skipped = {s["path"] for s in report["skipped"]}
    assert skipped == {"broken.jpg", "sub/coffee.jpg", "chelsea.png"}  # 61x80 and 96x64 are above 75 px
    for path, row in zip(kept, report["per_image"]):
        original = np.asarray(read_image(path))
        recon = to_uint8(model.reconstruct(to_tensor(original)))[0]  # pads centrally to 4, crops back
        assert recon.shape == original.shape
        assert row["psnr"] == pytest.approx(skimage_metrics.peak_signal_noise_ratio(original, recon), abs=1e-9)
        h, w = original.shape[:2]
        assert row["bpp"] == pytest.approx(-(-h // 4) * -(-w // 4) * 8 / (h * w))
    with pytest.raises(WetokError, match="not a multiple"):
        evaluate(model, EvalConfig(data=folder, size=None, metrics="psnr", pad_multiple=6, progress=False), device="cpu")


def test_truncating_uint8_and_wider_padding(folder: Path, model: wetok.Tokenizer) -> None:
    """`uint8="truncate"` converts both images as the original scripts do; `pad_multiple` 16 on a
    f = 4 model pads further (more tokens, so more bits per pixel)."""
    config = EvalConfig(data=folder, size=None, metrics="psnr,ssim", uint8="truncate", pad_multiple=16, limit=1,
                        per_image=True, progress=False)
    row = evaluate(model, config, device="cpu").report["per_image"][0]
    original = np.asarray(read_image(folder / row["path"]))  # 70x45
    x = to_tensor(original)
    padded, box = wetok.pad_to_multiple(x, 16)
    recon = wetok.crop(model.decode(model.encode(padded)), box)

    def truncate(t: torch.Tensor) -> np.ndarray:
        return ((t.clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).permute(0, 2, 3, 1)[0].numpy()

    assert row["psnr"] == pytest.approx(skimage_metrics.peak_signal_noise_ratio(truncate(x), truncate(recon)), abs=1e-9)
    assert row["ssim"] == pytest.approx(
        skimage_metrics.structural_similarity(truncate(x), truncate(recon), data_range=255, channel_axis=-1), abs=1e-9)
    assert row["bpp"] == pytest.approx(12 * 20 * 8 / (45 * 70))  # padded to 48x80: a 12x20 token grid


def test_random_networks_lpips_rfid_and_statistics_reuse(folder: Path, model: wetok.Tokenizer, tmp_path: Path) -> None:
    torch.manual_seed(0)
    nets = Networks(lpips_alex=LPIPS("alex", pretrained=False), inception=calibrated_inception())
    config = EvalConfig(data=folder, size=32, metrics="lpips_alex,rfid", limit=4, batch_size=4,
                        fid_stats=tmp_path / "ref.npz", progress=False, per_image=True)
    first = evaluate(model, config, networks=nets, device="cpu").report
    assert first["fid_statistics"]["reused"] is False and (tmp_path / "ref.npz").is_file()
    second = evaluate(model, config, networks=nets, device="cpu").report
    assert second["fid_statistics"]["reused"] is True
    assert second["metrics"]["rfid"] == first["metrics"]["rfid"] > 0
    images = [resize_shorter_center_crop(np.asarray(read_image(p)), 32) for p in _files(folder)[:3]]  # limit 4 incl. broken
    x = to_tensor(np.stack(images))
    want = nets.lpips_alex(x, model.reconstruct(x))
    np.testing.assert_allclose([r["lpips_alex"] for r in first["per_image"]], want.numpy(), rtol=1e-5)
    # A statistics file made for other files is refused, not silently reused.
    with pytest.raises(WetokError, match="other files or another protocol"):
        evaluate(model, EvalConfig(data=folder, size=32, metrics="rfid", limit=3, fid_stats=tmp_path / "ref.npz",
                                   progress=False), networks=nets, device="cpu")


def test_generative_decoder_noise_is_per_image(folder: Path, tmp_path: Path) -> None:
    gd = wetok.load(make_model_dir(tmp_path / "gd", TINY_GD))  # f = 2, 12 bits per token
    config = EvalConfig(data=folder, size=64, metrics="psnr", batch_size=1, limit=3, seed=7, per_image=True, progress=False)
    report = evaluate(gd, config, device="cpu").report
    for row, index in zip(report["per_image"], (0, 2)):  # file 1 is the broken one
        original = resize_shorter_center_crop(np.asarray(read_image(folder / row["path"])), 64)
        tokens = gd.encode(to_tensor(original))
        noise = torch.randn((1, 12, 32, 32), generator=torch.Generator().manual_seed(7 + index))
        recon = to_uint8(gd.decode(tokens, noise=noise))[0]
        assert row["psnr"] == pytest.approx(skimage_metrics.peak_signal_noise_ratio(original, recon), abs=1e-9)
    # Batching changes no image's noise: the same numbers up to convolution rounding.
    batched = evaluate(gd, EvalConfig(data=folder, size=64, metrics="psnr", batch_size=3, limit=3, seed=7, per_image=True,
                                      progress=False), device="cpu").report
    np.testing.assert_allclose([r["psnr"] for r in batched["per_image"]], [r["psnr"] for r in report["per_image"]], rtol=1e-5)


def test_grid_and_baselines(folder: Path, model: wetok.Tokenizer) -> None:
    config = EvalConfig(data=folder, size=64, metrics="psnr,ssim", baselines=("jpeg", "webp"), grid_count=3, progress=False)
    result = evaluate(model, config, device="cpu")
    assert result.grid is not None and result.grid.size == (5 * (64 * 4 + 4) + 4, 18 + 3 * (64 * 4 + 4) + 4)
    for codec in ("jpeg", "webp"):
        entry = result.report["baselines"][codec]
        assert set(entry) >= {"bpp", "target_bpp", "psnr", "ssim", "quality"}
        assert entry["target_bpp"] == pytest.approx(0.5) and entry["bpp"] > 0
    assert "| jpeg | webp |" in format_table(result.report)


def test_bad_settings_are_one_line_errors(tmp_path: Path, model: wetok.Tokenizer) -> None:
    with pytest.raises(WetokError, match="unknown metric 'psim'"):
        parse_metrics("psnr,psim")
    assert parse_metrics("lpips,psnr") == ("psnr", "lpips_alex", "lpips_vgg")
    with pytest.raises(WetokError, match="no such folder"):
        evaluate(model, EvalConfig(data=tmp_path / "absent", metrics="psnr", progress=False), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WetokError, match="no image files"):
        evaluate(model, EvalConfig(data=tmp_path / "empty", metrics="psnr", progress=False), device="cpu")
    with pytest.raises(WetokError, match="unknown baseline codec"):
        EvalConfig(data=tmp_path, baselines=("gif",))


def test_a_network_metric_without_its_network_is_reported_unavailable(folder: Path, model: wetok.Tokenizer) -> None:
    nets = Networks(lpips_alex=LPIPS("alex", pretrained=False))
    report = evaluate(model, EvalConfig(data=folder, size=32, metrics="all", limit=3, progress=False), networks=nets,
                      device="cpu").report
    assert report["unavailable"] == {"lpips_vgg": "no network given", "rfid": "no network given"}
    assert set(report["metrics"]) == {"psnr", "ssim", "lpips_alex", "usage"}
