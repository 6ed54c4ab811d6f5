"""Every way weights come in and go out: `wetok.load`, released Lightning `.ckpt` files, saved
model directories, the Hugging Face cache, the bundled default model, and the weight files of
third-party networks (LPIPS, InceptionV3) in torch hub's cache.

Released checkpoints are dicts with a `state_dict` holding the raw weights under `encoder.*` /
`decoder.*`, the EMA copies as `model_ema.<name without dots>`, and training-only `loss.*`
entries (discriminator, perceptual network), which inference ignores.

wetok's own format is a directory with `config.json` (`{"format": "wetok", "version": 1,
"config": TokenizerConfig fields}`) and `model.safetensors`. It is written here rather than with
huggingface_hub's `ModelHubMixin.save_pretrained`, which cannot keep that layout's guarantees: it
deletes an existing `config.json` before writing the new one (an interrupted save leaves a
directory without its config, where ours replaces each file atomically) and adds a generated
`README.md`; its `from_pretrained` would still need our format, version and shape checks.

Every torch file is read with `torch.load(..., weights_only=True)`: a file that would need
arbitrary unpickling (which can run code) is refused unless the caller passes `trust_pickle=True`.
Every model is loaded strictly (`load_strict`): a missing, unexpected or mis-shaped key, or a
tensor that is not real floating-point data (integers, meta tensors, expanded views stored in a
few bytes), is one `CheckpointError`. A file is believed only after it is checked: the
architecture (given, from `config.json`, or read off the shapes; at most
`config.MAX_PARAMETERS` parameters) is built on the meta device, the EMA or raw weights are picked
and compared with it key by key, and only then does the model take the file's tensors, so a forged
or mismatched file costs no memory beyond its own. A loaded `Tokenizer` carries its `identity`
(what token files record).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

import torch
from torch import nn

from .config import PRESETS, ModelIdentity, TokenizerConfig, get_preset, read_config_text
from .errors import (
    CheckpointError,
    ConfigError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
    WetokError,
)
from .execution import Execution
from .files import atomic_write, require_regular_file
from .tokenizer import Tokenizer

FORMAT_NAME = "wetok"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EMA_PREFIX = "model_ema."
MODEL_PREFIXES = ("encoder.", "decoder.")
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
DEFAULT_MODEL_NAME = "default_model"
"""The weights name token files record for the bundled default model."""

Weights = Literal["ema", "raw"]
ModuleT = TypeVar("ModuleT", bound=nn.Module)


# ---- reading torch files safely ---------------------------------------------------------------
def read_torch_file(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """`torch.load` a file on the CPU with `weights_only=True`, turning every failure into a
    one-line `CheckpointError` (missing, empty, truncated, not a checkpoint) or
    `UnsafeCheckpointError` (needs arbitrary unpickling; pass `trust_pickle=True` only for files
    you trust completely)."""
    path = Path(path)
    size = require_regular_file(path, "a checkpoint file", CheckpointError).st_size
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if head != ZIP_MAGIC and head[:1] != bytes([PICKLE_PROTO]):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unrecognised file header)")
    if head == ZIP_MAGIC:
        _check_archive_sizes(path, size)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises many types here; classify them below
        message = str(exc)
        if "Weights only load failed" in message:
            detail = next(
                (line.strip() for line in message.splitlines() if "Unsupported global" in line or "GLOBAL" in line), ""
            )
            detail = f" ({detail.rstrip('.')})" if detail else ""
            raise UnsafeCheckpointError(
                f"{path}: refused: loading this file needs arbitrary unpickling, which can run code{detail}; "
                "only if you trust its origin, pass trust_pickle=True (CLI: --trust-pickle)"
            ) from None
        if isinstance(exc, (EOFError, RuntimeError)) and (
            isinstance(exc, EOFError) or "zip archive" in message or "central directory" in message
        ):
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({_first_line(message) or 'unexpected end of file'})") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {_first_line(message)})") from None


def _check_archive_sizes(path: Path, size: int) -> None:
    """Refuse a zip checkpoint whose entries claim far more data than the file holds (a
    decompression bomb: `torch.save` stores entries uncompressed, so a real checkpoint's entries
    add up to less than its size). An archive that `zipfile` cannot read is left to `torch.load`,
    which reports it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return
    if declared > 4 * size + (1 << 20):
        raise CheckpointError(
            f"{path}: refused: its entries claim {declared} bytes uncompressed from a {size}-byte file (a decompression bomb?)"
        )


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line[:160]


