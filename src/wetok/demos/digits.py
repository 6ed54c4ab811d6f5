"""The digits demo's data and judge: scikit-learn's handwritten digits (`sklearn.datasets.load_digits`,
1797 images of 8 x 8 pixels with values 0..16, labels 0..9, shipped inside scikit-learn: no
download) as RGB images, and a classifier of the real digits that tells which digit an image shows.

Images: the value v (0..16) becomes the gray level round(v * 255 / 16), so the digit is white
(ink, 255) on black (0), as in MNIST; the 8 x 8 gray image is upscaled to `size` x `size` with
PIL's bicubic filter and repeated into three equal channels. `DIGITS_SIZE` (32) is the demo's
size: the shipped tokenizer (`TOKENIZER_DIR`) turns a 32 px digit into an 8 x 8 grid of tokens.

The classifier (`DigitClassifier`) is an RBF support-vector machine fitted on the original 8 x 8
values; it reads any image by reducing it to 8 x 8 gray (the mean of the channels, then an area
average) on the same 0..16 scale.

Weights: `DEMO_DIR` is the package folder `wetok/demos/digits`; `TOKENIZER_DIR` holds the demo
tokenizer (a directory `Tokenizer.save` writes; `wetok.load(TOKENIZER_DIR)` reads it) and
`GENERATOR_DIR` the demo generator. `scripts/train_digits_demo.sh` rebuilds both.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import CheckpointError, WetokError
from ..files import atomic_write
from ..images import to_tensor, to_uint8
from ..tokenizer import Tokenizer
from ..weights import CONFIG_FILE, load

DIGITS_SIZE = 32
"""Side in pixels of the demo's images (what the shipped tokenizer was trained on)."""
NUM_DIGITS = 1797
NUM_CLASSES = 10
SOURCE_SIDE = 8
"""Side of scikit-learn's digit images."""
SOURCE_MAX = 16
"""The largest value of scikit-learn's digit images (values are 0..16)."""

DEMO_DIR = Path(__file__).resolve().parent / "digits"
"""The package folder of the digits demo's weights."""
TOKENIZER_DIR = DEMO_DIR / "tokenizer"
"""The demo tokenizer: `config.json` + `model.safetensors` as `Tokenizer.save` writes them."""
GENERATOR_DIR = DEMO_DIR / "generator"
"""The demo generator, as `wetok.ar.save` writes it."""


def _sklearn_missing(exc: ImportError) -> WetokError:
    return WetokError(f"the digits demo needs scikit-learn ({exc.name or 'sklearn'} is not installed): pip install scikit-learn")


