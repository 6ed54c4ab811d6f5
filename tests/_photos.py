"""A small folder of real photos (scikit-image's) for evaluation tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def photo_folder(root: Path) -> Path:
    """5 photos of varied sizes (two in a sub-folder, PNG and JPEG) and one broken file."""
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
