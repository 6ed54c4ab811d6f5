"""Reconstruction evaluation: the released protocol, exact for any number of processes.

Python API:
    result = wetok.evaluation.evaluate(model, EvalConfig(data="val2017", size=256))
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
process r of W takes batches r, r+W, r+2W, ... (`data._shard`): no image is repeated or dropped,
and every batch holds the same images whatever W is, so one and many processes compute identical
numbers (the generative decoder's noise is seeded per image). Per-image results are gathered on
process 0 and reduced in file order (`report.build_report`), which checks that every file was
evaluated or skipped exactly once and raises `WetokError` naming the files missing or doubled.

Faults: every process waits at most `EvalConfig.timeout_s` for the others (joining the group,
gathering the results, receiving the report); past it, or when a peer's connection breaks, it
raises `PeerError` ("another process stopped (...)"). An error process 0 finds while building the
report (no image evaluated, files missing or doubled) is sent to every process and raised there.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from ..distributed import PeerLost, join_process_group, leave_process_group, peer_failure, resolve_device
from ..errors import WetokError
from ..images import crop, pad_to_multiple, to_tensor, to_uint8_tensor
from ..metrics.fid import GaussianStats, stats_key
from ..metrics.psnr_ssim import psnr, ssim
from ..metrics.usage import TokenUsage
from ..tokenizer import Tokenizer, seeded_noise
from .baselines import check_codecs, compress_to_bpp
from .config import EvalConfig, default_fid_cache_dir
from .data import _ImageSet, _shard, describe_files, list_evaluation_images
from .networks import Networks, load_networks
from .report import FidReference, add_run_facts, build_report


class PeerError(PeerLost):
    """Another process of a torchrun evaluation stopped, or stopped answering within the timeout:
    the collective this process waited in failed (a `wetok.distributed.PeerLost`, a `WetokError`)."""


def psnr_ceiling(values: int) -> float:
    """The PSNR (dB) of identical uint8 images of `values` numbers (H * W * C), where scikit-image
    gives +inf: that of the smallest error uint8 allows, one level in one value,
    10 * log10(255**2 * values); above every finite PSNR an image of that size can have."""
    return 10 * math.log10(255**2 * values)


@dataclass
class EvalResult:
    """`report`: the JSON-able report (on every process); `grid`: the comparison picture (process 0, or None)."""

    report: dict[str, Any]
    grid: Image.Image | None = None


# ---- per-batch work -----------------------------------------------------------------------------
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
        noise = None
        if model.config.generative:  # image i of the evaluation: noise from seed + i, whatever the batching
            noise = seeded_noise((model.bits_per_token, *tokens.shape[1:3]), [config.seed + i for i in indices])
        recon = crop(model.decode(tokens, noise=noise), box)
        if self.usage is not None:
            self.usage.update(tokens)
        h, w = originals.shape[1:3]
        bpp = tokens.shape[1] * tokens.shape[2] * model.bits_per_token / (h * w)
        ref_u8 = torch.from_numpy(originals).to(device) if config.uint8 == "round" else to_uint8_tensor(x, "truncate")
        values = self._image_metrics("", indices, x, ref_u8, recon)
        for k, i in enumerate(indices):
            self.records[i] = {"bpp": bpp}
            _put(self.records[i], values, k)
        if self.need_ref_features and self.nets.inception is not None:
            self._keep_features("reference", indices, self.nets.inception(x))
        rows: dict[int, list[np.ndarray]] = {}
        for k, i in enumerate(indices):  # this process's first images; process 0 keeps the first overall
            if len(self.grid) + len(rows) < config.grid_count:
                rows[i] = [originals[k], to_uint8_tensor(recon[k : k + 1])[0].cpu().numpy()]
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
            codec_values = self._image_metrics(f"{codec}.", indices, x, ref_u8, codec_images)
            for k, i in enumerate(indices):
                _put(self.records[i], codec_values, k)
        for i, row in rows.items():
            self.grid[i] = row

    def _image_metrics(
        self, prefix: str, indices: list[int], x: torch.Tensor, ref_u8: torch.Tensor, test: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-image metrics (name -> (B,) CPU tensor) of float `test` (B, 3, H, W) against the
        originals `x` (float) / `ref_u8` (uint8); Inception features of `test` are kept. An
        identical reconstruction's PSNR (+inf) becomes `psnr_ceiling` (flag `psnr_identical`)."""
        metrics, nets, out = self.config.metrics, self.nets, {}
        test_u8 = to_uint8_tensor(test, self.config.uint8)
        if "psnr" in metrics:
            values = psnr(ref_u8, test_u8).cpu()
            identical = torch.isposinf(values)
            out[prefix + "psnr"] = torch.where(identical, psnr_ceiling(ref_u8[0].numel()), values)
            out[prefix + "psnr_identical"] = identical
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


def _put(record: dict[str, Any], values: dict[str, torch.Tensor], k: int) -> None:
    """Image k's numbers into its record (Python floats; `*psnr_identical` only where true)."""
    for name, v in values.items():
        value = v[k].item()
        if not name.endswith("psnr_identical"):
            record[name] = float(value)
        elif value:
            record[name] = True


