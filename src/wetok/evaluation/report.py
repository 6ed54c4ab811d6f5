"""The report: the per-image results gathered from every process reduced, in file order, to the
report dict (as written to report.json) and the comparison grid; and the report as a table.

The report is strict JSON: no NaN or Infinity anywhere. A metric that comes out not finite is left
out and named in `unavailable` with the reason; an identical reconstruction's PSNR (+inf in
scikit-image) is counted as `run.psnr_ceiling` and noted in `notes`.
"""

from __future__ import annotations

import math
import platform
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..errors import WetokError
from ..metrics.fid import GaussianStats, frechet_distance
from ..metrics.usage import TokenUsage
from ..tokenizer import Tokenizer
from .config import IMAGE_METRICS, EvalConfig
from .data import dataset_summary
from .grid import comparison_grid, error_heatmap
from .networks import Networks


@dataclass(frozen=True)
class FidReference:
    """The originals' FID statistics: the file they are cached in, the key naming what they depend
    on, and the statistics that file held (None: to be computed from this run's features and saved
    there). All None when rFID is not computed."""

    path: Path | None = None
    key: str | None = None
    stats: GaussianStats | None = None


@dataclass
class _Merged:
    """Every process's results together: per-image records, skips, grid rows, usage counts."""

    records: dict[int, dict[str, Any]]
    skipped: list[tuple[int, str]]
    grid: dict[int, list[np.ndarray]]
    usage: torch.Tensor | None


def _names(indices: list[int], names: list[str], most: int = 5) -> str:
    shown = [names[i] if 0 <= i < len(names) else f"#{i}" for i in indices[:most]]
    return ", ".join(shown) + (f" and {len(indices) - most} more" if len(indices) > most else "")


def _merge(gathered: list[dict[str, Any]], names: list[str]) -> _Merged:
    """Every process's results together, after checking that the processes listed the same files
    and that each file was evaluated or skipped exactly once (`WetokError` naming those that were not)."""
    digests = [part.get("files_digest") for part in gathered]
    differ = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise WetokError(f"process {differ[0]} found other files than process 0 ({len(names)} files); "
                         "did the folder change while the processes started?")
    merged = _Merged(records={}, skipped=[], grid={}, usage=None)
    seen: Counter[int] = Counter()
    for part in gathered:
        seen.update(list(part["records"]))  # the indices (a mapping would add its values)
        seen.update(i for i, _ in part["skipped"])
        merged.records.update(part["records"])
        merged.skipped.extend(part["skipped"])
        merged.grid.update(part["grid"])
        if part["usage"] is not None:
            merged.usage = part["usage"] if merged.usage is None else merged.usage + part["usage"]
    missing = [i for i in range(len(names)) if seen[i] == 0]
    doubled = sorted(i for i, n in seen.items() if n > 1 or not 0 <= i < len(names))
    if missing or doubled:
        problems = ([f"{len(missing)} never evaluated ({_names(missing, names)})"] if missing else []) + (
            [f"{len(doubled)} evaluated more than once ({_names(doubled, names)})"] if doubled else [])
        raise WetokError(f"evaluation did not cover every file exactly once: {'; '.join(problems)}")
    return merged


def _mean(values: list[float]) -> float:
    """The mean in float64 (NaN for no values, or when one is NaN; `_finite` takes those out)."""
    return float(np.mean(np.asarray(values, dtype=np.float64))) if values else float("nan")


def _finite(values: dict[str, Any], unavailable: dict[str, str]) -> None:
    """Move every number of `values` that is not finite (a NaN or an infinity: not JSON) to
    `unavailable`, with the reason."""
    for name, value in list(values.items()):
        if isinstance(value, float) and not math.isfinite(value):
            del values[name]
            unavailable[name] = f"came out {value} (not a finite number), so it is left out"


