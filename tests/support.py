"""Helpers shared by the tests, in one place: where the reference fixtures are, tiny models and
configs, small pictures and image folders, running the command line in-process, and random-weight
stand-ins for the pretrained metric networks written in their standard file layouts (so that the
real loading code runs without the pretrained files)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import alexnet
from torchvision.models.vgg import cfgs, make_layers

from wetok import Tokenizer, TokenizerConfig
from wetok.cli.main import main
from wetok.metrics.inception import FEATURE_DIM, WEIGHTS_FILE, FIDInceptionV3
from wetok.metrics.lpips import BACKBONE_FILES

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("WETOK_REFERENCE") or REPO.parent / "shared" / "fixtures" / "reference")
"""The original implementation's checkpoints and outputs: ../shared/fixtures/reference beside the
checkout, or the folder $WETOK_REFERENCE names (`WETOK_REFERENCE=/an/empty/dir` shows what runs
and what is skipped without them; with CI=true as well, that the run fails)."""
CASES = ("tiny_d16", "tiny_d8_g8", "tiny_gd_d32")
TINY_CONFIG = REPO / "configs" / "tiny-cpu.yaml"
"""A training config small enough for a few steps on one CPU core."""

TINY = TokenizerConfig(channels=32, channel_mult=(1, 1, 2), num_res_blocks=1, latent_channels=8, groups=2)
"""f = 4, 8 bits per cell in 2 groups of 4 bits: fast enough for many CLI runs."""
TINY_GD = TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=12, groups=3, generative=True)
"""f = 2, generative decoder, 3 groups of 4 bits."""


# ---- the reference fixtures -------------------------------------------------------------------
def in_ci() -> bool:
    """True when $CI is set to anything but "", 0, false or no (CI services set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


REFERENCE_NOT_FOUND = "reference fixtures not found"


def reference_available() -> bool:
    return (REFERENCE / "cases.json").is_file()


def require_reference() -> Path:
    """The reference fixtures directory. Without it a test is skipped, except under CI (`in_ci`),
    where it fails: there the fixtures are part of what is tested, and a green run that skipped
    them would hide that the reproduction of the original was never checked. Only tests whose
    point is the original's files or numbers use this; the others use random-weight models."""
    if not reference_available():
        message = f"{REFERENCE_NOT_FOUND} at {REFERENCE} (../shared/fixtures/reference beside the checkout, or $WETOK_REFERENCE)"
        if in_ci():
            pytest.fail(f"{message}; CI=true: the tests that need them fail instead of skipping", pytrace=False)
        pytest.skip(message)
    return REFERENCE


# ---- models -----------------------------------------------------------------------------------
def make_model_dir(directory: Path, config: TokenizerConfig = TINY, seed: int = 0) -> Path:
    """Save a random-weight tokenizer (`Tokenizer.save`) into `directory`."""
    torch.manual_seed(seed)
    model = Tokenizer(config)
    with torch.no_grad():
        for p in model.parameters():  # larger weights than the default init: varied tokens
            p.add_(torch.randn_like(p) * 0.05)
    return model.save(directory)


TINY_AR_TOKENIZER = TokenizerConfig(channels=32, channel_mult=(1, 1, 2), num_res_blocks=1, latent_channels=8, groups=2)
"""The tokenizer of `make_generator`: 2 groups of 4 bits, downsample 4 (16 x 16 images for a 4 x 4 grid)."""


def make_generator(seed: int = 0, *, classes: int = 5, generative: bool = False):  # -> wetok.ar.Transformer
    """A random-weight generator (4 x 4 positions of 2 sub-tokens of 4 bits, 5 classes) paired with
    a random tokenizer; the output heads get random weights too (they start at zero), so that
    the logits carry information."""
    from wetok.ar import Transformer, TransformerConfig

    torch.manual_seed(seed)
    config = TransformerConfig(grid_size=4, groups=2, bits_per_group=4, dim=32, heads=2, spatial_layers=2, factorized_layers=2,
                               num_classes=classes)
    model = Transformer(config)
    with torch.no_grad():
        for head in model.head:
            head.weight.normal_(0, 0.5)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tokenizer_config = TokenizerConfig(**{**TINY_AR_TOKENIZER.to_dict(), "generative": generative})
    tokenizer = Tokenizer(tokenizer_config)
    with torch.no_grad():
        for p in tokenizer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.attach_tokenizer(tokenizer)
    return model.eval()


# ---- pictures and folders ---------------------------------------------------------------------
def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 (H, W, 3) picture."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def write_photo(path: Path, height: int, width: int, seed: int = 0, **save_args) -> Path:
    """`photo(height, width, seed)` saved at `path` (folders created; Pillow's save options)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(height, width, seed)).save(path, **save_args)
    return path


def make_images(folder: Path, count: int = 6, size: tuple[int, int] = (40, 56), seed: int = 0) -> list[Path]:
    """`count` smooth random RGB PNGs (height, width = size) in folder/a and folder/b/c (nested)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        sub = folder / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, size=(size[0] // 8 + 1, size[1] // 8 + 1, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((size[1], size[0]), Image.BILINEAR)
        path = sub / f"img{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def class_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 4, size: int = 16) -> Path:
    """`per_class` smooth random RGB PNGs of `size` px in root/<class>/ for each class."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = rng.integers(0, 256, size=(3, 3, 3)).astype(np.uint8) // (c + 1)
            Image.fromarray(base).resize((size, size), Image.BILINEAR).save(root / name / f"{i}.png")
    return root


AR_RECIPE = """
model: {dim: 32, heads: 2, spatial_layers: 2, factorized_layers: 1, multiple_of: 32}
tokenizer: {model: TOKENIZER}
data: {batch_size: 4}
optim: {lr: 3.0e-3, warmup_steps: 2, ema_decay: 0.9}
train: {steps: 6, precision: fp32, device: cpu, threads: 1, ckpt_every: 3, log_every: 1, timeout_minutes: 1}
sample: {every: 3, classes: 2, per_class: 2, cfg_scale: 1.5}
"""


def make_ar_data(root: Path) -> dict[str, Path]:
    """{"tokenizer": a saved random tokenizer (4 x 4 grid of 2 sub-tokens of 4 bits at 16 px),
    "shards": its token shards of 2 classes x 4 images with flips, "config": a tiny generator
    recipe using them, "images": the class folder}, under `root`."""
    import wetok
    from wetok.ar.tokenize import TokenizeSettings, tokenize
    from wetok.distributed import Distributed

    tokenizer = make_model_dir(root / "tokenizer", TINY_AR_TOKENIZER)
    images = class_folder(root / "images")
    info = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    tokenize(wetok.load(tokenizer), images, root / "shards", TokenizeSettings(size=16, augment="flip", shard_size=3), info=info,
             progress=False)
    config = root / "tiny-ar.yaml"
    config.write_text(AR_RECIPE.replace("TOKENIZER", str(tokenizer)))
    return {"tokenizer": tokenizer, "shards": root / "shards", "config": config, "images": images}


def photo_folder(root: Path) -> Path:
    """5 real photos (scikit-image's) of varied sizes (two in a sub-folder, PNG and JPEG) and one broken file."""
    from skimage import data

    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
              "rocket": data.rocket(), "camera": data.camera()}
    sizes = [(70, 45), (61, 80), (96, 64), (50, 75), (66, 66)]
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for k, ((name, array), size) in enumerate(zip(photos.items(), sizes)):
        image = Image.fromarray(array).convert("RGB").resize(size, Image.BICUBIC)
        if k % 2:
            image.save(root / "sub" / f"{name}.jpg", quality=92)
        else:
            image.save(root / f"{name}.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def listing(directory: Path) -> list[str]:
    """Every file under `directory` (relative names), hidden ones too: catches left-over temp files."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


# ---- running things ---------------------------------------------------------------------------
def torchrun_workers(launcher: int) -> dict[int, int]:
    """{RANK: pid} of a torchrun launcher's worker processes (its children carrying RANK in their environment)."""
    found = {}
    for task in Path(f"/proc/{launcher}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            rank = [e[5:] for e in env if e.startswith(b"RANK=")]
            if rank:
                found[int(rank[0])] = int(child)
    return found


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str, limit: float = 180.0,
             interval: float = 0.01) -> None:
    """Poll `condition()` every `interval` seconds until it holds; an `AssertionError` naming `what`
    when `process` ends first or `limit` seconds pass (then the process is killed)."""
    deadline = time.monotonic() + limit
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} within {limit} s")
        time.sleep(interval)


def cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """Run `wetok ARGV` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_metrics(run_dir: Path) -> list[dict]:
    """The JSON lines of RUN_DIR/metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---- random-weight metric networks in their standard file layouts ------------------------------
def torchvision_features(net: str) -> nn.Sequential:
    """torchvision's `vgg16().features` / `alexnet().features`, randomly initialised (VGG16's from
    torchvision's own `make_layers`, without building its 120M-parameter classifier)."""
    if net == "vgg":
        return make_layers(cfgs["D"], batch_norm=False)
    return alexnet(weights=None).features


def write_lpips_backbone(directory: Path, net: str, seed: int = 0) -> Path:
    """torchvision's layout (`features.*`, plus a classifier entry that loaders must ignore)."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in torchvision_features(net).state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(7)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / BACKBONE_FILES[net]
    torch.save(state, path)
    return path


def calibrated_inception(seed: int = 0) -> FIDInceptionV3:
    """A random FID Inception whose BatchNorm statistics come from random images, so that its
    features differ between images (plain random BatchNorm statistics give near-constant ones)."""
    torch.manual_seed(seed)
    model = FIDInceptionV3(pretrained=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: the running stats become this batch's
    nn.Module.train(model, True)
    with torch.no_grad():
        model(torch.rand(2, 3, 40, 40) * 2 - 1)
    nn.Module.train(model, False)
    return model


def write_inception(directory: Path, seed: int = 0) -> Path:
    """pytorch-fid's file layout (torchvision `Inception3` keys with pytorch-fid's blocks,
    including the 1008-way fc layer that the feature network does not use)."""
    state = dict(calibrated_inception(seed).network.state_dict())
    assert state["fc.weight"].shape == (1008, FEATURE_DIM)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / WEIGHTS_FILE)
    return directory / WEIGHTS_FILE
