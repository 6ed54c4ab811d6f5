"""`.npz` sample files: ADM's layout, `arr_0` uint8 (N, H, W, 3) images and `arr_1` int64 (N,)
labels (what the ADM evaluator and `wetok gfid` read), or the same arrays named `images` and
`labels` (`NAMED_KEYS`, the digits demo's layout).

`write_npz` streams the images into the archive chunk by chunk (50,000 images of 256 x 256 are
9.8 GB: they never need to be in memory at once), uncompressed as `numpy.savez` writes, with
zip64 so that members over 4 GB are valid; `numpy.load` reads the result.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..files import atomic_write

ADM_KEYS = ("arr_0", "arr_1")
NAMED_KEYS = ("images", "labels")


def write_npz(path: Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray], labels: np.ndarray,
              keys: tuple[str, str] = ADM_KEYS) -> None:
    """Write `path` atomically: `keys[0]` (`arr_0`) of `shape` (N, H, W, 3) uint8 from `chunks`
    (uint8 arrays (n_i, H, W, 3) in order, n_i summing to N) and `keys[1]` (`arr_1`) = `labels`
    (N,) int64."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open(f"{keys[0]}.npy", "w", force_zip64=True) as member:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": tuple(shape)}
                np.lib.format.write_array_header_2_0(member, header)
                written = 0
                for chunk in chunks:
                    if chunk.dtype != np.uint8 or chunk.shape[1:] != tuple(shape[1:]):
                        raise ValueError(f"chunk {chunk.dtype} {chunk.shape} does not fit {shape}")
                    member.write(np.ascontiguousarray(chunk).tobytes())
                    written += chunk.shape[0]
                if written != shape[0]:
                    raise ValueError(f"{written} images written for an archive of {shape[0]}")
            with archive.open(f"{keys[1]}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(labels, dtype=np.int64), allow_pickle=False)

    atomic_write(path, write)