def state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The flat `name -> tensor` mapping of a loaded torch file: a Lightning checkpoint's
    `state_dict`, or the mapping itself. Non-tensor entries are dropped."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: not a model checkpoint (no state dict of tensors)")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `name -> tensor` mapping in a torch weight file, read safely on the CPU."""
    return state_dict_of(read_torch_file(path), str(path))


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    ignore_extra: bool = False,
    explain: Callable[[], str] | None = None,
) -> None:
    """Load `state` into `module`, every parameter and buffer with its shape; otherwise raise one
    `CheckpointError` naming a few mis-shaped, missing and unexpected keys (`explain()` appends a
    sentence), or the first tensor that is not real data of the right kind (`tensor_problem`).
    BatchNorm's `num_batches_tracked` counters may be absent. With `ignore_extra`, entries the
    module does not have are not an error.

    A module on the meta device is checked without allocating anything, then takes the file's
    tensors as they are (`assign`; converted to the module's floating dtype, and copied only where
    a tensor shares its storage with another), so memory stays that of the file."""
    expected = module.state_dict()
    on_meta = any(t.is_meta for t in expected.values())
    counters = {k: (torch.zeros((), dtype=v.dtype) if v.is_meta else v) for k, v in expected.items() if k.endswith("num_batches_tracked")}
    state = {**counters, **state}
    missing = [k for k in expected if k not in state]
    unexpected = [] if ignore_extra else [k for k in state if k not in expected]
    misshaped = [
        f"{k} {_shape_of(state[k])} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and _shape_of(state[k]) != tuple(expected[k].shape)
    ]
    if missing or unexpected or misshaped:
        problems = []
        if misshaped:
            problems.append(f"{len(misshaped)} mis-shaped ({_few(misshaped, 2)})")
        if missing:
            problems.append(f"{len(missing)} missing ({_few(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
        what = "the model" if isinstance(module, Tokenizer) else type(module).__name__
        tail = f". {explain()}" if explain is not None else ""
        raise CheckpointError(f"{source}: weights do not fit {what}: {'; '.join(problems)}{tail}")
    for key, want in expected.items():
        problem = tensor_problem(state[key], want.dtype)
        if problem:
            raise CheckpointError(f"{source}: {key} {problem}: not a usable weights file")
    if not on_meta:
        module.load_state_dict({k: state[k] for k in expected}, strict=True)
        return
    owned: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, want in expected.items():
        tensor = state[key].detach().to(dtype=want.dtype).contiguous()
        if tensor.data_ptr() in seen or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()  # a view of a larger storage, or the same data as another key: its own copy
        seen.add(tensor.data_ptr())
        owned[key] = tensor
    module.load_state_dict(owned, strict=True, assign=True)


def _shape_of(value: object) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def tensor_problem(tensor: object, dtype: torch.dtype) -> str | None:
    """Why `tensor` cannot be the weights of a parameter or buffer of `dtype` (None when it can):
    it must be a dense CPU tensor with real data (not on the meta device, not stored in fewer
    bytes than its shape needs, as an expanded or forged view is), of a real floating type for a
    floating `dtype` (any precision: it is converted) and of exactly `dtype` otherwise."""
    if not isinstance(tensor, torch.Tensor):
        return f"is a {type(tensor).__name__}, not a tensor"
    if tensor.is_meta or tensor.device.type != "cpu":
        return f"holds no data (a tensor on the {tensor.device.type} device)"
    if tensor.layout != torch.strided or tensor.is_quantized:
        return f"is not a dense tensor ({tensor.layout}{', quantized' if tensor.is_quantized else ''})"
    if dtype.is_floating_point:
        if not tensor.dtype.is_floating_point:
            return f"is {str(tensor.dtype).removeprefix('torch.')}, not floating point"
    elif tensor.dtype != dtype:
        return f"is {str(tensor.dtype).removeprefix('torch.')}, expected {str(dtype).removeprefix('torch.')}"
    if tensor.numel():
        extent = tensor.storage_offset() + sum((n - 1) * st for n, st in zip(tensor.shape, tensor.stride())) + 1
        stored = tensor.untyped_storage().nbytes() // tensor.element_size()
        if tensor.numel() > stored or extent > stored or any(st < 0 for st in tensor.stride()):
            return f"{tuple(tensor.shape)} is stored in {stored} values (an expanded or forged view)"
    return None


# ---- released Lightning checkpoints -----------------------------------------------------------
def extract_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded tokenizer checkpoint; an error when it has no `encoder.*`/`decoder.*`."""
    state = state_dict_of(obj, source)
    if not any(k.startswith(MODEL_PREFIXES) for k in state):
        raise CheckpointError(f"{source}: no encoder.*/decoder.* weights: not a WeTok tokenizer checkpoint")
    return state


