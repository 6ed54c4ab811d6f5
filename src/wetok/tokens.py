"""Token files: the original tool's JSON layout and wetok's compact binary `.wtok` format.

A `TokenSet` is what either file holds: N images' tokens on one h x w grid, plus what is needed
to turn them back into images (which model, where the picture sits in the decoded grid).

JSON (the released `generate_wetok.py` layout, one image per file)::

    {"wetok": {"data": base64 of the flat indices, "dtype": "uint8", "shape": [h*w*G]},
     "config": released YAML path, "ckpt": checkpoint path, "image_size": H}

The indices are in (row, column, group) order. wetok adds optional keys that the original
ignores: "token_grid" [h, w], "groups", "bits_per_group", "architecture" (hash), "preset",
"weights", "original_size" [H, W], "crop_box" [top, left, height, width], "resize", "size".

`.wtok` (version 1, all integers little-endian): a header of at most 128 bytes, then N images
of exactly ceil(h*w*C/8) bytes each, C = G*b. The layout is documented field by field in
docs/token-formats.md (a test checks that table against `_FIXED` and the writer).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

import numpy as np
import torch

from .config import ModelIdentity, TokenizerConfig
from .errors import WetokError
from .files import atomic_write, read_regular_file
from .images import CropBox


class GridUnknownError(WetokError):
    """An original JSON token file read without a model: its grid depends on the model's
    downsample factor and groups. `model_hint` holds its "config"/"ckpt" entries."""

    def __init__(self, message: str, model_hint: dict[str, str]) -> None:
        super().__init__(message)
        self.model_hint = model_hint


ResizeMode = Literal["none", "crop", "stretch"]
RESIZE_CODES: dict[str, int] = {"none": 0, "crop": 1, "stretch": 2}
WEIGHTS_CODES: dict[str, int] = {"ema": 0, "raw": 1, "saved": 2}

WTOK_MAGIC = b"WTOK"
WTOK_VERSION = 1
WTOK_MAX_HEADER = 128
WTOK_SUFFIX = ".wtok"
JSON_SUFFIX = ".json"
TOKEN_SUFFIXES = (JSON_SUFFIX, WTOK_SUFFIX)

WTOK_MAX_BYTES = 1 << 30
"""The largest .wtok file `read_tokens` reads (1 GiB; 256 x 256 images take 1 KiB each with the
16x presets): larger files are refused before any byte is read."""
JSON_MAX_BYTES = 64 << 20
"""The largest JSON token file `read_tokens` reads (64 MiB; a 256 x 256 image takes about 2 KB)."""
MAX_TOKENS = 1 << 28
"""The most tokens one file may hold (N*h*w*G; 2 GiB as int64): refused from the header or the
JSON shape before anything is unpacked."""

UNPACK_CHUNK_BITS = 1 << 26
"""Bits unpacked at a time (64 MiB as uint8): whole images, at least one."""

# Fixed part of the header: 60 bytes, then two length-prefixed strings, then zero padding.
_FIXED = struct.Struct("<4sBBHIHHHBBHHIIIIIII8s")

@dataclass
class TokenSet:
    """N images' tokens on one grid, and how to turn them back into pictures.

    Attributes:
        tokens: int64 (N, h, w, G), values in [0, 2**bits_per_group).
        bits_per_group: b.
        downsample: f, pixels per grid cell along a side; the decoder gives (h*f, w*f) images.
        identity: the model that made the tokens (None when unknown, e.g. an original JSON file).
        crop: the part of the decoded (h*f, w*f) image that is the picture.
        original_size: (height, width) of the input image before any resize.
        resize: "none" (own resolution), "crop" (shorter side + centre crop) or "stretch".
        size: the resize size (0 for own resolution).
        model_hint: for JSON files, the "config" and "ckpt" entries as the file gives them (not
            resolved: `model_entry_problem` says whether one may be followed, `find_beside`
            where it lies). Used to find the model when none is given.
    """

    tokens: torch.Tensor
    bits_per_group: int
    downsample: int
    identity: ModelIdentity | None = None
    crop: CropBox | None = None
    original_size: tuple[int, int] | None = None
    resize: ResizeMode = "none"
    size: int = 0
    model_hint: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens.dim() != 4:
            raise WetokError(f"tokens must be (N, h, w, G), got shape {tuple(self.tokens.shape)}")
        _, h, w, _ = self.tokens.shape
        if self.crop is None:
            self.crop = CropBox(0, 0, h * self.downsample, w * self.downsample)
        if self.original_size is None:
            self.original_size = (self.crop.height, self.crop.width)

    @property
    def num_images(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the token grid."""
        return int(self.tokens.shape[1]), int(self.tokens.shape[2])

    @property
    def groups(self) -> int:
        return int(self.tokens.shape[3])

    def image(self, index: int) -> "TokenSet":
        """The token set of image `index` alone."""
        return replace(self, tokens=self.tokens[index : index + 1])


