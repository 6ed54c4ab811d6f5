"""Reconstruction evaluation: the released protocol, exact for any number of processes.

Python API:
    result = wetok.evaluate.evaluate(model, EvalConfig(data="val2017", size=256))
    result.report   # the report dict (as written to report.json)
    result.grid     # PIL image: originals, reconstructions, error heat maps (process 0)

Protocol (the original evaluation's):
    size=256: shorter side to 256 (OpenCV INTER_LINEAR, as albumentations), centre crop 256x256.
    size=None (original resolution): no resize; zero-padded centrally to a multiple of the
        model's downsample factor f (`pad_multiple`; the original pads to 16 for every model) and
        cropped back; images with a side above `max_side` (2000) skipped, as the original does.
    PSNR/SSIM: scikit-image's numbers on uint8 images, averaged per image. Reconstructions become
        uint8 by rounding (`uint8="round"`, the originals are the decoded uint8 pixels), or as the
        original scripts do it, by truncating (x + 1) / 2 * 255 for both (`uint8="truncate"`).
    LPIPS v0.1 (AlexNet and VGG) and InceptionV3 features on the float images in [-1, 1].
    rFID: Frechet distance between the features of the originals and of the reconstructions;
        the originals' statistics are cached in a file and reused.
    usage: codebook usage and token entropy per group (tokens of the padded image, as the original).

Exactly once: the sorted file list is cut into batches of `batch_size` consecutive images, and
process r of W takes batches r, r+W, r+2W, ...: no image is repeated or dropped, and every batch
holds the same images whatever W is, so one and many processes compute identical numbers (the
generative decoder's noise is seeded per image). Per-image results are gathered on process 0
and reduced in file order.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from . import __version__
from .baselines import CODECS, check_codecs, compress_to_bpp
from .errors import WetokError
from .grid import comparison_grid, error_heatmap
from .imagefolder import dataset_summary, describe_files, list_images
from .images import read_image, to_tensor
from .lpips import BACKBONE_FILES, HEAD_FILES, LPIPS
from .metrics.fid import GaussianStats, frechet_distance, stats_key
from .metrics.psnr_ssim import WIN_SIZE, psnr, ssim
from .metrics.usage import TokenUsage
from .pretrained import locate_weights
from .tokenizer import Tokenizer, crop, pad_to_multiple
from .training.distributed import join_process_group, leave_process_group
from .transforms import resize_shorter_center_crop

if TYPE_CHECKING:  # the Inception network needs torchvision: imported only when rFID is asked for
    from .metrics.inception import FIDInceptionV3

METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips_alex", "lpips_vgg", "rfid", "usage")
"""Metric names of the report; `lpips` on the command line means both LPIPS networks."""
IMAGE_METRICS = ("psnr", "ssim", "lpips_alex", "lpips_vgg")

Uint8Mode = Literal["round", "truncate"]


def parse_metrics(names: str | Sequence[str]) -> tuple[str, ...]:
    """"psnr,ssim,lpips,rfid,usage" (or a list) -> metric names in report order; "lpips" = both
    networks, "all" = every metric. Raises `WetokError` for an unknown name."""
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    chosen: set[str] = set()
    for name in items:
        if name == "all":
            chosen.update(METRICS)
        elif name == "lpips":
            chosen.update(("lpips_alex", "lpips_vgg"))
        elif name in METRICS:
            chosen.add(name)
        else:
            raise WetokError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}, lpips, all")
    if not chosen:
        raise WetokError("no metrics given")
    return tuple(m for m in METRICS if m in chosen)


def default_fid_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/wetok/fid` (default `~/.cache/wetok/fid`): cached reference statistics."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wetok" / "fid"


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        data: folder of images (recursive; ImageNet val flat or by class, COCO val2017, any folder).
        size: protocol image size (shorter side resize + centre crop); None = original resolution.
        metrics: report metric names (see `parse_metrics`).
        batch_size: images per batch (and the unit of sharding across processes).
        limit: evaluate only the first `limit` files (sorted order).
        max_side: original resolution: skip images with a side above this (None: keep all).
        pad_multiple: original resolution: pad to this multiple (default: the model's f).
        uint8: how float images become uint8 for PSNR/SSIM ("round" or the original's "truncate").
        seed: seed of the generative decoder's noise (image i uses seed + i).
        weights_dir: a folder searched first for the LPIPS/Inception weight files (standard names),
            before torch hub's cache.
        fid_stats: file of the originals' FID statistics (default: a file in the cache folder
            named by what it depends on).
        baselines: codecs to compare at the tokens' bits per pixel ("jpeg", "webp", "avif").
        grid_count: images shown in the comparison grid (0: no grid).
        num_workers: image-loading worker processes per evaluation process.
        per_image: also put every image's numbers in the report.
        progress: show a progress bar (process 0).
    """

    data: Path
    size: int | None = 256
    metrics: tuple[str, ...] = METRICS
    batch_size: int = 8
    limit: int | None = None
    max_side: int | None = 2000
    pad_multiple: int | None = None
    uint8: Uint8Mode = "round"
    seed: int = 0
    weights_dir: Path | None = None
    fid_stats: Path | None = None
    baselines: tuple[str, ...] = ()
    grid_count: int = 8
    num_workers: int = 0
    per_image: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("data", "weights_dir", "fid_stats"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "metrics", parse_metrics(self.metrics))
        if self.size is not None and self.size < WIN_SIZE:
            raise WetokError(f"size must be at least {WIN_SIZE} (SSIM window), got {self.size}")
        if self.batch_size <= 0:
            raise WetokError(f"batch size must be positive, got {self.batch_size}")
        if self.uint8 not in ("round", "truncate"):
            raise WetokError(f"uint8 must be 'round' or 'truncate', got {self.uint8!r}")
        if self.pad_multiple is not None and self.pad_multiple <= 0:
            raise WetokError(f"pad multiple must be positive, got {self.pad_multiple}")
        object.__setattr__(self, "baselines", tuple(self.baselines))
        for name in self.baselines:
            if name not in CODECS:
                raise WetokError(f"unknown baseline codec {name!r}; choose from {', '.join(CODECS)}")

    def protocol(self, pad_multiple: int) -> dict[str, Any]:
        """The report's description of the protocol."""
        if self.size is not None:
            image = {"resolution": self.size, "resize": "shorter side, OpenCV INTER_LINEAR", "crop": "centre"}
        else:
            image = {"resolution": "original", "pad_multiple": pad_multiple, "pad_value": 0.0, "max_side": self.max_side}
        return {**image, "uint8": self.uint8, "lpips": "v0.1", "fid": "InceptionV3 pt_inception-2015-12-05, pool3 2048-d",
                "gd_noise_seed": self.seed}