def ema_key(name: str) -> str:
    """The released EMA entry for a parameter: `model_ema.` + the name without dots."""
    return EMA_PREFIX + name.replace(".", "")


def select_weights(state: Mapping[str, torch.Tensor], names: list[str], weights: Weights, source: str) -> dict[str, torch.Tensor]:
    """Pick the raw (`encoder.*`/`decoder.*`) or EMA (`model_ema.*`) weights of the named parameters.

    Keys outside the model (`loss.*`, optimizer-side entries) are ignored. Returns the tensors by
    model parameter name; names absent from the file are simply missing from the result.
    """
    if weights == "raw":
        return {n: state[n] for n in names if n in state}
    if weights != "ema":
        raise ConfigError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if not any(k.startswith(EMA_PREFIX) and k not in ("model_ema.decay", "model_ema.num_updates") for k in state):
        raise CheckpointError(f"{source}: the file has no EMA weights (model_ema.*); load it with weights='raw'")
    return {n: state[ema_key(n)] for n in names if ema_key(n) in state}


def infer_config(state: Mapping[str, torch.Tensor], *, bits_per_group: int = 8) -> TokenizerConfig:
    """The architecture that a state dict's `encoder.*`/`decoder.*` shapes imply.

    The number of groups is not visible in the weights: it is taken as C / `bits_per_group`
    (8 bits per group for every released model). Raises `CheckpointError` when the shapes do
    not describe a WeTok encoder/decoder.
    """
    try:
        ch = int(state["encoder.conv_in.weight"].shape[0])
        levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
        n_res = len({k.split(".")[4] for k in state if k.startswith("encoder.down.0.block.")})
        mult = []
        for level in levels:
            width = state[f"encoder.down.{level}.block.{n_res - 1}.conv2.weight"].shape[0]
            mult.append(int(width) // ch)
        latent = int(state["encoder.conv_out.weight"].shape[0])
        generative = int(state["decoder.conv_in.weight"].shape[1]) == 2 * latent
        groups = max(1, latent // bits_per_group) if latent % bits_per_group == 0 else 1
        return TokenizerConfig(
            channels=ch,
            channel_mult=tuple(mult),
            num_res_blocks=n_res,
            latent_channels=latent,
            groups=groups,
            generative=generative,
            in_channels=int(state["encoder.conv_in.weight"].shape[1]),
            out_channels=int(state["decoder.conv_out.weight"].shape[0]),
        )
    except ConfigError as exc:
        raise CheckpointError(f"the weights do not describe a usable WeTok encoder/decoder ({exc})") from None
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise CheckpointError(f"the weights do not describe a WeTok encoder/decoder ({type(exc).__name__}: {exc})") from None


def _describe_file_architecture(state: Mapping[str, torch.Tensor]) -> str:
    try:
        return infer_config(state).describe().split(" = ")[0]
    except CheckpointError:
        return "not a WeTok encoder/decoder"


def load_tokenizer_weights(
    model: Tokenizer, weights: Mapping[str, torch.Tensor], file_state: Mapping[str, torch.Tensor], source: str
) -> None:
    """`load_strict` for a tokenizer: `weights` by parameter name; the file's own `encoder.*` /
    `decoder.*` keys the model lacks count as unexpected, and the error says which architecture
    the file implies."""
    own = model.state_dict()
    extra = {k: v for k, v in file_state.items() if k.startswith(MODEL_PREFIXES) and k not in weights and k not in own}
    load_strict(
        model, {**weights, **extra}, source,
        explain=lambda: f"The file implies {_describe_file_architecture(file_state)}; the model is {model.config.describe()}",
    )


# ---- wetok's own format -----------------------------------------------------------------------
def save_tokenizer(model: Tokenizer, directory: str | Path) -> Path:
    """Write `model` as `config.json` + `model.safetensors` into `directory` (each file atomically).
    A write that fails (a full disk, `ulimit -f`, no permission) is one `WetokError` naming the
    file and the cause; no temporary file is left."""
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": model.config.to_dict()}
    return write_model_files(directory, model.state_dict(), meta)


def write_model_files(directory: str | Path, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write a saved-model directory: `state` (name -> tensor) as `model.safetensors`, then `meta`
    as `config.json`, each atomically (a directory is complete once its config is there). A
    failed write is one `WetokError` naming the file and the cause."""
    from safetensors.torch import save

    directory = Path(directory)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    target = directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        data = save(tensors, metadata={"format": str(meta["format"])})  # bytes: a failed write is an OSError with its cause
        target = directory / WEIGHTS_FILE
        atomic_write(target, lambda p: p.write_bytes(data))
        target = directory / CONFIG_FILE
        atomic_write(target, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    except OSError as exc:
        raise WetokError(f"{target}: cannot write the model: {exc.strerror or exc}") from None
    return directory


def read_saved_config(directory: str | Path) -> TokenizerConfig:
    """The `TokenizerConfig` of a directory written by `Tokenizer.save`. A config.json that is
    missing, not a regular file, over `MAX_CONFIG_BYTES`, not JSON (or nested absurdly deep), not
    wetok's layout, or with a value of the wrong type is one `CheckpointError` naming the file
    and the key."""
    meta = read_model_meta(directory, FORMAT_NAME, FORMAT_VERSION)
    path = Path(directory) / CONFIG_FILE
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: 'config' must be an object of TokenizerConfig fields, got {_shown(meta['config'])}")
    try:
        return TokenizerConfig.from_dict(meta["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: config: {exc}") from None


def read_model_meta(directory: str | Path, format_name: str, version: int) -> dict[str, Any]:
    """The `config.json` object of a saved-model directory of format `format_name` (at most
    `version`), with a `config` entry; anything else is one `CheckpointError` naming the file."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE}: not a saved wetok model directory")
    text = read_config_text(path, CheckpointError)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable model config ({exc})") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep; an integer of thousands of digits
        raise CheckpointError(f"{path}: unreadable model config ({type(exc).__name__}: {_first_line(str(exc))[:80]})") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name or "config" not in meta:
        found = meta.get("format") if isinstance(meta, dict) else None
        kind = f" (it holds a {_shown(found)} model)" if isinstance(found, str) else ""
        raise CheckpointError(f"{path}: not a {format_name} model config{kind}")
    written = meta.get("version", version)
    if isinstance(written, bool) or not isinstance(written, int) or written < 1:
        raise CheckpointError(f"{path}: 'version' must be a positive integer, got {_shown(written)}")
    if written > version:
        raise CheckpointError(f"{path}: written by a newer wetok (format version {written})")
    return meta


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_saved_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a directory written by `Tokenizer.save` (safetensors: no code can run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {WEIGHTS_FILE}" + (" (not a regular file)" if path.exists() else ""))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt weights ({_first_line(str(exc))})") from None


# ---- the Hugging Face cache -------------------------------------------------------------------
def hub_weights_path(config: TokenizerConfig) -> Path:
    """Local path of a preset's released checkpoint.

    The standard cache (`HF_HOME`, default `~/.cache/huggingface/hub`) is read first, with no
    network access (released files never change); otherwise `huggingface_hub.hf_hub_download`
    fetches the file. With `HF_HUB_OFFLINE=1` only the cache is read; when the Hub's host name does
    not resolve (a machine without network) the download is not attempted, instead of waiting
    through huggingface_hub's retries (about 25 s). Raises `WeightsNotFoundError` with the command
    that fetches the file when neither works.
    """
    if config.hub is None:
        raise WeightsNotFoundError(f"configuration {config.name or config.describe()} names no released weights")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    hub = config.hub
    cached = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision)
    if isinstance(cached, str):
        return Path(cached)
    try:
        unreachable = _unresolvable_endpoint()
        if unreachable:
            raise ConnectionError(unreachable)
        return Path(hf_hub_download(repo_id=hub.repo_id, filename=hub.filename, revision=hub.revision))
    except Exception as exc:  # offline, not cached, network or authorisation errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsNotFoundError(
            f"released weights for {config.name or 'this model'} ({hub.repo_id}/{hub.filename}) are not in the "
            f"Hugging Face cache and could not be downloaded ({type(exc).__name__}: {reason[:120]}); fetch them with "
            f"`huggingface-cli download {hub.repo_id} {hub.filename}` or pass the .ckpt path"
        ) from None


