"""gFID with the ADM evaluator's protocol: the numbers of `evaluate_samples` against an independent
computation from the network's features (FID and sFID from the singular values of the centred
features' cross products, Inception Score from scipy's KL divergence, precision and recall by brute
force), the reference's precomputed statistics, the cache, and safe reading of `.npz` files.
The network is a random-weight Inception with calibrated BatchNorm statistics (`support`)."""

from __future__ import annotations

import copy
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy

from support import calibrated_inception
from wetok.ar.gfid import (
    ImageBatchFile,
    default_cache_dir,
    evaluate_samples,
    network_digest,
    read_image_batch,
    read_precomputed_statistics,
    reference_statistics,
)
from wetok.errors import WetokError
from wetok.metrics.fid import GaussianStats, frechet_distance
from wetok.metrics.inception import FEATURE_DIM, SPATIAL_DIM, FIDInceptionV3

RNG = np.random.default_rng(11)
SAMPLES = RNG.integers(0, 256, size=(7, 64, 64, 3), dtype=np.uint8)
REFERENCE = np.concatenate([SAMPLES[:4], (RNG.integers(0, 256, size=(5, 64, 64, 3)) * 0.7 + 40).astype(np.uint8)])
"""Four images in common: precision and recall are not 0, and not decided by a tie."""


