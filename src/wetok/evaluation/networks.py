"""The metric networks (LPIPS AlexNet/VGG, FID InceptionV3), built from their weight files. A
missing file makes its metric unavailable, with a one-line reason, instead of failing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import WetokError
from ..metrics.lpips import BACKBONE_FILES, HEAD_FILES, LPIPS
from ..weights import locate_weights

if TYPE_CHECKING:  # the Inception network needs torchvision: imported only when rFID is asked for
    from ..metrics.inception import FIDInceptionV3


@dataclass
class Networks:
    """The metric networks (None where not needed or not available) and why any is missing."""

    lpips_alex: LPIPS | None = None
    lpips_vgg: LPIPS | None = None
    inception: FIDInceptionV3 | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)

    def missing(self, metrics: Sequence[str]) -> dict[str, str]:
        """Why each asked-for network metric cannot be computed: the recorded reasons, and "no
        network given" for a metric whose network is None without one (a caller's own `Networks`)."""
        out = dict(self.unavailable)
        for name, net in (("lpips_alex", self.lpips_alex), ("lpips_vgg", self.lpips_vgg), ("rfid", self.inception)):
            if name in metrics and net is None and name not in out:
                out[name] = "no network given"
        return out


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
    if "rfid" in metrics:
        from ..metrics.inception import WEIGHTS_FILE as INCEPTION_FILE
        from ..metrics.inception import FIDInceptionV3

        explicit = _weights_in(weights_dir, INCEPTION_FILE)
        try:
            nets.inception = FIDInceptionV3(explicit).to(device)
            nets.identity["inception"] = _file_identity(locate_weights(INCEPTION_FILE, explicit, what="", option=""))
        except WetokError as exc:
            nets.unavailable["rfid"] = str(exc)
    return nets
