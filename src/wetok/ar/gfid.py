"""gFID of generated samples: the protocol of OpenAI's ADM evaluator (guided-diffusion
`evaluations/evaluator.py`, TensorFlow) in PyTorch. See docs/gfid.md.

Inputs are `.npz` files whose `arr_0` holds N x H x W x 3 uint8 images: the samples, and a
reference batch such as ADM's `VIRTUAL_imagenet256_labeled.npz` (which also carries labels
`arr_1`, ignored, and precomputed statistics `mu`, `sigma`, `mu_s`, `sigma_s`). Both go through
the 2015-12-05 Inception graph (`FIDInceptionV3.adm_features`: TensorFlow 1's resize to 299,
(x - 128) / 128) in batches of 64, giving pool features (2048-d), spatial features (2023-d) and
logits. Then, as ADM:

* FID: Frechet distance between the Gaussian fits of the samples' and the reference's pool
  features; sFID: the same for the spatial features. The reference's statistics are the ones
  its file carries when it has them, otherwise computed from its images; the samples' are
  always computed from their images.
* Inception Score of the samples' logits (splits of 5000).
* Precision and recall (k = 3) between the reference's and the samples' pool features; the
  reference's features are always computed from its images.

Files are read safely: the zip member's `.npy` header is checked (dtype uint8, shape
(N, H, W, 3), N >= 2, sizes within bounds, the declared size equal to the member's) before any
image data is read, nothing is ever unpickled, and images are streamed from the (possibly
compressed) member a batch at a time, so memory holds one batch of images, not the file. The
reference's pool features and statistics are cached (`default_cache_dir`), keyed by the file's
SHA-256 and size and the network's weights.
"""

from __future__ import annotations

import hashlib
import math
import sys
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..errors import WetokError, first_line
from ..files import atomic_write, cache_dir, require_regular_file
from ..metrics.fid import GaussianStats, frechet_distance, stats_key
from ..metrics.inception import FEATURE_DIM, SPATIAL_DIM, WEIGHTS_FILE, FIDInceptionV3
from ..metrics.inception_score import inception_score
from ..metrics.precision_recall import NEIGHBOURHOOD, manifold_radii, precision_recall