@pytest.fixture(scope="module")
def net() -> FIDInceptionV3:
    return calibrated_inception(0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gfid")
    np.savez(root / "samples.npz", SAMPLES)
    np.savez_compressed(root / "ref.npz", REFERENCE, np.arange(len(REFERENCE)))  # arr_1: labels, as ADM's batches
    return root


def _nuclear_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """FD of the Gaussian fits of x (n1, D) and y (n2, D): with centred A, B, S1 = A^T A / (n1 - 1) and
    S2 = B^T B / (n2 - 1), tr((S1 S2)^(1/2)) is the sum of the singular values of A B^T / sqrt((n1 - 1)(n2 - 1))."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    a, b = x - x.mean(0), y - y.mean(0)
    n1, n2 = len(x) - 1, len(y) - 1
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (a * a).sum() / n1 + (b * b).sum() / n2 - 2 * tr_covmean)


def _brute_pr(reference: np.ndarray, samples: np.ndarray, k: int = 3) -> tuple[float, float]:
    def dist(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return ((u[:, None, :].astype(np.float64) - v[None, :, :]) ** 2).sum(-1)

    r_ref = np.sort(dist(reference, reference), axis=1)[:, k]
    r_smp = np.sort(dist(samples, samples), axis=1)[:, k]
    d = dist(reference, samples)
    return float((d <= r_ref[:, None]).any(0).mean()), float((d <= r_smp[None, :]).any(1).mean())


@pytest.fixture(scope="module")
def features(net: FIDInceptionV3) -> dict[str, np.ndarray]:
    """The network's outputs on all images at once (one batch each)."""
    with torch.no_grad():
        s, r = net.adm_features(torch.from_numpy(SAMPLES)), net.adm_features(torch.from_numpy(REFERENCE))
    return {"s_pool": s.pool.numpy(), "s_spatial": s.spatial.numpy(), "s_logits": s.logits.numpy(),
            "r_pool": r.pool.numpy(), "r_spatial": r.spatial.numpy()}


@pytest.fixture(scope="module")
def first_run(net: FIDInceptionV3, data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        result = evaluate_samples(data / "samples.npz", data / "ref.npz", network=net, batch_size=3, progress=False)
        cached = reference_statistics(data / "ref.npz", net, progress=False)
    return {"result": result, "cached": cached, "cache": cache}


def test_numbers_match_an_independent_computation(first_run: dict, features: dict[str, np.ndarray]) -> None:
    got = first_run["result"]
    f = features
    assert got["num_samples"] == 7 and got["num_reference"] == 9 and got["reference_statistics"] == "computed"
    assert got["fid"] == pytest.approx(_nuclear_frechet(f["s_pool"], f["r_pool"]), rel=1e-5)
    assert got["sfid"] == pytest.approx(_nuclear_frechet(f["s_spatial"], f["r_spatial"]), rel=1e-5)
    p = softmax(f["s_logits"].astype(np.float64), axis=1)
    want_is = float(np.exp(np.mean(entropy(p, p.mean(0)[None, :], axis=1))))  # one split: 7 < 5000
    assert got["inception_score"] == pytest.approx(want_is, rel=1e-4)
    precision, recall = _brute_pr(f["r_pool"], f["s_pool"])
    assert (got["precision"], got["recall"]) == (precision, recall)
    assert got["fid"] > 1e-3 and got["sfid"] > 1e-3 and got["inception_score"] > 1 + 1e-4  # informative, not degenerate
    assert precision >= 4 / 7 and recall >= 4 / 9 and precision * recall < 1  # the shared images, and not all


def test_the_reference_is_cached(first_run: dict, features: dict[str, np.ndarray]) -> None:
    """In $XDG_CACHE_HOME/wetok/gfid: the reference's pool features and statistics, reused."""
    assert not first_run["result"]["reference_cached"]
    cached = first_run["cached"]
    assert cached.from_cache and not cached.precomputed and cached.count == 9
    np.testing.assert_allclose(cached.pool, features["r_pool"], rtol=1e-4, atol=1e-4)  # batches of 3 against one of 9
    np.testing.assert_allclose(cached.spatial_stats.sigma, np.cov(features["r_spatial"].astype(np.float64), rowvar=False),
                               rtol=1e-3, atol=1e-4)
    files = list((first_run["cache"] / "wetok" / "gfid").iterdir())
    assert files == [cached.cache_path] and files[0].suffix == ".npz"


def test_precomputed_reference_statistics(net: FIDInceptionV3, features: dict[str, np.ndarray], tmp_path: Path) -> None:
    """ADM's reference batches carry mu, sigma, mu_s, sigma_s: FID and sFID use them, and precision
    and recall the features of the reference's images."""
    rng = np.random.default_rng(5)
    g, g_s = rng.normal(size=(10, FEATURE_DIM)) * 0.3, rng.normal(size=(9, SPATIAL_DIM)) * 0.2
    np.savez(tmp_path / "ref_stats.npz", REFERENCE[:4], np.arange(4), mu=g.mean(0), sigma=np.cov(g, rowvar=False),
             mu_s=g_s.mean(0), sigma_s=np.cov(g_s, rowvar=False))
    ref = reference_statistics(tmp_path / "ref_stats.npz", net, cache_dir=tmp_path / "cache", progress=False)
    assert ref.precomputed and not ref.from_cache and ref.count == 4
    assert np.array_equal(ref.stats.mu, g.mean(0)) and np.array_equal(ref.spatial_stats.sigma, np.cov(g_s, rowvar=False))
    np.testing.assert_allclose(ref.pool, features["r_pool"][:4], rtol=1e-4, atol=1e-4)
    samples = GaussianStats.from_features(features["s_pool"])
    assert frechet_distance(samples, ref.stats) == pytest.approx(_nuclear_frechet(features["s_pool"], g), rel=1e-5)
    again = reference_statistics(tmp_path / "ref_stats.npz", net, cache_dir=tmp_path / "cache", progress=False)
    assert again.from_cache and again.precomputed and np.array_equal(again.stats.sigma, np.cov(g, rowvar=False))
    assert np.array_equal(again.pool, ref.pool)


def test_cache_key_and_folder(net: FIDInceptionV3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "wetok" / "gfid"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "wetok" / "gfid"
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.network.Mixed_6e.branch1x1.bn.running_mean[0] += 1
    assert network_digest(other) != network_digest(net) == network_digest(copy.deepcopy(net))


def test_a_damaged_or_unwritable_cache_is_not_fatal(net: FIDInceptionV3, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "small.npz", REFERENCE[4:6, :16, :16])
    first = reference_statistics(tmp_path / "small.npz", net, cache_dir=tmp_path / "cache", progress=False)
    assert first.cache_path is not None and first.cache_path.is_file() and not first.from_cache
    assert reference_statistics(tmp_path / "small.npz", net, cache_dir=tmp_path / "cache", progress=False).from_cache
    first.cache_path.write_bytes(b"not an npz")
    second = reference_statistics(tmp_path / "small.npz", net, cache_dir=tmp_path / "cache", progress=False)
    assert not second.from_cache and np.array_equal(second.pool, first.pool)
    (tmp_path / "afile").write_text("x")
    third = reference_statistics(tmp_path / "small.npz", net, cache_dir=tmp_path / "afile" / "cache", progress=False)
    assert np.array_equal(third.pool, first.pool)
    assert "cannot write the reference cache" in capsys.readouterr().err


# ---- reading .npz files -------------------------------------------------------------------------
@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batches_stream_the_images(tmp_path: Path, compressed: bool, batch_size: int) -> None:
    (np.savez_compressed if compressed else np.savez)(tmp_path / "x.npz", SAMPLES[:7])
    batch = read_image_batch(tmp_path / "x.npz")
    assert (batch.count, batch.height, batch.width) == (7, 64, 64)
    parts = list(batch.batches(batch_size))
    assert [len(p) for p in parts] == [min(batch_size, 7 - i) for i in range(0, 7, batch_size)]
    assert np.array_equal(np.concatenate(parts), SAMPLES[:7]) and all(p.flags.writeable for p in parts)


def test_fortran_order_is_read_whole(tmp_path: Path) -> None:
    images = np.asfortranarray(SAMPLES[:4])
    np.savez(tmp_path / "f.npz", images)
    batch = read_image_batch(tmp_path / "f.npz")
    assert batch.fortran_order and np.array_equal(np.concatenate(list(batch.batches(3))), SAMPLES[:4])


def _zip_with_header(path: Path, shape: tuple[int, ...], data: bytes, version: int = 1) -> None:
    import io

    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    (np.lib.format.write_array_header_1_0 if version == 1 else np.lib.format.write_array_header_2_0)(buffer, header)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("arr_0.npy", buffer.getvalue() + data)


def test_npy_format_2_and_deflate(tmp_path: Path) -> None:
    """Version 2.0 headers (as files written in a stream with zip64 have) in a compressed member."""
    _zip_with_header(tmp_path / "v2.npz", SAMPLES[:3].shape, SAMPLES[:3].tobytes(), version=2)
    batch = read_image_batch(tmp_path / "v2.npz")
    assert np.array_equal(np.concatenate(list(batch.batches(2))), SAMPLES[:3])


def _truncated(path: Path) -> None:
    np.savez(path, SAMPLES[:3])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _flipped_byte(path: Path) -> None:
    np.savez(path, SAMPLES[:3])
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the stored image data: the member's CRC fails
    path.write_bytes(bytes(blob))


BAD_FILES = {
    "no-arr_0": (lambda p: np.savez(p, images=SAMPLES[:3]), "no arr_0 array"),
    "float": (lambda p: np.savez(p, SAMPLES[:3].astype(np.float32)), "dtype float32, expected uint8"),
    "pickled": (lambda p: np.savez(p, np.array([{"a": 1}, None], dtype=object)), "Python objects (a pickled array)"),
    "rgba": (lambda p: np.savez(p, np.zeros((3, 4, 4, 4), np.uint8)), "expected (N, H, W, 3)"),
    "grey": (lambda p: np.savez(p, np.zeros((3, 4, 4), np.uint8)), "expected (N, H, W, 3)"),
    "one-image": (lambda p: np.savez(p, SAMPLES[:1]), "need at least 2"),
    "truncated": (_truncated, "not a valid .npz file"),
    "not-a-zip": (lambda p: p.write_text("hello"), "not a valid .npz file"),
    "absurd": (lambda p: _zip_with_header(p, (10**9, 256, 256, 3), b"\0" * 10), "at most"),
    "short-data": (lambda p: _zip_with_header(p, (20, 8, 8, 3), b"\0" * 100), "damaged file"),
    "not-npy": (lambda p: zipfile.ZipFile(p, "w").writestr("arr_0.npy", b"garbage!" * 20), "not a .npy array"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_are_one_line_errors(tmp_path: Path, name: str) -> None:
    write, message = BAD_FILES[name]
    path = tmp_path / f"{name}.npz"
    write(path)
    with pytest.raises(WetokError) as info:
        read_image_batch(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_damaged_data_is_found_while_reading(tmp_path: Path) -> None:
    _flipped_byte(tmp_path / "x.npz")
    batch = read_image_batch(tmp_path / "x.npz")  # the header is intact
    with pytest.raises(WetokError, match="damaged arr_0.npy data.*CRC"):
        list(batch.batches(2))


def test_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(WetokError, match="is a directory"):
        read_image_batch(tmp_path)
    with pytest.raises(WetokError, match="no such file"):
        read_image_batch(tmp_path / "missing.npz")


def test_precomputed_statistics_are_checked(tmp_path: Path) -> None:
    mu, sigma = np.zeros(FEATURE_DIM, np.float32), np.eye(FEATURE_DIM, dtype=np.float32)
    mu_s, sigma_s = np.zeros(SPATIAL_DIM, np.float32), np.eye(SPATIAL_DIM, dtype=np.float32)
    cases = {
        "partial": ({"mu": mu, "sigma": sigma}, "but not mu_s, sigma_s"),
        "shape": ({"mu": mu[:10], "sigma": sigma, "mu_s": mu_s, "sigma_s": sigma_s}, "expected (2048,)"),
        "nan": ({"mu": mu, "sigma": sigma, "mu_s": mu_s + np.nan, "sigma_s": sigma_s}, "mu_s holds NaN"),
        "pickled": ({"mu": np.array([None] * FEATURE_DIM, dtype=object), "sigma": sigma, "mu_s": mu_s, "sigma_s": sigma_s},
                    "unreadable precomputed statistics"),
    }
    for name, (arrays, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, SAMPLES[:2], **arrays)
        with pytest.raises(WetokError, match=re.escape(message)):
            read_precomputed_statistics(read_image_batch(path))
    np.savez(tmp_path / "ok.npz", SAMPLES[:2], mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)
    stats = read_precomputed_statistics(read_image_batch(tmp_path / "ok.npz"))
    assert stats is not None and np.array_equal(stats[1].sigma, sigma_s)
    assert read_precomputed_statistics(ImageBatchFile(tmp_path / "ok.npz", 2, 64, 64, False, ("arr_0",))) is None


def test_too_few_images_for_precision_and_recall(data: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "three.npz", SAMPLES[:3])
    for samples, reference in ((tmp_path / "three.npz", data / "ref.npz"), (data / "samples.npz", tmp_path / "three.npz")):
        with pytest.raises(WetokError, match=re.escape(f"{tmp_path / 'three.npz'}: arr_0 holds 3 images; precision and recall")):
            evaluate_samples(samples, reference, weights_dir=tmp_path / "no-weights")  # refused before the network loads