def _unresolvable_endpoint() -> str | None:
    """Why the Hugging Face endpoint cannot be reached, when its host name does not resolve and no
    proxy is configured (a proxy resolves names itself); None when a download is worth trying."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    except OSError:
        return None
    return None


# ---- third-party weight files (torch hub's cache) ---------------------------------------------
def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder: `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(filename: str, explicit: str | Path | None, *, what: str, option: str) -> Path:
    """The path of a pretrained weight file that wetok cannot download.

    Args:
        filename: the standard file name (e.g. `vgg16-397923af.pth`), looked up in the hub cache.
        explicit: a path given by the user (a file, or a folder holding `filename`); wins when set.
        what: a few words saying what the file is, for the error message.
        option: how to pass an explicit path (e.g. "backbone_weights=... / --weights-dir").

    Raises:
        WeightsNotFoundError: neither the explicit path nor the cache holds the file.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / filename
        if path.is_file():
            return path
        raise WeightsNotFoundError(f"{what}: {path} not found; give the path of {filename} ({option})")
    path = hub_checkpoint_dir() / filename
    if path.is_file():
        return path
    raise WeightsNotFoundError(
        f"{what}: {filename} not found; put it in {hub_checkpoint_dir()}/ (torch hub cache, $TORCH_HOME) or pass its path ({option})"
    )


