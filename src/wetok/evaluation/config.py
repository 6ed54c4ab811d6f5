"""What an evaluation computes and how: the metric names, `EvalConfig`, and where the originals'
FID statistics are cached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WetokError
from ..files import cache_dir
from ..images import Uint8Mode
from ..metrics.psnr_ssim import WIN_SIZE
from .baselines import CODECS

METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips_alex", "lpips_vgg", "rfid", "usage")
"""Metric names of the report; `lpips` on the command line means both LPIPS networks."""
IMAGE_METRICS = ("psnr", "ssim", "lpips_alex", "lpips_vgg")
"""The metrics computed per image and averaged (the others are computed over the whole set)."""
DEFAULT_TIMEOUT_S = 1800.0
"""Seconds a process waits for the others (joining, gathering the results) before it gives up."""
MAX_TIMEOUT_S = 1e8


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
    return cache_dir("fid")


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
        timeout_s: under torchrun, the seconds a process waits for the others when joining the
            process group and when the results are gathered; a process that waits longer (a peer
            crashed or hangs) raises `PeerError`. It must exceed the difference between the
            processes' running times. Applies only to a process group `evaluate` starts itself.
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
    timeout_s: float = DEFAULT_TIMEOUT_S

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
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:  # also NaN
            raise WetokError(f"timeout must be above 0 and at most {MAX_TIMEOUT_S:.0e} seconds, got {self.timeout_s}")
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
