"""Build the default model's training and held-out images from the permitted offline sources.

    python scripts/prepare_default_data.py --out DATA_DIR [--wallpapers DIR]

Sources (and nothing else): scikit-image's bundled photos (`skimage.data`), scikit-learn's
`load_sample_images` (china.jpg, flower.jpg) and Debian's `plasma-workspace-wallpapers`
(`apt-get download plasma-workspace-wallpapers && dpkg -x *.deb DIR`; pass DIR, or let the script
run those two commands in a temporary directory).

Writes OUT/train/ (every training image as PNG at several scales: shorter side 256, 384, 512 and
768 where the original is large enough, so random crops see the evaluation scale and finer ones)
and OUT/heldout/ (six photos never trained on, as PNG at full size: the evaluation protocol
resizes and centre-crops them itself). Deterministic: the same inputs give the same files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SCALES = (256, 384, 512, 768)
HELDOUT_WALLPAPERS = ("EveningGlow", "FallenLeaf")
HELDOUT_SKIMAGE = ("chelsea", "coffee")
SKIMAGE_TRAIN = (
    "astronaut", "brick", "camera", "cell", "clock", "coins", "colorwheel", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text",
)


def rgb(array: np.ndarray) -> Image.Image:
    from wetok.images import to_rgb

    return to_rgb(Image.fromarray(array))


def largest_wallpapers(root: Path) -> dict[str, Path]:
    """Each wallpaper's largest image file under usr/share/wallpapers/<Name>/contents/images/."""
    best: dict[str, tuple[int, Path]] = {}
    for path in sorted(root.glob("usr/share/wallpapers/*/contents/images/*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        with Image.open(path) as im:
            pixels = im.width * im.height
        name = path.parts[-4]
        if name not in best or pixels > best[name][0]:
            best[name] = (pixels, path)
    return {name: path for name, (_, path) in sorted(best.items())}


def extract_wallpapers(workdir: Path) -> Path:
    subprocess.run(["apt-get", "download", "plasma-workspace-wallpapers"], cwd=workdir, check=True)
    deb = next(workdir.glob("plasma-workspace-wallpapers_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "x")], check=True)
    return workdir / "x"


def save_scales(image: Image.Image, stem: str, folder: Path) -> int:
    """Save `image` at each scale in SCALES not larger than itself (always at least the smallest)."""
    from wetok.images import resize_shorter_side

    array = np.asarray(image)
    shorter = min(array.shape[:2])
    written = 0
    for scale in SCALES:
        if scale > shorter and scale != SCALES[0]:
            continue
        Image.fromarray(resize_shorter_side(array, scale)).save(folder / f"{stem}_s{scale}.png")
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wallpapers", type=Path, help="an extracted plasma-workspace-wallpapers package (dpkg -x)")
    args = parser.parse_args(argv)
    import skimage.data
    from sklearn.datasets import load_sample_images

    train, heldout = args.out / "train", args.out / "heldout"
    for folder in (train, heldout):
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.wallpapers or extract_wallpapers(Path(tmp))
        wallpapers = largest_wallpapers(root)
        if not wallpapers:
            print(f"no wallpapers under {root}", file=sys.stderr)
            return 1
        count = 0
        for name, path in wallpapers.items():
            image = rgb(np.asarray(Image.open(path)))
            if name in HELDOUT_WALLPAPERS:
                image.save(heldout / f"wallpaper_{name}.png")
            else:
                count += save_scales(image, f"wallpaper_{name}", train)
    for name in SKIMAGE_TRAIN + HELDOUT_SKIMAGE:
        image = rgb(getattr(skimage.data, name)())
        if name in HELDOUT_SKIMAGE:
            image.save(heldout / f"skimage_{name}.png")
        else:
            count += save_scales(image, f"skimage_{name}", train)
    for name, array in zip(("china", "flower"), load_sample_images().images):
        rgb(array).save(heldout / f"sklearn_{name}.png")
    print(f"{count} training files in {train}; {len(list(heldout.iterdir()))} held-out images in {heldout}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