def check_compatible(tokens: TokenSet, config: TokenizerConfig, source: str) -> None:
    """Raise a one-line `WetokError` unless `config` can decode `tokens` (same architecture when
    the file names one; otherwise matching groups and bits per group)."""
    ident = tokens.identity
    if ident is not None and ident.architecture != config.architecture_hash():
        raise WetokError(
            f"{source}: tokens were made by {ident.describe()}, but the model is "
            f"{config.name or 'a different architecture'} (architecture {config.architecture_hash()}: "
            f"{config.describe()})"
        )
    if tokens.groups != config.groups or tokens.bits_per_group != config.bits_per_group:
        raise WetokError(
            f"{source}: tokens have {tokens.groups} groups x {tokens.bits_per_group} bits, the model "
            f"{config.groups} x {config.bits_per_group}: made by another model"
        )
    if tokens.downsample != config.downsample:
        raise WetokError(
            f"{source}: tokens are for downsample factor {tokens.downsample}, the model has {config.downsample}"
        )


# ---- bit packing ------------------------------------------------------------------------------
def pack_tokens(tokens: torch.Tensor, bits_per_group: int) -> bytes:
    """Tokens int (N, h, w, G) in [0, 2**b) -> N images of ceil(h*w*G*b / 8) bytes, concatenated.

    Bit i of group g's token at a cell goes to stream position (cell*G + g)*b + i; the stream
    is packed least significant bit first, each image padded with zero bits to a whole byte.
    """
    arr = tokens.detach().cpu().to(torch.int64).numpy()
    n = arr.shape[0]
    flat = arr.reshape(n, -1, 1)
    bits = ((flat >> np.arange(bits_per_group, dtype=np.int64)) & 1).astype(np.uint8).reshape(n, -1)
    return np.packbits(bits, axis=1, bitorder="little").tobytes()