@dataclass
class Networks:
    """The metric networks (None where not needed or not available) and why any is missing."""

    lpips_alex: LPIPS | None = None
    lpips_vgg: LPIPS | None = None
    inception: FIDInceptionV3 | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)


def _weights_in(folder: Path | None, filename: str) -> Path | None:
    return folder / filename if folder is not None and (folder / filename).is_file() else None


def _file_identity(path: Path) -> str:
    return f"{path.name}:{path.stat().st_size}"


def load_networks(metrics: Sequence[str], *, weights_dir: Path | None = None, device: torch.device | str = "cpu") -> Networks:
    """Build the networks the metrics need. A missing weight file makes that metric unavailable
    (its one-line reason in `unavailable`) instead of failing: the others still run."""
    nets = Networks()
    for net in ("alex", "vgg"):
        name = f"lpips_{net}"
        if name not in metrics:
            continue
        try:
            metric = LPIPS(net, backbone_weights=_weights_in(weights_dir, BACKBONE_FILES[net]),
                           head_weights=_weights_in(weights_dir, HEAD_FILES[net]))
            setattr(nets, name, metric.to(device))
        except WetokError as exc:
            nets.unavailable[name] = str(exc)
    wants_inception = "rfid" in metrics
    if wants_inception:
        from .metrics.inception import WEIGHTS_FILE as INCEPTION_FILE
        from .metrics.inception import FIDInceptionV3

        explicit = _weights_in(weights_dir, INCEPTION_FILE)
        try:
            nets.inception = FIDInceptionV3(explicit).to(device)
            nets.identity["inception"] = _file_identity(locate_weights(INCEPTION_FILE, explicit, what="", option=""))
        except WetokError as exc:
            nets.unavailable["rfid"] = str(exc)
    return nets


@dataclass
class EvalResult:
    """`report`: the JSON-able report (on every process); `grid`: the comparison picture (process 0, or None)."""

    report: dict[str, Any]
    grid: Image.Image | None = None