# ---- load() -----------------------------------------------------------------------------------
def default_model_available() -> bool:
    """True when the package carries its trained default model."""
    return (DEFAULT_MODEL_DIR / CONFIG_FILE).is_file()


def resolve_config(config: TokenizerConfig | str | Path | None) -> TokenizerConfig | None:
    """A `TokenizerConfig` from a config object, a preset name, or a released YAML file."""
    if config is None or isinstance(config, TokenizerConfig):
        return config
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]
    path = Path(config)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        return TokenizerConfig.from_released_yaml(path)
    return get_preset(str(config))  # raises a clear "unknown preset" error


def load(
    source: str | Path | None = None,
    *,
    config: TokenizerConfig | str | Path | None = None,
    weights: Weights = "ema",
    device: str | torch.device | None = None,
    trust_pickle: bool = False,
    precision: str = "fp32",
    channels_last: bool | None = None,
    compile: bool = False,
) -> Tokenizer:
    """Load a WeTok tokenizer, in eval mode, carrying its `identity`.

    Args:
        source: one of
            - None: the default model bundled with the package;
            - a preset name (`wetok.PRESETS`), e.g. "imagenet-d16": the released weights from the
              Hugging Face cache (downloaded when online);
            - a released Lightning `.ckpt` file;
            - a directory written by `Tokenizer.save`.
        config: for a `.ckpt` file: its released YAML file, a preset name or a `TokenizerConfig`.
            Without it the architecture is read off the weights' shapes, with 8 bits per group
            (as in every released model).
        weights: "ema" (default; what the released evaluation and tools use) or "raw" (the
            training weights). Ignored for saved directories, which hold one set.
        device: where to put the model (default CPU).
        trust_pickle: allow files that need arbitrary unpickling. Such files can run code when
            loaded: only for files whose origin you trust.
        precision, channels_last, compile: how the model runs (`Tokenizer.set_execution`,
            `wetok.execution`): "fp32" (default, exact), "bf16" or "fp16", the weights converted
            once after loading.

    Raises:
        CheckpointError / UnsafeCheckpointError / WeightsNotFoundError / ConfigError with a
        one-line message.
    """
    if weights not in ("ema", "raw"):
        raise ConfigError(f"weights must be 'ema' or 'raw', got {weights!r}")
    execution = Execution(precision, channels_last, compile)  # a wrong setting fails before any reading
    model = _load_source(source, config, weights, trust_pickle).to(device or "cpu").eval()
    if execution != model.execution:
        model.set_execution(precision, channels_last=channels_last, compile=compile)
    return model