def unpack_tokens(data: bytes, count: int, grid: tuple[int, int], groups: int, bits_per_group: int, source: str) -> torch.Tensor:
    """Inverse of `pack_tokens`: bytes -> int64 (count, h, w, G). Non-zero padding bits mean
    corruption. Unpacked a few images at a time, one bit plane at a time, so that the memory
    beyond the int64 result stays bounded (about 64 MiB of bits)."""
    h, w = grid
    cells = h * w * groups
    nbits = cells * bits_per_group
    per_image = (nbits + 7) // 8
    if count * per_image != len(data):
        raise WetokError(f"{source}: token data has {len(data)} bytes, {count} images of {per_image} bytes expected")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(count, per_image)
    values = np.zeros((count, cells), dtype=np.int64)
    step = max(1, UNPACK_CHUNK_BITS // max(1, per_image * 8))
    for first in range(0, count, step):
        bits = np.unpackbits(raw[first : first + step], axis=1, bitorder="little")
        if bits[:, nbits:].any():
            raise WetokError(f"{source}: corrupt token data (non-zero padding bits)")
        planes = bits[:, :nbits].reshape(-1, cells, bits_per_group)
        chunk = values[first : first + step]
        for i in range(bits_per_group):
            chunk |= planes[:, :, i].astype(np.int64) << i
    return torch.from_numpy(values.reshape(count, h, w, groups))


def packed_size(grid: tuple[int, int], groups: int, bits_per_group: int) -> int:
    """Bytes of one packed image: ceil(h*w*G*b / 8)."""
    return (grid[0] * grid[1] * groups * bits_per_group + 7) // 8


# ---- .wtok ------------------------------------------------------------------------------------
def _short(text: str | None, limit: int) -> bytes:
    raw = (text or "").encode("utf-8")[:limit]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")


def wtok_bytes(tokens: TokenSet) -> bytes:
    """The complete `.wtok` file for `tokens` (header + packed tokens)."""
    ident = tokens.identity
    if ident is None:
        raise WetokError("a .wtok file needs the model identity (architecture hash)")
    n, h, w, g = tokens.tokens.shape
    if max(h, w, g) > 0xFFFF or tokens.downsample > 0xFFFF:
        raise WetokError(f"token grid {h}x{w}x{g} too large for the .wtok format")
    _check_range(tokens.tokens, tokens.bits_per_group, "tokens")
    preset = _short(ident.preset, 40)
    weights_file = _short(ident.weights_file, WTOK_MAX_HEADER - _FIXED.size - 2 - len(preset))
    box = tokens.crop
    if box is None or tokens.original_size is None:  # set by TokenSet, unless changed afterwards
        raise WetokError("token set without its crop box or original size: cannot be written")
    try:
        arch = bytes.fromhex(ident.architecture)
    except ValueError:
        raise WetokError(f"architecture hash must be 16 hex digits, got {ident.architecture!r}") from None
    header_size = _FIXED.size + 2 + len(preset) + len(weights_file)
    fixed = _FIXED.pack(
        WTOK_MAGIC, WTOK_VERSION, RESIZE_CODES[tokens.resize], header_size, n, h, w, g, tokens.bits_per_group,
        WEIGHTS_CODES.get(ident.weights, 0), tokens.downsample, tokens.size, *tokens.original_size,
        box.top, box.left, box.height, box.width, 0, arch,
    )
    header = fixed + bytes([len(preset)]) + preset + bytes([len(weights_file)]) + weights_file
    blob = bytearray(header + pack_tokens(tokens.tokens, tokens.bits_per_group))
    struct.pack_into("<I", blob, 48, zlib.crc32(blob) & 0xFFFFFFFF)
    return bytes(blob)


def read_wtok_bytes(blob: bytes, source: str) -> TokenSet:
    """Parse a `.wtok` file's bytes; one-line `WetokError` naming `source` on any defect."""
    if len(blob) < 4 or blob[:4] != WTOK_MAGIC:
        raise WetokError(f"{source}: not a .wtok token file (bad magic)")
    if len(blob) < _FIXED.size + 2:
        raise WetokError(f"{source}: truncated .wtok file ({len(blob)} bytes, header incomplete)")
    (_, version, resize, header_size, n, h, w, g, b, weights, f, size, oh, ow, top, left, ch, cw, crc, arch) = (
        _FIXED.unpack_from(blob)
    )
    if version > WTOK_VERSION:
        raise WetokError(f"{source}: .wtok format version {version} is newer than this wetok reads ({WTOK_VERSION})")
    if version < 1 or header_size > WTOK_MAX_HEADER or header_size < _FIXED.size + 2:
        raise WetokError(f"{source}: corrupt .wtok header (version {version}, header size {header_size})")
    check = bytearray(blob)
    struct.pack_into("<I", check, 48, 0)
    per_image = packed_size((h, w), g, b) if b else 0
    expected = header_size + n * per_image
    if len(blob) < expected:
        raise WetokError(f"{source}: truncated .wtok file ({len(blob)} bytes, expected {expected})")
    if len(blob) > expected:
        raise WetokError(f"{source}: corrupt .wtok file ({len(blob) - expected} unexpected trailing bytes)")
    if zlib.crc32(check) & 0xFFFFFFFF != crc:
        raise WetokError(f"{source}: corrupt .wtok file (checksum mismatch)")
    if not (n and h and w and g and 1 <= b <= 24 and f) or resize > 2 or weights > 2:
        raise WetokError(f"{source}: corrupt .wtok header (impossible values)")
    if n * h * w * g > MAX_TOKENS:
        raise WetokError(f"{source}: {n * h * w * g} tokens, more than one token file may hold ({MAX_TOKENS})")
    pos = _FIXED.size
    plen = blob[pos]
    if pos + 1 + plen >= header_size:
        raise WetokError(f"{source}: corrupt .wtok header (string lengths do not add up)")
    preset = blob[pos + 1 : pos + 1 + plen].decode("ascii", errors="replace") or None
    pos += 1 + plen
    wlen = blob[pos]
    weights_file = blob[pos + 1 : pos + 1 + wlen].decode("utf-8", errors="replace") or None
    if pos + 1 + wlen != header_size:
        raise WetokError(f"{source}: corrupt .wtok header (string lengths do not add up)")
    if top + ch > h * f or left + cw > w * f or not ch or not cw:
        raise WetokError(f"{source}: corrupt .wtok header (crop box outside the {h * f}x{w * f} image)")
    tokens = unpack_tokens(blob[header_size:], n, (h, w), g, b, source)
    modes = {v: k for k, v in RESIZE_CODES.items()}
    kinds = {v: k for k, v in WEIGHTS_CODES.items()}
    return TokenSet(
        tokens=tokens,
        bits_per_group=b,
        downsample=f,
        identity=ModelIdentity(arch.hex(), preset, weights_file, kinds[weights]),
        crop=CropBox(top, left, ch, cw),
        original_size=(oh, ow),
        resize=modes[resize],  # type: ignore[arg-type]
        size=size,
    )


# ---- JSON (the original tool's layout) --------------------------------------------------------
def _original_dtype(flat: np.ndarray) -> np.dtype:
    """The dtype the original tool picks: uint8 below 256, uint16 below 65536, else int64."""
    peak = int(flat.max()) if flat.size else 0
    return np.dtype(np.uint8 if peak < 256 else np.uint16 if peak < 65536 else np.int64)


def json_document(tokens: TokenSet) -> dict[str, Any]:
    """The JSON document for a one-image `TokenSet` (original keys first, wetok's extras after).
    "config" and "ckpt" are the model's as the user named them (`ModelIdentity.config`/`ckpt`;
    a preset's name for a preset)."""
    if tokens.num_images != 1:
        raise WetokError(f"a JSON token file holds one image, got {tokens.num_images} (use .wtok for several)")
    _check_range(tokens.tokens, tokens.bits_per_group, "tokens")
    flat = tokens.tokens.detach().cpu().numpy().reshape(-1)
    arr = flat.astype(_original_dtype(flat))
    h, w = tokens.grid
    f = tokens.downsample
    box = tokens.crop
    if box is None or tokens.original_size is None:  # set by TokenSet, unless changed afterwards
        raise WetokError("token set without its crop box or original size: cannot be written")
    ident = tokens.identity
    doc: dict[str, Any] = {
        "wetok": {"data": base64.b64encode(arr.tobytes()).decode("ascii"), "dtype": str(arr.dtype), "shape": [int(arr.size)]},
        "config": (ident.config or ident.preset) if ident else None,
        "ckpt": ident.ckpt if ident else None,
        "image_size": h * f if h == w else [h * f, w * f],
        "token_grid": [h, w],
        "groups": tokens.groups,
        "bits_per_group": tokens.bits_per_group,
        "downsample": f,
        "original_size": list(tokens.original_size),
        "crop_box": [box.top, box.left, box.height, box.width],
        "resize": tokens.resize,
        "size": tokens.size,
    }
    if ident is not None:
        doc.update(architecture=ident.architecture, preset=ident.preset, weights_file=ident.weights_file, weights=ident.weights)
    return doc


def _int(value: Any, name: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WetokError(f"{source}: {name!r} must be a non-negative integer, got {value!r}")
    return value


def _int_list(value: Any, length: int, name: str, source: str) -> list[int]:
    if not isinstance(value, list) or len(value) != length:
        raise WetokError(f"{source}: {name!r} must be a list of {length} integers, got {value!r}")
    return [_int(v, name, source) for v in value]


def read_json_text(text: str, source: str, *, downsample: int | None = None, groups: int | None = None) -> TokenSet:
    """Parse a JSON token file. Files without wetok's extra keys (the original's) need the
    decoding model's `downsample` and `groups` to know the grid: pass them, or get a clear error."""
    doc = _json_document(text, source)
    flat = _json_tokens(doc["wetok"], source)
    hint = {key: doc[key] for key in ("config", "ckpt") if isinstance(doc.get(key), str) and doc[key]}
    f = _int(doc["downsample"], "downsample", source) if "downsample" in doc else downsample
    g = _int(doc["groups"], "groups", source) if "groups" in doc else groups
    if f is None or g is None:
        raise GridUnknownError(f"{source}: the file does not say its grid; give the model (--ckpt/--config/--preset)", hint)
    if f == 0 or g == 0:
        raise WetokError(f"{source}: 'downsample' and 'groups' must be positive")
    h, w = _json_grid(doc, flat.numel(), f, g, source)
    b = _int(doc["bits_per_group"], "bits_per_group", source) if "bits_per_group" in doc else None
    if b is not None:
        if not 1 <= b <= 24:
            raise WetokError(f"{source}: 'bits_per_group' must be 1..24, got {b}")
        _check_range(flat, b, source)
    crop = CropBox(*_int_list(doc["crop_box"], 4, "crop_box", source)) if "crop_box" in doc else None
    if crop is not None and (crop.top + crop.height > h * f or crop.left + crop.width > w * f or not crop.height or not crop.width):
        raise WetokError(f"{source}: crop_box {doc['crop_box']} lies outside the {h * f}x{w * f} image")
    original = tuple(_int_list(doc["original_size"], 2, "original_size", source)) if "original_size" in doc else None
    text_entries = {k: v for k, v in doc.items() if isinstance(v, str)}  # optional string entries, ignored when not strings
    identity = None
    if "architecture" in text_entries:
        identity = ModelIdentity(text_entries["architecture"], text_entries.get("preset"), text_entries.get("weights_file"),
                                 text_entries.get("weights", "ema"))
    resize = text_entries.get("resize", "none")
    size = doc.get("size")
    return TokenSet(
        tokens=flat.view(1, h, w, g),
        bits_per_group=b if b is not None else -1,
        downsample=f,
        identity=identity,
        crop=crop,
        original_size=original,  # type: ignore[arg-type]
        resize=resize if resize in RESIZE_CODES else "none",  # type: ignore[arg-type]
        size=size if isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 65536 else 0,
        model_hint=hint,
    )


def _json_document(text: str, source: str) -> dict[str, Any]:
    """The top-level object of a JSON token file, with its required keys checked."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WetokError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}; truncated?)") from None
    except RecursionError:
        raise WetokError(f"{source}: not a token file (JSON nested too deep)") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise WetokError(f"{source}: not a token file ({str(exc).split(':')[0]})") from None
    if not isinstance(doc, dict):
        raise WetokError(f"{source}: not a token file (top level is not an object)")
    missing = [k for k in ("wetok", "image_size") if k not in doc]
    payload = doc.get("wetok")
    if isinstance(payload, dict):
        missing += [f"wetok.{k}" for k in ("data", "dtype", "shape") if k not in payload]
    elif "wetok" in doc:
        raise WetokError(f"{source}: 'wetok' must be an object with data, dtype and shape")
    if missing:
        raise WetokError(f"{source}: token file is missing {', '.join(repr(m) for m in missing)}")
    return doc


def _json_tokens(payload: dict[str, Any], source: str) -> torch.Tensor:
    """The flat int64 tokens of the "wetok" entry: base64 `data` of `dtype`, `shape` checked against its size."""
    dtype_name = payload["dtype"]
    if dtype_name not in ("uint8", "uint16", "int16", "int32", "uint32", "int64"):
        raise WetokError(f"{source}: token dtype {dtype_name!r} is not an integer type the format uses (uint8, uint16, int64)")
    shape = payload["shape"]
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise WetokError(f"{source}: 'wetok.shape' must be a list of non-negative integers, got {_shown(shape)}")
    if not isinstance(payload["data"], str):
        raise WetokError(f"{source}: 'wetok.data' must be a base64 string")
    try:
        raw = base64.b64decode(payload["data"], validate=True)
    except (binascii.Error, ValueError):
        raise WetokError(f"{source}: 'wetok.data' is not valid base64 (corrupt or truncated)") from None
    dtype = np.dtype(dtype_name)
    count = math.prod(shape)
    if count > MAX_TOKENS:
        raise WetokError(f"{source}: 'wetok.shape' {_shown(shape)} holds {count} tokens, more than one token file may hold ({MAX_TOKENS})")
    if len(raw) != count * dtype.itemsize:
        raise WetokError(
            f"{source}: token data has {len(raw)} bytes, but shape {shape} of {dtype_name} needs {count * dtype.itemsize} (corrupt or truncated)"
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=dtype).astype(np.int64))


def _json_grid(doc: dict[str, Any], count: int, f: int, g: int, source: str) -> tuple[int, int]:
    """(h, w): "token_grid" when given, else "image_size" / f; it must hold the `count` tokens in `g` groups."""
    if "token_grid" in doc:
        h, w = _int_list(doc["token_grid"], 2, "token_grid", source)
    else:
        size = doc["image_size"]
        hs, ws = (size, size) if not isinstance(size, list) else tuple(_int_list(size, 2, "image_size", source))
        h, w = _int(hs, "image_size", source) // f, _int(ws, "image_size", source) // f
    if h * w * g != count or h == 0 or w == 0:
        raise WetokError(
            f"{source}: {count} tokens do not fill a {h}x{w} grid of {g} groups ({h * w * g}): "
            "wrong shape, or made by another model"
        )
    return h, w


# ---- files ------------------------------------------------------------------------------------
def _check_range(tokens: torch.Tensor, bits_per_group: int, source: str) -> None:
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= 2**bits_per_group):
        raise WetokError(
            f"{source}: token values {int(tokens.min())}..{int(tokens.max())} are out of range for "
            f"{bits_per_group}-bit groups (0..{2**bits_per_group - 1})"
        )


def finish_json_tokens(tokens: TokenSet, config: TokenizerConfig, source: str) -> TokenSet:
    """Fill in what an original JSON file leaves out (bits per group) from the decoding model,
    and check the values fit it."""
    if tokens.bits_per_group < 0:
        tokens = replace(tokens, bits_per_group=config.bits_per_group)
    check_compatible(tokens, config, source)
    _check_range(tokens.tokens, tokens.bits_per_group, source)
    return tokens


def read_tokens(path: str | Path, *, downsample: int | None = None, groups: int | None = None) -> TokenSet:
    """Read a `.wtok` or JSON token file (chosen by content: `.wtok` files start with "WTOK").

    `downsample`/`groups` are needed only for original JSON files, which do not record them.
    Refused with one line naming the file, before reading it: a missing file, a directory, a
    file that is not regular (a device such as /dev/zero, a FIFO, a socket), a `.wtok` file over
    `WTOK_MAX_BYTES` and a JSON file over `JSON_MAX_BYTES`.
    """
    path = Path(path)
    blob = _read_token_file(path)
    if not blob:
        raise WetokError(f"{path}: empty file, not a token file")
    if blob[:4] == WTOK_MAGIC:
        return read_wtok_bytes(blob, str(path))
    if path.suffix.lower() == WTOK_SUFFIX:
        raise WetokError(f"{path}: not a .wtok token file (bad magic)")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise WetokError(f"{path}: not a token file (neither .wtok nor UTF-8 JSON)") from None
    return read_json_text(text, str(path), downsample=downsample, groups=groups)


def _read_token_file(path: Path) -> bytes:
    """The bytes of a token file, at most `WTOK_MAX_BYTES` (`JSON_MAX_BYTES` unless it starts with
    the .wtok magic); a one-line `WetokError` for what is not a regular file or is larger."""
    return read_regular_file(path, "a token file", WetokError,
                             lambda head: WTOK_MAX_BYTES if head == WTOK_MAGIC else JSON_MAX_BYTES)


# ---- the model a token file names -------------------------------------------------------------
def weights_name_problem(name: str) -> str | None:
    """Why a weights file name read from a token file (a `.wtok` header's, a JSON file's
    "weights_file") may not be looked up, or None: it must be a plain base name, without a path
    separator (`/` or `\\`), a NUL character, or being `.` or `..`."""
    if not name:
        return "an empty name"
    if "\0" in name:
        return "it holds a NUL character"
    if "/" in name or "\\" in name:
        return "it holds a path separator; a token file records a base name only"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    return None


def model_entry_problem(entry: str) -> str | None:
    """Why a JSON token file's "ckpt"/"config" entry may not be followed, or None: it must be a
    relative path without `..` components (or NUL characters), naming a file (not `.`), so that
    it can only lie beside the token file or under the working directory."""
    if "\0" in entry:
        return "it holds a NUL character"
    if len(entry) > 4096:
        return "it is too long for a path"
    unified = entry.replace("\\", "/")
    windows = PureWindowsPath(entry)
    if unified.startswith("/") or windows.drive or windows.root:
        return "an absolute path; a token file may name only a path relative to it"
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if ".." in parts:
        return "it climbs out of its folder with '..'"
    if not parts:
        return "it names no file"
    return None


def find_beside(entry: str, token_file: Path) -> Path | None:
    """Where a followable entry (`weights_name_problem` / `model_entry_problem` gave None) lies:
    beside `token_file` first, then under the working directory; None when in neither."""
    for candidate in (token_file.parent / entry, Path(entry)):
        try:
            if candidate.exists():
                return candidate
        except (OSError, ValueError):  # a name too long for the file system
            continue
    return None


def _shown(value: Any) -> str:
    """A short repr for error messages (a forged file may hold megabytes in one value)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def write_tokens(path: str | Path, tokens: TokenSet) -> Path:
    """Write `tokens` as `.wtok` (by default) or JSON (a `.json` suffix), atomically: a temporary
    file beside `path`, renamed over it when complete."""
    path = Path(path)
    if path.suffix.lower() == JSON_SUFFIX:
        text = json.dumps(json_document(tokens), indent=4)
        atomic_write(path, lambda p: p.write_text(text))
    else:
        blob = wtok_bytes(tokens)
        atomic_write(path, lambda p: p.write_bytes(blob))
    return path


__all__ = [
    "GridUnknownError",
    "TokenSet",
    "check_compatible",
    "find_beside",
    "finish_json_tokens",
    "model_entry_problem",
    "pack_tokens",
    "packed_size",
    "read_json_text",
    "read_tokens",
    "read_wtok_bytes",
    "unpack_tokens",
    "weights_name_problem",
    "write_tokens",
    "wtok_bytes",
]