def _json_safe(value: Any) -> Any:
    """`value` with every float that is not finite replaced by None (the last guard: strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _psnr_note(records: dict[int, dict[str, Any]], order: list[int], baselines: tuple[str, ...]) -> str | None:
    """What the report says when reconstructions were identical to their originals (PSNR +inf)."""
    counts = {name: sum(bool(records[i].get(prefix + "psnr_identical")) for i in order)
              for name, prefix in [("wetok", ""), *((codec, f"{codec}.") for codec in baselines)]}
    if not any(counts.values()):
        return None
    which = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
    return (f"psnr: reconstructions identical to their original ({which} of {len(order)} images; `psnr_identical` "
            "per image) have PSNR +inf in scikit-image; each is counted as the PSNR of the smallest possible error, "
            "one level in one value: 10 * log10(255**2 * H * W * 3) dB")


def _features(gathered: list[dict[str, Any]], name: str) -> np.ndarray | None:
    merged: dict[int, np.ndarray] = {}
    for part in gathered:
        merged.update(part["features"].get(name, {}))
    return np.stack([merged[i] for i in sorted(merged)]) if merged else None


def _rfid(gathered: list[dict[str, Any]], fid: FidReference, metrics: dict[str, Any],
          unavailable: dict[str, str]) -> GaussianStats | None:
    """Put rFID in `metrics` (or why not in `unavailable`); return the originals' statistics,
    computed from the gathered features and saved to the cache file when it had none."""
    recon = _features(gathered, "reconstruction")
    reference = fid.stats
    if recon is None or len(recon) < 2:
        unavailable["rfid"] = "FID needs at least 2 images"
        return reference
    if reference is None:
        features = _features(gathered, "reference")
        if features is None or fid.path is None or fid.key is None:
            raise RuntimeError("rFID: neither cached statistics nor the originals' features (a wetok bug)")
        reference = GaussianStats.from_features(features)
        reference.save(fid.path, fid.key)
    metrics["rfid"] = frechet_distance(reference, GaussianStats.from_features(recon))
    return reference


def _usage(model: Tokenizer, counts: torch.Tensor) -> dict[str, Any]:
    usage = TokenUsage(model.groups, model.bits_per_group)
    usage.counts += counts
    return usage.summary()


def _baseline(codec: str, gathered: list[dict[str, Any]], records: dict[int, dict[str, Any]], order: list[int],
              metrics: dict[str, Any], reference: GaussianStats | None) -> dict[str, Any]:
    """A codec's entry: its rate against the tokens', its quality setting, and the metrics wetok got."""
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
    unavailable: dict[str, str] = {}
    _finite(entry, unavailable)
    if unavailable:
        entry["unavailable"] = unavailable
    return entry


def _grid(rows_by_index: dict[int, list[np.ndarray]], config: EvalConfig) -> Image.Image | None:
    """The first `grid_count` images: original, reconstruction, its error map, each codec's image."""
    if not rows_by_index:
        return None
    rows = [rows_by_index[i] for i in sorted(rows_by_index)[: config.grid_count]]
    rows = [[r[0], r[1], error_heatmap(r[0], r[1]), *r[2:]] for r in rows]
    return comparison_grid(rows, ["original", "wetok", "|error| (wetok)", *config.baselines])


def build_report(
    gathered: list[dict[str, Any]], model: Tokenizer, config: EvalConfig, nets: Networks, files: list[Path],
    fid: FidReference, pad: int,
) -> tuple[dict[str, Any], Image.Image | None]:
    """The report dict and the comparison grid from every process's payload (process 0).

    Raises:
        WetokError: no image could be evaluated (every file skipped: the reasons of the first), or
            the processes did not cover every file exactly once.
    """
    names = [p.relative_to(config.data).as_posix() for p in files]
    merged = _merge(gathered, names)
    records, order = merged.records, sorted(merged.records)
    if not order:
        first = sorted(merged.skipped)[:2]
        reasons = "; ".join(f"{names[i]}: {' '.join(r.removeprefix(f'{files[i]}: ').split())}" for i, r in first)
        more = ", ..." if len(merged.skipped) > len(first) else ""
        raise WetokError(f"{config.data}: no image could be evaluated, all {len(files)} files skipped ({reasons}{more})")
    metrics: dict[str, Any] = {}
    unavailable = dict(nets.unavailable)
    for name in IMAGE_METRICS:
        if name in config.metrics and name not in unavailable:
            metrics[name] = _mean([records[i][name] for i in order])
    fid_info: dict[str, Any] | None = None
    reference = fid.stats
    if "rfid" in config.metrics and "rfid" not in unavailable:
        fid_info = {"stats_file": str(fid.path), "reused": fid.stats is not None}
        reference = _rfid(gathered, fid, metrics, unavailable)
    if "usage" in config.metrics and merged.usage is not None:
        metrics["usage"] = _usage(model, merged.usage)
    baselines = {codec: _baseline(codec, gathered, records, order, metrics, reference) for codec in config.baselines}
    _finite(metrics, unavailable)
    notes = [n for n in [_psnr_note(records, order, config.baselines) if "psnr" in metrics else None] if n]

    report: dict[str, Any] = {
        "wetok_version": __version__,
        "metrics": metrics,
        "bpp": _mean([records[i]["bpp"] for i in order]),
        "num_images": len(order),
        "skipped": [{"path": names[i], "reason": r} for i, r in sorted(merged.skipped)],
        "unavailable": unavailable,
        "protocol": config.protocol(pad),
        "dataset": {**dataset_summary(config.data, files), "limit": config.limit},
        "versions": _versions(),
    }
    if notes:
        report["notes"] = notes
    if fid_info is not None:
        report["fid_statistics"] = fid_info
    if baselines:
        report["baselines"] = baselines
    if config.per_image:
        report["per_image"] = [{"path": names[i], **records[i]} for i in order]
    return _json_safe(report), _grid(merged.grid, config)


def add_run_facts(report: dict[str, Any], model: Tokenizer, model_source: str | None, world: int,
                  device: torch.device, wall_time_s: float) -> None:
    """The model's identity and how the run went (processes, device, time) into `report`."""
    report["model"] = _model_identity(model, model_source)
    report["world_size"] = world
    report["device"] = str(device)
    report["wall_time_s"] = wall_time_s
    report["images_per_s"] = report["num_images"] / wall_time_s if wall_time_s > 0 else None


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
    lines.extend(f"note: {note}" for note in report.get("notes", []))
    return "\n".join(lines)