PROTOCOL = "adm-evaluator"
"""The protocol's name in reports and cache keys."""
BATCH_SIZE = 64
"""Images per forward pass, as the ADM evaluator."""
MAX_IMAGES = 10_000_000
"""The most images an `.npz` file may declare (ADM's sample and reference batches hold 50,000 and 10,000)."""
MAX_SIDE = 4096
"""The largest image height or width accepted (the network sees 299 x 299 anyway)."""
CACHE_FORMAT = "wetok-gfid-reference-1"
IMAGES_MEMBER = "arr_0.npy"
STATISTICS = {"mu": (FEATURE_DIM,), "sigma": (FEATURE_DIM, FEATURE_DIM), "mu_s": (SPATIAL_DIM,), "sigma_s": (SPATIAL_DIM, SPATIAL_DIM)}
"""The precomputed statistics an ADM reference batch may carry, and their shapes."""


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/wetok/gfid` (default `~/.cache/wetok/gfid`): cached reference features and statistics."""
    return cache_dir("gfid")


# ---- reading .npz image batches --------------------------------------------------------------
@dataclass(frozen=True)
class ImageBatchFile:
    """An `.npz` file's `arr_0` images, checked from the member's header; `batches()` streams them."""

    path: Path
    count: int
    height: int
    width: int
    fortran_order: bool
    members: tuple[str, ...]

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(self.count / batch_size)

    def batches(self, batch_size: int = BATCH_SIZE) -> Iterator[np.ndarray]:
        """Consecutive (B, H, W, 3) uint8 arrays of at most `batch_size` images, in file order.

        The member is decompressed as a stream and read one batch at a time; an array saved in
        Fortran order (rare: `np.savez` of a transposed array) is read whole first."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        try:
            with _open_member(self.path) as (member, _info, _names):
                if self.fortran_order:
                    data = np.lib.format.read_array(member, allow_pickle=False)
                    for start in range(0, self.count, batch_size):
                        yield np.ascontiguousarray(data[start:start + batch_size])
                    return
                _read_header(self.path, member)
                image_bytes = self.height * self.width * 3
                for start in range(0, self.count, batch_size):
                    batch = np.empty((min(batch_size, self.count - start), self.height, self.width, 3), dtype=np.uint8)
                    _read_into(member, memoryview(batch).cast("B"), self.path, start, image_bytes)
                    yield batch
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
            raise WetokError(f"{self.path}: damaged {IMAGES_MEMBER} data ({first_line(exc)})") from None


@contextmanager
def _open_member(path: Path) -> Iterator[tuple[IO[bytes], zipfile.ZipInfo, tuple[str, ...]]]:
    """The open zip member `arr_0.npy`, its ZipInfo and the archive's array names; all closed afterwards."""
    with path.open("rb") as fh, zipfile.ZipFile(fh) as archive:
        names = tuple(n.removesuffix(".npy") for n in archive.namelist())
        try:
            info = archive.getinfo(IMAGES_MEMBER)
        except KeyError:
            listed = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") if names else "nothing"
            raise WetokError(f"{path}: no arr_0 array (the images) in the .npz file; it holds {listed}") from None
        with archive.open(info) as member:
            yield member, info, names


def _read_header(path: Path, member: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
    except ValueError:
        raise WetokError(f"{path}: {IMAGES_MEMBER} is not a .npy array") from None
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise WetokError(f"{path}: {IMAGES_MEMBER} has .npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0")


def _read_into(member: IO[bytes], target: memoryview, path: Path, start: int, image_bytes: int) -> None:
    filled = 0
    while filled < len(target):
        got = member.readinto(target[filled:])  # type: ignore[attr-defined]
        if not got:
            raise WetokError(f"{path}: {IMAGES_MEMBER} ends at image {start + filled // image_bytes}: truncated file")
        filled += got


def read_image_batch(path: str | Path) -> ImageBatchFile:
    """Check an `.npz` image batch from its `arr_0` header, reading no image data.

    Raises a one-line `WetokError` naming the file when it is not a regular file, not a zip
    archive (or truncated), has no `arr_0`, or `arr_0` is not uint8 (N, H, W, 3) with
    2 <= N <= MAX_IMAGES and 1 <= H, W <= MAX_SIDE, or its data is shorter or longer than its
    header declares. Object (pickled) arrays are refused, never loaded."""
    path = Path(path)
    require_regular_file(path, "an .npz file", WetokError)
    try:
        with _open_member(path) as (member, info, archive_members):
            shape, fortran, dtype = _read_header(path, member)
            header_end = member.tell()
    except zipfile.BadZipFile as exc:
        raise WetokError(f"{path}: not a valid .npz file (zip archive: {first_line(exc)}); truncated or not an .npz") from None
    except (zlib.error, EOFError) as exc:
        raise WetokError(f"{path}: damaged {IMAGES_MEMBER} ({first_line(exc)})") from None
    except ValueError as exc:  # a malformed .npy header
        raise WetokError(f"{path}: unreadable {IMAGES_MEMBER} header ({first_line(exc)})") from None
    if dtype.hasobject:
        raise WetokError(f"{path}: arr_0 holds Python objects (a pickled array), not uint8 images; refused")
    if dtype != np.uint8:
        raise WetokError(f"{path}: arr_0 has dtype {dtype}, expected uint8 images (0..255)")
    if len(shape) != 4 or shape[3] != 3:
        raise WetokError(f"{path}: arr_0 has shape {tuple(shape)}, expected (N, H, W, 3) RGB images")
    count, height, width, _ = (int(s) for s in shape)
    if count < 2:
        raise WetokError(f"{path}: arr_0 holds {count} image(s); the statistics need at least 2")
    if count > MAX_IMAGES or not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise WetokError(f"{path}: arr_0 has shape {tuple(shape)}: at most {MAX_IMAGES} images of at most "
                         f"{MAX_SIDE} x {MAX_SIDE} pixels are accepted")
    declared = count * height * width * 3
    if info.file_size != header_end + declared:
        raise WetokError(f"{path}: arr_0 declares {count} x {height} x {width} x 3 bytes of images but holds "
                         f"{info.file_size - header_end}: damaged file")
    return ImageBatchFile(path=path, count=count, height=height, width=width, fortran_order=bool(fortran),
                          members=archive_members)


def read_precomputed_statistics(batch: ImageBatchFile) -> tuple[GaussianStats, GaussianStats] | None:
    """The (pool, spatial) statistics an ADM reference batch carries (`mu`, `sigma`, `mu_s`,
    `sigma_s`), checked (shapes, finite numbers); None when the file has none of them."""
    present = [name for name in STATISTICS if name in batch.members]
    if not present:
        return None
    missing = [name for name in STATISTICS if name not in present]
    if missing:
        raise WetokError(f"{batch.path}: has precomputed statistics {', '.join(present)} but not {', '.join(missing)}")
    values: dict[str, np.ndarray] = {}
    try:
        with np.load(batch.path, allow_pickle=False) as data:
            for name, shape in STATISTICS.items():
                array = data[name]
                if array.shape != shape or array.dtype.kind not in "fiu":
                    raise WetokError(f"{batch.path}: precomputed {name} has shape {array.shape} and dtype {array.dtype}; "
                                     f"expected {shape}, float")
                values[name] = array.astype(np.float64)
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise WetokError(f"{batch.path}: unreadable precomputed statistics ({first_line(exc)})") from None
    bad = [name for name, array in values.items() if not np.isfinite(array).all()]
    if bad:
        raise WetokError(f"{batch.path}: precomputed {', '.join(bad)} holds NaN or infinite values")
    return (GaussianStats(mu=values["mu"], sigma=values["sigma"], count=0),
            GaussianStats(mu=values["mu_s"], sigma=values["sigma_s"], count=0))


# ---- the network and its features -------------------------------------------------------------
def load_network(weights_dir: str | Path | None = None, device: torch.device | str = "cpu") -> FIDInceptionV3:
    """The Inception network with pytorch-fid's weight file: from `weights_dir` when that folder
    holds it, else torch hub's cache (`FIDInceptionV3`; a missing file is a one-line error)."""
    explicit = None
    if weights_dir is not None and (Path(weights_dir) / WEIGHTS_FILE).is_file():
        explicit = Path(weights_dir) / WEIGHTS_FILE
    return FIDInceptionV3(explicit).to(device)


def network_digest(network: FIDInceptionV3) -> str:
    """SHA-256 of the network's parameters and buffers (names, dtypes, shapes, values): the
    identity of its weights in cache keys, whatever file they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.network.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class Activations:
    """Per-image network outputs of a batch file, float32 numpy: pool (N, 2048), spatial (N, 2023), logits (N, 1008)."""

    pool: np.ndarray
    spatial: np.ndarray
    logits: np.ndarray


def _progress(total: int, desc: str, progress: bool | None):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else not progress
    return tqdm(total=total, desc=desc, unit="batch", disable=disable, file=sys.stderr, dynamic_ncols=True)


def compute_activations(batch: ImageBatchFile, network: FIDInceptionV3, *, batch_size: int = BATCH_SIZE,
                        progress: bool | None = None, desc: str = "images") -> Activations:
    """Run every image of `batch` through `network.adm_features`, `batch_size` at a time."""
    device = next(network.parameters()).device
    pool, spatial, logits = [], [], []
    with _progress(batch.num_batches(batch_size), desc, progress) as bar, torch.inference_mode():
        for images in batch.batches(batch_size):
            out = network.adm_features(torch.from_numpy(images).to(device))
            pool.append(out.pool.float().cpu().numpy())
            spatial.append(out.spatial.float().cpu().numpy())
            logits.append(out.logits.float().cpu().numpy())
            bar.update(1)
    return Activations(np.concatenate(pool), np.concatenate(spatial), np.concatenate(logits))


# ---- the reference: features and statistics, cached ---------------------------------------------
@dataclass
class ReferenceStatistics:
    """What gFID needs of a reference batch: its pool features (precision/recall) and the
    Gaussian fits of its pool and spatial features (FID, sFID)."""

    pool: np.ndarray
    stats: GaussianStats
    spatial_stats: GaussianStats
    count: int
    precomputed: bool
    """True: the statistics are the ones the file carries; False: computed from its images."""
    sha256: str
    cache_path: Path | None = None
    from_cache: bool = False


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _load_cache(path: Path, key: str, count: int) -> tuple[np.ndarray, GaussianStats, GaussianStats, bool] | None:
    """The cached (pool features, pool stats, spatial stats, precomputed) for `key`; None when the
    file is absent, made for another key, or unreadable (it is then recomputed and replaced)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != CACHE_FORMAT or str(data["key"]) != key:
                return None
            pool = data["pool"]
            mu, sigma, mu_s, sigma_s = (data[name].astype(np.float64) for name in STATISTICS)
            precomputed = bool(data["precomputed"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, zlib.error, EOFError):
        return None
    if pool.shape != (count, FEATURE_DIM) or pool.dtype != np.float32 or any(
            a.shape != STATISTICS[n] for n, a in zip(STATISTICS, (mu, sigma, mu_s, sigma_s))):
        return None
    return pool, GaussianStats(mu, sigma, count=0 if precomputed else count), \
        GaussianStats(mu_s, sigma_s, count=0 if precomputed else count), precomputed


def _save_cache(path: Path, key: str, ref: ReferenceStatistics) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, pool=ref.pool, mu=ref.stats.mu, sigma=ref.stats.sigma, mu_s=ref.spatial_stats.mu,
                     sigma_s=ref.spatial_stats.sigma, precomputed=np.bool_(ref.precomputed), count=np.int64(ref.count),
                     key=np.str_(key), format=np.str_(CACHE_FORMAT))

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as exc:  # a read-only or full cache folder: the results do not depend on it
        print(f"wetok gfid: cannot write the reference cache {path} ({exc.strerror or exc}); continuing without it",
              file=sys.stderr)


def _plain(stats: GaussianStats) -> GaussianStats:
    """The statistics without the centred vectors: the same numbers whether fresh or cached."""
    return GaussianStats(mu=stats.mu, sigma=stats.sigma, count=stats.count)


def reference_statistics(
    ref: str | Path | ImageBatchFile, network: FIDInceptionV3, *, batch_size: int = BATCH_SIZE,
    progress: bool | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
    network_id: str | None = None,
) -> ReferenceStatistics:
    """The reference batch's pool features and statistics: from the cache when it holds them for
    this file (SHA-256 and size) and these network weights, else computed (its statistics
    precomputed in the file when it has them) and cached (written atomically)."""
    batch = ref if isinstance(ref, ImageBatchFile) else read_image_batch(ref)
    precomputed = read_precomputed_statistics(batch)
    sha = file_sha256(batch.path)
    cache_path = None
    key = ""
    if use_cache:
        key = stats_key({"format": CACHE_FORMAT, "protocol": PROTOCOL, "sha256": sha, "size": batch.path.stat().st_size,
                         "network": network_id or network_digest(network)})
        cache_path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_path = cache_path / f"{key}.npz"
        cached = _load_cache(cache_path, key, batch.count)
        if cached is not None and cached[3] == (precomputed is not None):
            pool, stats, spatial_stats, was_precomputed = cached
            if not was_precomputed:
                stats = _plain(GaussianStats.from_features(pool))
            return ReferenceStatistics(pool=pool, stats=stats, spatial_stats=spatial_stats, count=batch.count,
                                       precomputed=was_precomputed, sha256=sha, cache_path=cache_path, from_cache=True)
    acts = compute_activations(batch, network, batch_size=batch_size, progress=progress, desc="reference")
    if precomputed is not None:
        stats, spatial_stats = precomputed
    else:
        stats = _plain(GaussianStats.from_features(acts.pool))
        spatial_stats = _plain(GaussianStats.from_features(acts.spatial))
    result = ReferenceStatistics(pool=acts.pool, stats=stats, spatial_stats=spatial_stats, count=batch.count,
                                 precomputed=precomputed is not None, sha256=sha, cache_path=cache_path)
    if cache_path is not None:
        _save_cache(cache_path, key, result)
    return result


# ---- the evaluation -----------------------------------------------------------------------------
def evaluate_samples(
    samples: str | Path, reference: str | Path, *, network: FIDInceptionV3 | None = None,
    weights_dir: str | Path | None = None, device: torch.device | str = "cpu", batch_size: int = BATCH_SIZE,
    progress: bool | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
) -> dict[str, Any]:
    """The ADM evaluator's numbers for `samples` against `reference` (both `.npz` image batches).

    Returns a dict with inception_score, fid, sfid, precision, recall (floats), num_samples,
    num_reference, reference_statistics ("precomputed" or "computed"), reference_sha256,
    reference_cached, protocol and network (the weights' SHA-256).

    Both files are checked (`read_image_batch`, `read_precomputed_statistics`) before the network
    is loaded or any image is read. `network` (on its device) wins over `weights_dir`/`device`.
    """
    sample_batch = read_image_batch(samples)
    ref_batch = read_image_batch(reference)
    for batch in (sample_batch, ref_batch):
        if batch.count <= NEIGHBOURHOOD:
            raise WetokError(f"{batch.path}: arr_0 holds {batch.count} images; precision and recall (k = {NEIGHBOURHOOD}) "
                             f"need at least {NEIGHBOURHOOD + 1}")
    read_precomputed_statistics(ref_batch)
    net = network if network is not None else load_network(weights_dir, device)
    digest = network_digest(net)
    ref = reference_statistics(ref_batch, net, batch_size=batch_size, progress=progress, cache_dir=cache_dir,
                               use_cache=use_cache, network_id=digest)
    acts = compute_activations(sample_batch, net, batch_size=batch_size, progress=progress, desc="samples")
    pr_device = next(net.parameters()).device
    ref_radii = manifold_radii(ref.pool, device=pr_device)
    precision, recall = precision_recall(ref.pool, acts.pool, reference_radii=ref_radii, device=pr_device)
    return {
        "inception_score": inception_score(logits=acts.logits),
        "fid": frechet_distance(GaussianStats.from_features(acts.pool), ref.stats),
        "sfid": frechet_distance(GaussianStats.from_features(acts.spatial), ref.spatial_stats),
        "precision": precision,
        "recall": recall,
        "num_samples": sample_batch.count,
        "num_reference": ref_batch.count,
        "reference_statistics": "precomputed" if ref.precomputed else "computed",
        "reference_sha256": ref.sha256,
        "reference_cached": ref.from_cache,
        "protocol": PROTOCOL,
        "network": digest,
    }