# ---- distributed plumbing -----------------------------------------------------------------------
@contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turn the failure of a collective because another process stopped (a timeout, a broken
    connection: `wetok.distributed.peer_failure`) into a one-line `PeerError`; any other error
    (out of memory, say) passes unchanged."""
    try:
        yield
    except RuntimeError as exc:
        cause = peer_failure(exc)
        if cause is None:
            raise
        raise PeerError(f"another process stopped ({what}: {cause})") from exc


def _init_distributed(device: torch.device, timeout_s: float) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group): under torchrun a group is
    joined (`wetok.distributed.join_process_group`, waiting at most `timeout_s` for the others at
    every collective); a group the caller started is used as it is."""
    with _collective("joining the process group"):
        started = join_process_group(device, timeout=datetime.timedelta(seconds=timeout_s))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), started
    return 0, 1, started


def _leave(finished: bool) -> None:
    """Leave the group this evaluation started. A peer lost at the final barrier changes nothing
    (every process already holds the complete report): the group is torn down all the same."""
    try:
        leave_process_group(synchronize=finished)
    except RuntimeError:
        if dist.is_initialized():
            dist.destroy_process_group()


def _gather(payload: dict[str, Any], rank: int, world: int) -> list[dict[str, Any]] | None:
    if world == 1:
        return [payload]
    out: list[Any] = [None] * world if rank == 0 else []
    with _collective("gathering the results on process 0"):
        dist.gather_object(payload, out if rank == 0 else None, dst=0)
    return out if rank == 0 else None


def _broadcast(outcome: dict[str, Any] | str | None, world: int) -> dict[str, Any]:
    """Process 0's outcome to every process: the report, or the message of the `WetokError` it
    raised building it (raised again on every process)."""
    if world > 1:
        box = [outcome]
        with _collective("waiting for the report from process 0"):
            dist.broadcast_object_list(box, src=0)
        outcome = box[0]
    if not isinstance(outcome, dict):
        raise WetokError(str(outcome))
    return outcome


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
        WetokError: bad data folder, settings, an unusable FID statistics file, no image that could
            be evaluated, or processes that did not cover every file exactly once.
        PeerError: (a `WetokError`) under torchrun, another process stopped or did not answer
            within `config.timeout_s`.
    """
    start = time.perf_counter()
    device = resolve_device(device)
    rank, world, started = _init_distributed(device, config.timeout_s)
    finished = False
    try:
        result = _evaluate(model, config, networks, device, rank, world, model_source, start)
        finished = True
        return result
    finally:
        if started:
            _leave(finished)


def _fid_reference(config: EvalConfig, files: list[Path], nets: Networks) -> FidReference:
    """The originals' FID statistics: reuse a cached file made for the same files and protocol."""
    if "rfid" not in config.metrics or nets.inception is None:
        return FidReference()
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
    return FidReference(path=stats_path, key=key, stats=reference)


def _evaluate(
    model: Tokenizer, config: EvalConfig, networks: Networks | None, device: torch.device, rank: int, world: int,
    model_source: str | None, start: float,
) -> EvalResult:
    check_codecs(config.baselines)
    files = list_evaluation_images(config.data, limit=config.limit)
    model = model.to(device).eval()
    pad = config.pad_multiple or model.downsample
    if pad % model.downsample:
        raise WetokError(f"pad multiple {pad} is not a multiple of the model's downsample factor {model.downsample}")
    nets = networks if networks is not None else load_networks(config.metrics, weights_dir=config.weights_dir, device=device)
    nets.unavailable = nets.missing(config.metrics)
    for name, reason in nets.unavailable.items():
        if rank == 0:
            print(f"wetok evaluate: {name} not computed: {reason}", file=sys.stderr, flush=True)
    fid = _fid_reference(config, files, nets)

    acc = _Accumulator(model, config, nets, need_ref_features=fid.stats is None, pad=pad)
    names = "\n".join(p.relative_to(config.data).as_posix() for p in files)
    files_digest = hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest()
    batches = _shard(len(files), config.batch_size, rank, world)
    loader = torch.utils.data.DataLoader(
        _ImageSet(files, config.size, config.max_side), batch_sampler=batches,
        collate_fn=list, num_workers=config.num_workers,
    )
    from tqdm.auto import tqdm

    for items in tqdm(loader, total=len(batches), desc="evaluate", unit="batch", disable=rank != 0 or not config.progress):
        acc.add(items)

    gathered = _gather({**acc.payload(), "files_digest": files_digest}, rank, world)
    outcome: dict[str, Any] | str | None = None
    grid = None
    if gathered is not None:  # process 0
        try:
            report, grid = build_report(gathered, model, config, nets, files, fid, pad)
            add_run_facts(report, model, model_source, world, device, time.perf_counter() - start)
            outcome = report
        except WetokError as exc:
            if world == 1:
                raise
            outcome = str(exc)
    return EvalResult(report=_broadcast(outcome, world), grid=grid)
