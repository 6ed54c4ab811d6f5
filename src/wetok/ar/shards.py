"""Token shards: a dataset's tokens, as `wetok tokenize` writes them and generator training reads
them (without the tokenizer).

A shard directory SHARDS holds:

- `shard-00000.npz`, `shard-00001.npz`, ...: `np.savez` archives (uncompressed, no pickles) of
  `tokens` (rows, h, w, G) in the smallest unsigned type that holds 2**b values (`token_dtype`:
  uint8 for b <= 8, uint16 for b <= 16, uint32 above), `labels` (rows,) int64 class labels,
  `image` (rows,) int64 global image index (into the manifest's `files`) and `view` (rows,) uint8
  augmented view (0 .. views-1). Shard k holds the readable images among image indices
  [k * shard_size, (k + 1) * shard_size), in increasing order, each as `views` consecutive rows,
  view 0 first; an unreadable image has no rows.
- `manifest.json`, written last (when every shard exists): `ShardManifest` as JSON.
- `tokenize.json`: the settings of the run that wrote them (`wetok.ar.tokenize`), so that a rerun
  can resume; readers do not need it.

Every file is written atomically (a temporary name, then a rename), so a shard or a manifest
that exists is complete. `open_shards` reads a directory back with strict checks: anything that
does not fit the manifest is one `WetokError` line naming the file.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TokenizerConfig, _shown
from ..errors import ConfigError, WetokError
from ..files import atomic_write, read_regular_file

FORMAT = "wetok-token-shards"
VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_KEYS = ("tokens", "labels", "image", "view")
AUGMENT_VIEWS = {"none": 1, "flip": 2, "tencrop": 10}
"""The augmentations of `wetok tokenize` and the views each gives per image."""
MAX_MANIFEST_BYTES = 1 << 30
"""The largest manifest read (ImageNet's 1.28M file names take about 60 MB)."""
TOKENIZER_KEYS = ("architecture", "weights_file", "preset", "config", "weights_sha256")


def shard_name(index: int) -> str:
    """The file name of shard `index`: shard-00000.npz, shard-00001.npz, ..."""
    return f"shard-{index:05d}.npz"


def token_dtype(bits_per_group: int) -> np.dtype:
    """The smallest unsigned integer type holding 2**bits_per_group token values."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if bits_per_group <= np.iinfo(dtype).bits:
            return np.dtype(dtype)
    raise WetokError(f"{bits_per_group} bits per sub-token: at most 32 are supported in token shards")


@dataclass(frozen=True)
class ShardEntry:
    """One shard of a manifest: its file name, its rows (images x views) and its readable images."""

    name: str
    rows: int
    images: int


@dataclass(frozen=True)
class ShardManifest:
    """What `manifest.json` holds (see the module's description).

    tokenizer: {"architecture": `TokenizerConfig.architecture_hash()`, "weights_file": the
        weights' file or directory name or None, "preset": the preset name or None, "config":
        `TokenizerConfig.to_dict()`, "weights_sha256": `wetok.weights.weights_fingerprint` or None};
    grid: (h, w) token grid; groups: G sub-tokens per position; bits_per_group: b; dtype: the
        tokens' numpy type name ("uint8", "uint16", "uint32");
    size: image side in pixels the tokenizer saw; augment: "none", "flip" or "tencrop"; views:
        rows per image (1, 2, 10); crop_range: the ten-crop's enlargement (None without ten-crop);
    shard_size: image indices per shard; classes: class names (label i is classes[i]);
    files: every listed image's path relative to the class root, image i is files[i];
    file_labels: the label of each file; shards: one `ShardEntry` per shard, in order;
    unreadable: the files that could not be read (no rows); images: the readable images.
    """

    format: str
    version: int
    tokenizer: dict[str, Any]
    grid: tuple[int, int]
    groups: int
    bits_per_group: int
    dtype: str
    size: int
    augment: str
    views: int
    crop_range: float | None
    shard_size: int
    classes: tuple[str, ...]
    files: tuple[str, ...]
    file_labels: tuple[int, ...]
    shards: tuple[ShardEntry, ...]
    unreadable: tuple[str, ...]
    images: int

    def __post_init__(self) -> None:
        """How the fields fit together; a `WetokError` (one line) when they do not."""
        if self.format != FORMAT or self.version != VERSION:
            raise WetokError(f"not a {FORMAT} version {VERSION} manifest (format {_shown(self.format)}, version {_shown(self.version)})")
        if self.dtype != token_dtype(self.bits_per_group).name:
            raise WetokError(f"dtype {self.dtype!r} does not fit {self.bits_per_group}-bit sub-tokens ({token_dtype(self.bits_per_group).name})")
        if AUGMENT_VIEWS.get(self.augment) != self.views:
            raise WetokError(f"augment {self.augment!r} with {self.views} views (known: {AUGMENT_VIEWS})")
        if (self.crop_range is None) != (self.augment != "tencrop"):
            raise WetokError("crop_range is given with (and only with) augment 'tencrop'")
        if len(self.file_labels) != len(self.files):
            raise WetokError(f"{len(self.files)} files but {len(self.file_labels)} file_labels")
        if self.file_labels and not 0 <= min(self.file_labels) <= max(self.file_labels) < len(self.classes):
            raise WetokError(f"file_labels outside 0..{len(self.classes) - 1} ({len(self.classes)} classes)")
        if len(self.shards) != math.ceil(len(self.files) / self.shard_size):
            raise WetokError(f"{len(self.shards)} shards for {len(self.files)} files in shards of {self.shard_size}")
        for k, entry in enumerate(self.shards):
            if entry.name != shard_name(k) or entry.rows != entry.images * self.views:
                raise WetokError(f"shards[{k}]: expected {shard_name(k)} with {self.views} rows per image, got {entry.name!r} "
                                 f"with {entry.rows} rows of {entry.images} images")
        if self.images == 0:
            raise WetokError("no readable images")
        if sum(e.images for e in self.shards) != self.images or self.images + len(self.unreadable) != len(self.files):
            raise WetokError(f"{self.images} readable images and {len(self.unreadable)} unreadable do not add up to "
                             f"{len(self.files)} files and the shards' {sum(e.images for e in self.shards)} images")
        config = TokenizerConfig.from_dict(self.tokenizer.get("config", {}))
        if self.tokenizer.get("architecture") != config.architecture_hash():
            raise WetokError("tokenizer.architecture is not the hash of tokenizer.config")
        side = self.size // config.downsample
        if (self.groups, self.bits_per_group, self.grid) != (config.groups, config.bits_per_group, (side, side)):
            raise WetokError(f"grid {self.grid}, {self.groups} groups of {self.bits_per_group} bits are not what the tokenizer "
                             f"({config.describe()}) makes of {self.size}-pixel images")

    @property
    def rows(self) -> int:
        """Rows of all shards together: images x views."""
        return self.images * self.views

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of manifest.json (`from_dict` reads it back)."""
        data = asdict(self)
        for key in ("grid", "classes", "files", "file_labels", "shards", "unreadable"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ShardManifest:
        """A manifest from its JSON object: every key present with its type, no unknown keys, and
        the fields consistent (`__post_init__`); otherwise one `WetokError` naming the key."""
        if not isinstance(data, Mapping):
            raise WetokError(f"a manifest is a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise WetokError(f"not a {FORMAT} manifest (format {_shown(data.get('format'))})")
        fields = [f.name for f in cls.__dataclass_fields__.values()]
        missing = [k for k in fields if k not in data]
        unknown = sorted(str(k) for k in data if k not in fields)
        if missing or unknown:
            raise WetokError(f"missing keys {', '.join(missing)}" if missing else f"unknown keys {', '.join(unknown)}")
        return cls(
            format=FORMAT,
            version=_integer(data, "version", 1),
            tokenizer=_tokenizer_record(data["tokenizer"]),
            grid=_pair(data["grid"], "grid"),
            groups=_integer(data, "groups", 1),
            bits_per_group=_integer(data, "bits_per_group", 1),
            dtype=_text(data, "dtype"),
            size=_integer(data, "size", 1),
            augment=_text(data, "augment"),
            views=_integer(data, "views", 1),
            crop_range=None if data["crop_range"] is None else _number(data, "crop_range"),
            shard_size=_integer(data, "shard_size", 1),
            classes=_items(data, "classes", str),
            files=_items(data, "files", str),
            file_labels=_items(data, "file_labels", int),
            shards=tuple(_entry(e, k) for k, e in enumerate(_items(data, "shards", dict))),
            unreadable=_items(data, "unreadable", str),
            images=_integer(data, "images", 0),
        )


def _integer(data: Mapping[str, Any], key: str, low: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise WetokError(f"{key}: expected an integer of at least {low}, got {_shown(value)}")
    return value


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WetokError(f"{key}: expected a number, got {_shown(value)}")
    return float(value)


def _text(data: Mapping[str, Any], key: str) -> str:
    if not isinstance(data[key], str):
        raise WetokError(f"{key}: expected a string, got {_shown(data[key])}")
    return data[key]


def _items(data: Mapping[str, Any], key: str, kind: type) -> tuple:
    value = data[key]
    if not isinstance(value, list):
        raise WetokError(f"{key}: expected a list, got {_shown(value)}")
    bad = next((i for i, v in enumerate(value) if not isinstance(v, kind) or isinstance(v, bool)), None)
    if bad is not None:
        raise WetokError(f"{key}[{bad}]: expected a {kind.__name__}, got {_shown(value[bad])}")
    return tuple(value)


def _pair(value: Any, key: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise WetokError(f"{key}: expected [h, w], got {_shown(value)}")
    return _integer({key: value[0]}, key, 1), _integer({key: value[1]}, key, 1)


def _entry(value: dict, k: int) -> ShardEntry:
    if sorted(value) != ["images", "name", "rows"]:
        raise WetokError(f"shards[{k}]: expected the keys name, rows, images, got {_shown(sorted(value))}")
    return ShardEntry(_text(value, "name"), _integer(value, "rows", 0), _integer(value, "images", 0))


def _tokenizer_record(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or sorted(value) != sorted(TOKENIZER_KEYS):
        raise WetokError(f"tokenizer: expected an object of {', '.join(TOKENIZER_KEYS)}, got {_shown(value)}")
    for key in ("weights_file", "preset"):
        if value[key] is not None and not isinstance(value[key], str):
            raise WetokError(f"tokenizer.{key}: expected a string or null, got {_shown(value[key])}")
    sha = value["weights_sha256"]
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise WetokError(f"tokenizer.weights_sha256: expected 64 hex digits or null, got {_shown(sha)}")
    if not isinstance(value["architecture"], str):
        raise WetokError(f"tokenizer.architecture: expected a string, got {_shown(value['architecture'])}")
    try:
        TokenizerConfig.from_dict(value["config"])
    except ConfigError as exc:
        raise WetokError(f"tokenizer.config: {exc}") from None
    return dict(value)


# ---- writing -----------------------------------------------------------------------------------
def write_shard(path: Path, tokens: np.ndarray, labels: np.ndarray, image: np.ndarray, view: np.ndarray) -> None:
    """Write one shard atomically: tokens (rows, h, w, G) of a `token_dtype`, labels int64, image
    int64 and view uint8, each (rows,)."""
    arrays = {"tokens": tokens, "labels": labels.astype(np.int64), "image": image.astype(np.int64), "view": view.astype(np.uint8)}

    def save(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, save)


def write_manifest(directory: Path, manifest: ShardManifest) -> Path:
    """Write `directory/manifest.json` atomically; returns its path."""
    path = directory / MANIFEST_NAME
    text = json.dumps(manifest.to_dict(), indent=1) + "\n"
    atomic_write(path, lambda p: p.write_text(text))
    return path


# ---- reading -----------------------------------------------------------------------------------
def read_manifest(directory: str | Path) -> ShardManifest:
    """The `ShardManifest` of a shard directory; one `WetokError` naming the file when it is
    missing (an unfinished `wetok tokenize` run), not JSON, or not a valid manifest."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.exists():
        raise WetokError(f"{directory}: no such folder of token shards")
    if directory.is_dir() and not path.exists():
        unfinished = (directory / "tokenize.json").exists()
        raise WetokError(f"{directory}: no {MANIFEST_NAME}: " + ("an unfinished wetok tokenize run (run it again to finish)"
                                                              if unfinished else "not a folder of token shards (made by wetok tokenize)"))
    blob = read_regular_file(path, "a token-shard manifest", WetokError, MAX_MANIFEST_BYTES)
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested absurdly deep
        raise WetokError(f"{path}: not a JSON manifest ({str(exc).splitlines()[0][:100]})") from None
    try:
        return ShardManifest.from_dict(data)
    except WetokError as exc:
        raise WetokError(f"{path}: {exc}") from None


def read_shard(path: Path, keys: tuple[str, ...] = SHARD_KEYS) -> dict[str, np.ndarray]:
    """The arrays `keys` of one shard file (no pickles); one `WetokError` naming the file when it
    is not a shard (unreadable, keys missing or others, wrong shapes or types)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if sorted(data.files) != sorted(SHARD_KEYS):
                raise WetokError(f"{path}: holds {', '.join(sorted(data.files)) or 'nothing'}, not the arrays of a token shard "
                                 f"({', '.join(SHARD_KEYS)})")
            arrays = {key: data[key] for key in keys}
    except WetokError:
        raise
    except FileNotFoundError:
        raise WetokError(f"{path}: missing (the shard directory is incomplete; rerun wetok tokenize)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise WetokError(f"{path}: not a readable token shard ({str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__})") from None
    wanted = {"tokens": None, "labels": np.int64, "image": np.int64, "view": np.uint8}
    for key, array in arrays.items():
        if array.ndim != (4 if key == "tokens" else 1) or (wanted[key] is not None and array.dtype != wanted[key]):
            raise WetokError(f"{path}: {key} has shape {array.shape} and type {array.dtype}, not that of a token shard")
    rows = {key: array.shape[0] for key, array in arrays.items()}
    if len(set(rows.values())) > 1:
        raise WetokError(f"{path}: its arrays have different numbers of rows ({', '.join(f'{k} {n}' for k, n in rows.items())})")
    return arrays


@dataclass(frozen=True)
class TokenShards:
    """A shard directory in memory (what `open_shards` returns).

    tokens: (rows, h, w, G) of `manifest.dtype`, all shards concatenated in order; labels: (rows,)
    int64; image: (rows,) int64 global image index; view: (rows,) uint8; rows_of_image:
    int64 (num_images, views), the row of each (image, view), images in shard order.
    """

    path: Path
    manifest: ShardManifest
    tokens: np.ndarray
    labels: np.ndarray
    image: np.ndarray
    view: np.ndarray
    rows_of_image: np.ndarray

    @property
    def num_images(self) -> int:
        """Distinct (readable) images."""
        return int(self.rows_of_image.shape[0])

    @property
    def views(self) -> int:
        """Rows per image: 1 (none), 2 (flip) or 10 (tencrop)."""
        return self.manifest.views

    def check_tokenizer(self, config: TokenizerConfig, weights_sha256: str | None, source: str) -> None:
        """Refuse (one-line `WetokError`) a tokenizer other than the one that made the shards: another
        architecture hash, or, when both are known, other weights (`wetok.weights.weights_fingerprint`;
        the same weights under another file or folder name are the same tokenizer). `source` names
        the tokenizer in the message (its path or preset)."""
        made = self.manifest.tokenizer
        made_by = made["preset"] or made["weights_file"] or "an unnamed tokenizer"
        if config.architecture_hash() != made["architecture"]:
            raise WetokError(f"{source}: the token shards {self.path} were made by {made_by} (architecture {made['architecture']}), "
                             f"not by this tokenizer (architecture {config.architecture_hash()}: {config.describe()})")
        if weights_sha256 is not None and made["weights_sha256"] is not None and weights_sha256 != made["weights_sha256"]:
            raise WetokError(f"{source}: the token shards {self.path} were made by {made_by}, whose weights differ from "
                             f"these (same architecture, other weights: sha256 {made['weights_sha256'][:12]}..., not "
                             f"{weights_sha256[:12]}...)")


def _few(names: Sequence[str]) -> str:
    """Up to 3 names for a message: "a, b, c and 5 more", or "none"."""
    if not names:
        return "none"
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def open_shards(path: str | Path) -> TokenShards:
    """Read a shard directory (its manifest and every shard, into memory), checking that each
    shard is the one the manifest describes: its rows, token type and shape, token values below
    2**b, its images in range and order with their views consecutive and their labels those of
    their files. Anything else is one `WetokError` naming the file."""
    path = Path(path)
    m = read_manifest(path)
    h, w = m.grid
    tokens = np.empty((m.rows, h, w, m.groups), dtype=m.dtype)
    labels = np.empty(m.rows, dtype=np.int64)
    image = np.empty(m.rows, dtype=np.int64)
    view = np.empty(m.rows, dtype=np.uint8)
    file_labels = np.asarray(m.file_labels, dtype=np.int64)
    expected_view = np.tile(np.arange(m.views, dtype=np.uint8), m.shard_size)
    start = 0
    for k, entry in enumerate(m.shards):
        file = path / entry.name
        arrays = read_shard(file)
        t = arrays["tokens"]
        if t.shape != (entry.rows, h, w, m.groups) or t.dtype != m.dtype:
            raise WetokError(f"{file}: tokens {t.shape} {t.dtype}; the manifest says ({entry.rows}, {h}, {w}, {m.groups}) {m.dtype}")
        if t.size and int(t.max()) >= 2**m.bits_per_group:
            raise WetokError(f"{file}: a token value {int(t.max())} is outside 0..{2**m.bits_per_group - 1}")
        own = arrays["image"].reshape(entry.images, m.views) if entry.rows else np.empty((0, m.views), np.int64)
        first = own[:, 0]
        low, high = k * m.shard_size, min((k + 1) * m.shard_size, len(m.files))
        if ((own != first[:, None]).any() or (np.diff(first) <= 0).any() or (first.size and (first[0] < low or first[-1] >= high))
                or not np.array_equal(arrays["view"], expected_view[:entry.rows])):
            raise WetokError(f"{file}: its rows are not images {low}..{high - 1} in order, each with views 0..{m.views - 1}")
        if not np.array_equal(arrays["labels"], file_labels[arrays["image"]]):
            raise WetokError(f"{file}: labels differ from those of the manifest's files")
        stop = start + entry.rows
        tokens[start:stop], labels[start:stop], image[start:stop], view[start:stop] = t, arrays["labels"], arrays["image"], arrays["view"]
        start = stop
    present = np.ones(len(m.files), dtype=bool)
    present[image] = False
    without_rows = [m.files[i] for i in np.flatnonzero(present)]
    if without_rows != list(m.unreadable):
        raise WetokError(f"{path / MANIFEST_NAME}: unreadable lists {_few(m.unreadable)}, but the files without rows are "
                         f"{_few(without_rows)}")
    rows_of_image = np.arange(m.rows, dtype=np.int64).reshape(m.images, m.views)
    return TokenShards(path=path, manifest=m, tokens=tokens, labels=labels, image=image, view=view, rows_of_image=rows_of_image)