@functools.lru_cache(maxsize=1)
def _source_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: float64 (1797, 8, 8) in 0..16 and int64 labels (1797,), read-only."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise _sklearn_missing(exc) from None
    data = load_digits()
    images = np.asarray(data.images, dtype=np.float64)
    labels = np.asarray(data.target, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The original digits: (images float64 (1797, 8, 8) in 0..16, labels int64 (1797,) in 0..9),
    in scikit-learn's order (fresh copies)."""
    images, labels = _source_digits()
    return images.copy(), labels.copy()


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < SOURCE_SIDE:
        raise WetokError(f"size must be an integer of at least {SOURCE_SIDE} pixels, got {size!r}")
    return size


def digit_images(size: int = DIGITS_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as RGB images: (images uint8 (1797, size, size, 3), labels int64 (1797,)).

    White digits (255) on black (0), the three channels equal; `size` >= 8 (bicubic upscaling of
    the 8 x 8 originals; 8 gives the originals' gray levels round(v * 255 / 16)).
    """
    _check_size(size)
    originals, labels = source_digits()
    gray = np.round(originals * (255.0 / SOURCE_MAX)).astype(np.uint8)
    if size != SOURCE_SIDE:
        gray = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BICUBIC)) for g in gray])
    return np.repeat(gray[..., None], 3, axis=3), labels


def write_digit_folder(root: str | Path, size: int = DIGITS_SIZE) -> Path:
    """Write the 1797 digits as PNG files in one folder per class: `root/<label>/<index>.png`
    (`index` the digit's position in scikit-learn's order, 4 digits: `root/0/0000.png`, ...,
    `root/8/1796.png`), the layout `wetok tokenize` (labels from class folders) and `wetok train`
    read. Each file is written atomically; existing files of the same names are replaced, other
    files in `root` are left alone. Returns `root`."""
    root = Path(root)
    images, labels = digit_images(size)
    try:
        for label in range(NUM_CLASSES):
            (root / str(label)).mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(images, labels)):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            data = buffer.getvalue()
            atomic_write(root / str(int(label)) / f"{index:04d}.png", lambda p, data=data: p.write_bytes(data))
    except OSError as exc:
        raise WetokError(f"{root}: cannot write the digit folder: {exc.strerror or exc}") from None
    return root


def reduce_to_source(images: np.ndarray) -> np.ndarray:
    """Images uint8 (N, H, W, 3) (or gray (N, H, W)), any H, W >= 1 -> float64 (N, 8, 8) on the
    originals' 0..16 scale: the mean of the channels, an area average to 8 x 8 (PIL's box filter),
    times 16 / 255."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise WetokError(f"digit images must be uint8 (0..255), got {images.dtype}")
    if images.ndim == 4 and images.shape[-1] == 3:
        gray = images.astype(np.float32).mean(axis=3)
    elif images.ndim == 3:
        gray = images.astype(np.float32)
    else:
        raise WetokError(f"digit images must be (N, H, W, 3) or (N, H, W), got shape {images.shape}")
    if gray.shape[1] != SOURCE_SIDE or gray.shape[2] != SOURCE_SIDE:
        side = (SOURCE_SIDE, SOURCE_SIDE)
        gray = np.stack([np.asarray(Image.fromarray(g, mode="F").resize(side, Image.Resampling.BOX)) for g in gray]) if len(gray) \
            else np.zeros((0, *side), np.float32)
    return gray.astype(np.float64) * (SOURCE_MAX / 255.0)


class DigitClassifier:
    """Which digit an image shows: scikit-learn's `SVC(gamma=0.001, C=10)` (RBF kernel) fitted on
    the 64 values (0..16) of the original 8 x 8 digits.

    Args:
        indices: the digits (positions in scikit-learn's order, 0..1796) to fit on; all 1797 when
            None. A subset leaves the others out for measuring the classifier itself.

    On the original digits it recognises about 99% of a held-out half when fitted on the other
    half, and as many of the 32 px images `digit_images` makes.
    """

    def __init__(self, indices: Sequence[int] | np.ndarray | None = None) -> None:
        try:
            from sklearn.svm import SVC
        except ImportError as exc:
            raise _sklearn_missing(exc) from None
        originals, labels = _source_digits()
        chosen = np.arange(NUM_DIGITS) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= NUM_DIGITS:
            raise WetokError(f"indices must be digits 0..{NUM_DIGITS - 1} (at least one), got {chosen.size} values")
        if np.unique(labels[chosen]).size < 2:
            raise WetokError("indices must cover at least two classes")
        self._svc: Any = SVC(gamma=0.001, C=10.0).fit(originals[chosen].reshape(len(chosen), -1), labels[chosen])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Labels int64 (N,) in 0..9 of images uint8 (N, H, W, 3) (or gray (N, H, W)), white digits
        on black as `digit_images` makes them, any size (see `reduce_to_source`)."""
        features = reduce_to_source(images)
        if len(features) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._svc.predict(features.reshape(len(features), -1)), dtype=np.int64)

    def score(self, images: np.ndarray, labels: np.ndarray | Sequence[int]) -> float:
        """The fraction (0..1) of `images` recognised as their `labels` (int (N,))."""
        labels = np.asarray(labels).reshape(-1)
        predicted = self.predict(images)
        if len(predicted) != len(labels) or len(labels) == 0:
            raise WetokError(f"need as many labels as images (at least one), got {len(labels)} labels for {len(predicted)} images")
        return float(np.mean(predicted == labels))


def reconstruct_digits(model: Tokenizer, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """`model`'s reconstructions (encode, decode) of images uint8 (N, H, W, 3) -> uint8 (N, H, W, 3),
    in batches of `batch_size`, without gradients, on the model's device."""
    if len(images) == 0:
        return np.zeros_like(np.asarray(images, dtype=np.uint8))
    with torch.no_grad():
        parts = [to_uint8(model.reconstruct(to_tensor(images[i:i + batch_size]).to(model.device)))
                 for i in range(0, len(images), batch_size)]
    return np.concatenate(parts)


def demo_tokenizer(device: str | torch.device | None = None) -> Tokenizer:
    """The shipped digits tokenizer (`TOKENIZER_DIR`), in eval mode: 32 px RGB in, an 8 x 8 grid
    of tokens out (see its MODEL_CARD.md). A one-line `CheckpointError` when the package lacks it."""
    if not (TOKENIZER_DIR / CONFIG_FILE).is_file():
        raise CheckpointError("this wetok build carries no digits demo tokenizer (scripts/train_digits_demo.sh trains it)")
    return load(TOKENIZER_DIR, device=device)


CFG_SCALE = 2.0
"""The guidance scale `wetok sample --demo digits` uses by default (MODEL_CARD.md gives the
classifier's accuracy on samples with it and without guidance)."""


def generator_dir() -> Path:
    """`GENERATOR_DIR`, checked: a one-line `CheckpointError` when the package lacks the generator."""
    if not (GENERATOR_DIR / CONFIG_FILE).is_file():
        raise CheckpointError("this wetok build carries no digits demo generator (scripts/train_digits_demo.sh trains it)")
    return GENERATOR_DIR


def demo_generator(device: str | torch.device | None = None):  # -> wetok.ar.Transformer
    """The shipped digits generator (`GENERATOR_DIR`) with the demo tokenizer included, in eval
    mode. A one-line `CheckpointError` when the package lacks it."""
    from ..ar import load as load_generator

    return load_generator(generator_dir(), device=device)


def sample_digits(model: Any, per_class: int, *, cfg_scale: float = CFG_SCALE, seed: int = 0,
                  batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` samples of each digit from a generator with its tokenizer (`demo_generator()`):
    uint8 images (10 x per_class, 32, 32, 3), class-major, and their int64 labels. Sample i uses
    seed + i, as `wetok sample` does, so the images are those `wetok sample --demo digits` writes."""
    from ..ar.run import decode_images
    from ..ar.sampling import generate

    labels = np.repeat(np.arange(model.config.num_classes), per_class)
    images = []
    for start in range(0, len(labels), batch_size):
        seeds = [seed + i for i in range(start, min(start + batch_size, len(labels)))]
        tokens = generate(model, torch.as_tensor(labels[start:start + len(seeds)]), cfg_scale=cfg_scale, seeds=seeds)
        images.append(decode_images(model.tokenizer, tokens, seeds, "round"))
    return np.concatenate(images), labels