def _load_source(source: str | Path | None, config: TokenizerConfig | str | Path | None, weights: Weights,
                 trust_pickle: bool) -> Tokenizer:
    """The model `load` describes, on the CPU, float32."""
    if source is None:
        if not default_model_available():
            raise CheckpointError(
                "no default model is bundled with this wetok build yet; pass a preset name "
                f"({', '.join(PRESETS)}), a released .ckpt file or a saved model directory"
            )
        model = _load_saved(DEFAULT_MODEL_DIR)
        model.identity = ModelIdentity(model.config.architecture_hash(), None, DEFAULT_MODEL_NAME, "saved")
        return model
    path = Path(source)
    config_entry = str(config) if isinstance(config, (str, Path)) else None
    try:
        path.exists()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL character
        raise CheckpointError(f"{_shown(str(source))}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if isinstance(source, str) and source in PRESETS and not path.exists():
        cfg = PRESETS[source]
        model = _load_checkpoint(hub_weights_path(cfg), cfg, weights, trust_pickle)
        if cfg.hub is None:
            raise RuntimeError(f"preset {source!r} names no Hugging Face file (a wetok bug)")
        model.identity = ModelIdentity(cfg.architecture_hash(), cfg.name, cfg.hub.filename, weights, config=source)
    elif path.is_dir():
        model = _load_saved(path)
        model.identity = ModelIdentity(model.config.architecture_hash(), None, path.name, "saved", ckpt=str(source), config=config_entry)
    elif path.is_file():
        model = _load_checkpoint(path, resolve_config(config), weights, trust_pickle)
        # no preset name: these weights are the file's, not the preset's released ones
        model.identity = ModelIdentity(model.config.architecture_hash(), None, path.name, weights, ckpt=str(source), config=config_entry)
    elif path.exists():
        require_regular_file(path, "a model file", CheckpointError)  # a device, FIFO or socket: refused by name
    else:
        raise CheckpointError(f"{source}: no such file, directory or preset (presets: {', '.join(PRESETS)})")
    return model


def _load_saved(directory: Path) -> Tokenizer:
    cfg = read_saved_config(directory)
    model = _checked_model(cfg)
    state = read_saved_weights(directory)
    load_tokenizer_weights(model, state, state, str(directory))
    return materialised(model, str(directory))


def _load_checkpoint(path: Path, config: TokenizerConfig | None, weights: Weights, trust_pickle: bool) -> Tokenizer:
    """A released `.ckpt` (or a bare state dict) as a model: the file's tensors are read, the
    architecture (given, or read off the shapes) is built on the meta device, the EMA or raw
    weights are picked and checked against it key by key, shape by shape and dtype by dtype, and
    only then does the model take the file's tensors: a forged or mismatched file is refused
    before any memory beyond its own is allocated."""
    state = extract_state_dict(read_torch_file(path, trust_pickle=trust_pickle), str(path))
    return tokenizer_from_state(state, config, str(path), weights=weights)


def tokenizer_from_state(
    state: Mapping[str, torch.Tensor], config: TokenizerConfig | None, source: str, *, weights: Weights = "raw",
    bits_per_group: int = 8,
) -> Tokenizer:
    """A tokenizer from a released state dict's `encoder.*`/`decoder.*` (weights "raw") or
    `model_ema.*` (weights "ema") tensors, checked on the meta device before it takes them (see
    `_load_checkpoint`); the architecture is `config`, or read off the shapes with
    `bits_per_group` bits per group."""
    if config is None:
        try:
            config = infer_config(state, bits_per_group=bits_per_group)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
    model = _checked_model(config)
    names = list(model.state_dict())
    load_tokenizer_weights(model, select_weights(state, names, weights, source), state, source)
    return materialised(model, source)


def _checked_model(config: TokenizerConfig) -> Tokenizer:
    """`Tokenizer(config)` on the meta device: its keys, shapes and dtypes, no memory."""
    with torch.device("meta"):
        return Tokenizer(config)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 (64 hex digits) of `model`'s state dict, names and bytes in order: the identity of a
    set of weights whatever file or folder they were read from (token shards record their
    tokenizer's, and generator training checks it)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def materialised(model: ModuleT, source: str) -> ModuleT:
    """`model` after `load_strict` assigned its tensors: every parameter and buffer holds data."""
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a programming error (a buffer no weights file holds), not a user's
        raise RuntimeError(f"{source}: {len(left)} tensors left on the meta device after loading ({_few(left)})")
    return model