# ---- data ---------------------------------------------------------------------------------------
class _ImageSet(torch.utils.data.Dataset):
    """Item i: ("ok", i, uint8 (H, W, 3)) under the protocol, or ("skip", i, reason)."""

    def __init__(self, files: list[Path], size: int | None, max_side: int | None) -> None:
        self.files, self.size, self.max_side = files, size, max_side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[str, int, Any]:
        try:
            image = np.asarray(read_image(self.files[i]))
        except WetokError as exc:
            return ("skip", i, str(exc))
        h, w = image.shape[:2]
        if self.size is not None:
            return ("ok", i, np.ascontiguousarray(resize_shorter_center_crop(image, self.size)))
        if self.max_side is not None and max(h, w) > self.max_side:
            return ("skip", i, f"{w}x{h}: a side above {self.max_side} px (original-resolution protocol)")
        if min(h, w) < WIN_SIZE:
            return ("skip", i, f"{w}x{h}: smaller than the {WIN_SIZE}x{WIN_SIZE} SSIM window")
        return ("ok", i, image)


def _shard(num_images: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches: consecutive runs of `batch_size` indices, every `world`-th run."""
    batches = [list(range(s, min(s + batch_size, num_images))) for s in range(0, num_images, batch_size)]
    return batches[rank::world]


# ---- per-batch work -----------------------------------------------------------------------------
def _to_uint8(images: torch.Tensor, mode: Uint8Mode) -> torch.Tensor:
    """Float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3) on the same device."""
    images = images.clamp(-1, 1)
    scaled = ((images + 1) * 127.5).round() if mode == "round" else (images + 1) / 2 * 255
    return scaled.to(torch.uint8).permute(0, 2, 3, 1)


def _noise(model: Tokenizer, tokens: torch.Tensor, indices: list[int], seed: int) -> torch.Tensor | None:
    if not model.config.generative:
        return None
    _, h, w, _ = tokens.shape
    shape = (1, model.bits_per_token, h, w)
    parts = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in indices]
    return torch.cat(parts).to(device=model.device, dtype=model.dtype)


class _Accumulator:
    """One process's results: per-image numbers, features, usage counts, grid rows, skips."""

    def __init__(self, model: Tokenizer, config: EvalConfig, nets: Networks, need_ref_features: bool, pad: int) -> None:
        self.model, self.config, self.nets, self.pad = model, config, nets, pad
        self.need_ref_features = need_ref_features
        self.records: dict[int, dict[str, Any]] = {}
        self.skipped: list[tuple[int, str]] = []
        self.features: dict[str, dict[int, np.ndarray]] = {}
        self.grid: dict[int, list[np.ndarray]] = {}
        self.usage = TokenUsage(model.groups, model.bits_per_group) if "usage" in config.metrics else None

    def add(self, items: list[tuple[str, int, Any]]) -> None:
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for status, index, payload in items:
            if status == "skip":
                self.skipped.append((index, payload))
            else:
                groups.setdefault(payload.shape, []).append((index, payload))
        for members in groups.values():
            self._add_group([i for i, _ in members], np.stack([a for _, a in members]))

    @torch.no_grad()
    def _add_group(self, indices: list[int], originals: np.ndarray) -> None:
        model, config = self.model, self.config
        device = model.device
        x = to_tensor(originals).to(device)
        padded, box = pad_to_multiple(x, self.pad)
        tokens = model.encode(padded)
        recon = crop(model.decode(tokens, noise=_noise(model, tokens, indices, config.seed)), box)
        if self.usage is not None:
            self.usage.update(tokens)
        h, w = originals.shape[1:3]
        bpp = tokens.shape[1] * tokens.shape[2] * model.bits_per_token / (h * w)
        ref_u8 = torch.from_numpy(originals).to(device) if config.uint8 == "round" else _to_uint8(x, "truncate")
        values = self._image_metrics("", indices, x, ref_u8, recon)
        for k, i in enumerate(indices):
            self.records[i] = {"bpp": bpp, **{name: float(v[k]) for name, v in values.items()}}
        if self.need_ref_features and self.nets.inception is not None:
            self._keep_features("reference", indices, self.nets.inception(x))
        rows: dict[int, list[np.ndarray]] = {}
        for k, i in enumerate(indices):  # this process's first images; process 0 keeps the first overall
            if len(self.grid) + len(rows) < config.grid_count:
                rows[i] = [originals[k], _to_uint8(recon[k : k + 1], "round")[0].cpu().numpy()]
        for codec in config.baselines:
            decoded = []
            for k, i in enumerate(indices):
                result = compress_to_bpp(originals[k], codec, bpp)  # type: ignore[arg-type]
                decoded.append(result.image)
                self.records[i][f"{codec}.bpp"] = result.bpp
                self.records[i][f"{codec}.quality"] = result.quality
                self.records[i][f"{codec}.met_target"] = result.met_target
                if i in rows:
                    rows[i].append(result.image)
            codec_images = to_tensor(np.stack(decoded)).to(device)
            for name, v in self._image_metrics(f"{codec}.", indices, x, ref_u8, codec_images).items():
                for k, i in enumerate(indices):
                    self.records[i][name] = float(v[k])
        for i, row in rows.items():
            self.grid[i] = row

    def _image_metrics(
        self, prefix: str, indices: list[int], x: torch.Tensor, ref_u8: torch.Tensor, test: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-image metrics (name -> (B,) CPU tensor) of float `test` (B, 3, H, W) against the
        originals `x` (float) / `ref_u8` (uint8); Inception features of `test` are kept."""
        metrics, nets, out = self.config.metrics, self.nets, {}
        test_u8 = _to_uint8(test, self.config.uint8)
        if "psnr" in metrics:
            out[prefix + "psnr"] = psnr(ref_u8, test_u8).cpu()
        if "ssim" in metrics:
            out[prefix + "ssim"] = ssim(ref_u8, test_u8).cpu()
        for name in ("lpips_alex", "lpips_vgg"):
            net = getattr(nets, name)
            if name in metrics and net is not None:
                out[prefix + name] = net(x, test).double().cpu()
        if "rfid" in metrics and nets.inception is not None:
            self._keep_features(prefix + "reconstruction", indices, nets.inception(test))
        return out

    def _keep_features(self, name: str, indices: list[int], feats: torch.Tensor) -> None:
        store = self.features.setdefault(name, {})
        for k, i in enumerate(indices):
            store[i] = feats[k].float().cpu().numpy()

    def payload(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "skipped": self.skipped,
            "features": self.features,
            "usage": None if self.usage is None else self.usage.counts.cpu(),
            "grid": self.grid,
        }


# ---- distributed plumbing -----------------------------------------------------------------------
def _init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group): under torchrun a group is
    joined (`training.distributed.join_process_group`); a group the caller started is used as it is."""
    started = join_process_group(device)
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), started
    return 0, 1, started


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device of this process: "cuda" means cuda:LOCAL_RANK under torchrun; default CUDA when
    available, else CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WetokError("--device cuda: no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def _gather(payload: dict[str, Any], rank: int, world: int) -> list[dict[str, Any]] | None:
    if world == 1:
        return [payload]
    out: list[Any] = [None] * world if rank == 0 else []
    dist.gather_object(payload, out if rank == 0 else None, dst=0)
    return out if rank == 0 else None


def _broadcast(report: dict[str, Any] | None, world: int) -> dict[str, Any]:
    if world == 1:
        assert report is not None
        return report
    box = [report]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---- the driver -------------------------------------------------------------------------------
def evaluate(
    model: Tokenizer,
    config: EvalConfig,
    *,
    networks: Networks | None = None,
    device: str | torch.device | None = None,
    model_source: str | None = None,
) -> EvalResult:
    """Evaluate `model` on `config.data` under the released protocol.

    Runs in every process of a torchrun launch (each takes its share of batches; process 0
    gathers and reduces; every process returns the same report). `networks` overrides the metric
    networks (e.g. random-weight ones in tests); by default they are loaded from their weight
    files, and a metric whose file is missing is reported as unavailable.

    Raises:
        WetokError: bad data folder, settings, or an unusable FID statistics file.
    """
    start = time.perf_counter()
    device = resolve_device(device)
    rank, world, started = _init_distributed(device)
    finished = False
    try:
        result = _evaluate(model, config, networks, device, rank, world, model_source, start)
        finished = True
        return result
    finally:
        if started:
            leave_process_group(synchronize=finished)


def _evaluate(
    model: Tokenizer, config: EvalConfig, networks: Networks | None, device: torch.device, rank: int, world: int,
    model_source: str | None, start: float,
) -> EvalResult:
    check_codecs(config.baselines)
    files = list_images(config.data, limit=config.limit)
    model = model.to(device).eval()
    pad = config.pad_multiple or model.downsample
    if pad % model.downsample:
        raise WetokError(f"pad multiple {pad} is not a multiple of the model's downsample factor {model.downsample}")
    nets = networks if networks is not None else load_networks(config.metrics, weights_dir=config.weights_dir, device=device)
    for name, reason in nets.unavailable.items():
        if rank == 0:
            print(f"wetok evaluate: {name} not computed: {reason}", file=sys.stderr, flush=True)

    # The originals' FID statistics: reuse a cached file made for the same files and protocol.
    stats_path, key, reference = None, None, None
    if "rfid" in config.metrics and nets.inception is not None:
        key = stats_key({
            "files": describe_files(config.data, files),
            "size": config.size,
            "max_side": None if config.size is not None else config.max_side,
            "inception": nets.identity.get("inception", "custom"),
        })
        stats_path = config.fid_stats or default_fid_cache_dir() / f"{key}.npz"
        reference = GaussianStats.load(stats_path, key)
        if reference is None and config.fid_stats is not None and config.fid_stats.exists():
            raise WetokError(f"{config.fid_stats}: FID statistics of other files or another protocol; delete it or pass another path")

    acc = _Accumulator(model, config, nets, need_ref_features=reference is None, pad=pad)
    batches = _shard(len(files), config.batch_size, rank, world)
    loader = torch.utils.data.DataLoader(
        _ImageSet(files, config.size, config.max_side), batch_sampler=batches,
        collate_fn=list, num_workers=config.num_workers,
    )
    from tqdm.auto import tqdm

    for items in tqdm(loader, total=len(batches), desc="evaluate", unit="batch", disable=rank != 0 or not config.progress):
        acc.add(items)

    gathered = _gather(acc.payload(), rank, world)
    report, grid = None, None
    if rank == 0:
        assert gathered is not None
        report, grid = _reduce(gathered, model, config, nets, files, reference, stats_path, key, pad)
        report["model"] = _model_identity(model, model_source)
        report["world_size"] = world
        report["device"] = str(device)
        report["wall_time_s"] = time.perf_counter() - start
        report["images_per_s"] = report["num_images"] / report["wall_time_s"] if report["wall_time_s"] > 0 else None
    return EvalResult(report=_broadcast(report, world), grid=grid)


def _mean(values: list[float]) -> float:
    return float(np.mean(np.asarray(values, dtype=np.float64))) if values else float("nan")


def _features(gathered: list[dict[str, Any]], name: str) -> np.ndarray | None:
    merged: dict[int, np.ndarray] = {}
    for part in gathered:
        merged.update(part["features"].get(name, {}))
    return np.stack([merged[i] for i in sorted(merged)]) if merged else None


def _reduce(
    gathered: list[dict[str, Any]], model: Tokenizer, config: EvalConfig, nets: Networks, files: list[Path],
    reference: GaussianStats | None, stats_path: Path | None, key: str | None, pad: int,
) -> tuple[dict[str, Any], Image.Image | None]:
    records: dict[int, dict[str, Any]] = {}
    skipped: list[tuple[int, str]] = []
    grid_rows: dict[int, list[np.ndarray]] = {}
    usage_counts = None
    for part in gathered:
        records.update(part["records"])
        skipped.extend(part["skipped"])
        grid_rows.update(part["grid"])
        if part["usage"] is not None:
            usage_counts = part["usage"] if usage_counts is None else usage_counts + part["usage"]
    order = sorted(records)
    assert len(order) + len(skipped) == len(files), "every file is evaluated or skipped exactly once"

    metrics: dict[str, Any] = {}
    unavailable = dict(nets.unavailable)
    for name in IMAGE_METRICS:
        if name in config.metrics and name not in unavailable:
            metrics[name] = _mean([records[i][name] for i in order])
    fid_info: dict[str, Any] | None = None
    if "rfid" in config.metrics and "rfid" not in unavailable:
        recon = _features(gathered, "reconstruction")
        fid_info = {"stats_file": str(stats_path), "reused": reference is not None}
        if recon is None or len(recon) < 2:
            unavailable["rfid"] = "FID needs at least 2 images"
        else:
            if reference is None:
                reference = GaussianStats.from_features(_features(gathered, "reference"))
                assert stats_path is not None and key is not None
                reference.save(stats_path, key)
            metrics["rfid"] = frechet_distance(reference, GaussianStats.from_features(recon))
    if "usage" in config.metrics and usage_counts is not None:
        usage = TokenUsage(model.groups, model.bits_per_group)
        usage.counts += usage_counts
        metrics["usage"] = usage.summary()

    baselines: dict[str, Any] = {}
    for codec in config.baselines:
        entry: dict[str, Any] = {
            "bpp": _mean([records[i][f"{codec}.bpp"] for i in order]),
            "target_bpp": _mean([records[i]["bpp"] for i in order]),
            "quality": _mean([records[i][f"{codec}.quality"] for i in order]),
            "images_above_target": sum(not records[i][f"{codec}.met_target"] for i in order),
        }
        for name in IMAGE_METRICS:
            if name in metrics:
                entry[name] = _mean([records[i][f"{codec}.{name}"] for i in order])
        if "rfid" in metrics and reference is not None:
            entry["rfid"] = frechet_distance(reference, GaussianStats.from_features(_features(gathered, f"{codec}.reconstruction")))
        baselines[codec] = entry

    report: dict[str, Any] = {
        "wetok_version": __version__,
        "metrics": metrics,
        "bpp": _mean([records[i]["bpp"] for i in order]),
        "num_images": len(order),
        "skipped": [{"path": files[i].relative_to(config.data).as_posix(), "reason": r} for i, r in sorted(skipped)],
        "unavailable": unavailable,
        "protocol": config.protocol(pad),
        "dataset": {**dataset_summary(config.data, files), "limit": config.limit},
        "versions": _versions(),
    }
    if fid_info is not None:
        report["fid_statistics"] = fid_info
    if baselines:
        report["baselines"] = baselines
    if config.per_image:
        report["per_image"] = [{"path": files[i].relative_to(config.data).as_posix(), **records[i]} for i in order]
    grid = None
    if grid_rows:
        rows = [grid_rows[i] for i in sorted(grid_rows)[: config.grid_count]]
        rows = [[r[0], r[1], error_heatmap(r[0], r[1]), *r[2:]] for r in rows]
        grid = comparison_grid(rows, ["original", "wetok", "|error| (wetok)", *config.baselines])
    return report, grid


def _model_identity(model: Tokenizer, source: str | None) -> dict[str, Any]:
    cfg = model.config
    return {
        "source": source,
        "name": cfg.name,
        "description": cfg.describe(),
        "architecture_hash": cfg.architecture_hash(),
        "downsample": model.downsample,
        "groups": model.groups,
        "bits_per_group": model.bits_per_group,
        "bits_per_pixel_256": model.bits_per_pixel(256, 256),
    }


def _versions() -> dict[str, str]:
    import cv2
    import PIL
    import torchvision

    return {"python": platform.python_version(), "wetok": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
            "opencv": cv2.__version__}


# ---- presentation -------------------------------------------------------------------------------
_ROWS = (("bpp", "bits per pixel", 4), ("psnr", "PSNR (dB) ↑", 3), ("ssim", "SSIM ↑", 4), ("lpips_alex", "LPIPS alex ↓", 4),
         ("lpips_vgg", "LPIPS vgg ↓", 4), ("rfid", "rFID ↓", 3))


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a markdown table (metrics by row; wetok and each baseline codec by column),
    followed by the codebook usage per group."""
    columns = [("wetok", {"bpp": report.get("bpp"), **report["metrics"]})]
    columns += [(codec, entry) for codec, entry in report.get("baselines", {}).items()]
    lines = ["| metric | " + " | ".join(name for name, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for key, label, digits in _ROWS:
        if key == "bpp" or key in report["metrics"] or key in report.get("unavailable", {}):
            lines.append(f"| {label} | " + " | ".join(_fmt(values.get(key), digits) for _, values in columns) + " |")
    if report.get("baselines"):
        lines.append("| images above the target rate | – | " + " | ".join(
            str(entry["images_above_target"]) for entry in report["baselines"].values()) + " |")
    usage = report["metrics"].get("usage")
    if usage:
        lines.append("")
        lines.append(f"codebook usage per group ({usage['codebook_size']} codes): " + ", ".join(
            f"g{g}: {100 * e['usage']:.1f}% / {e['entropy_bits']:.2f} bits" for g, e in enumerate(usage["groups"])))
    lines.append("")
    protocol = report["protocol"]
    res = protocol["resolution"]
    lines.append(f"{report['num_images']} images ({len(report['skipped'])} skipped), "
                 f"{'original resolution' if res == 'original' else f'{res}x{res} centre crop'}")
    if report.get("unavailable"):
        lines.append(f"not computed: {', '.join(report['unavailable'])} (reasons in the report's `unavailable`)")
    return "\n".join(lines)
