"""Reading and writing weights: released Lightning `.ckpt` files and wetok's own directories.

Released checkpoints are dicts with a `state_dict` holding the raw weights under `encoder.*` /
`decoder.*`, the EMA copies as `model_ema.<name without dots>`, and training-only `loss.*`
entries (discriminator, perceptual network), which inference ignores.

wetok's own format is a directory with `config.json` and `model.safetensors`.

Every file is read with `torch.load(..., weights_only=True)`: a file that would need arbitrary
unpickling (which can run code) is refused unless the caller passes `trust_pickle=True`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from .config import TokenizerConfig
from .errors import CheckpointError, ConfigError, UnsafeCheckpointError
from .files import atomic_write, require_file

FORMAT_NAME = "wetok"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EMA_PREFIX = "model_ema."
MODEL_PREFIXES = ("encoder.", "decoder.")
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80

Weights = Literal["ema", "raw"]


# ---- reading torch files safely ---------------------------------------------------------------
def read_torch_file(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """`torch.load` a file on the CPU with `weights_only=True`, turning every failure into a
    one-line `CheckpointError` (missing, empty, truncated, not a checkpoint) or
    `UnsafeCheckpointError` (needs arbitrary unpickling; pass `trust_pickle=True` only for files
    you trust completely)."""
    path = Path(path)
    require_file(path, "a checkpoint file", CheckpointError)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if head != ZIP_MAGIC and head[:1] != bytes([PICKLE_PROTO]):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unrecognised file header)")
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


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line[:160]


# ---- released Lightning checkpoints -----------------------------------------------------------
def extract_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The flat `name -> tensor` mapping of a loaded checkpoint (Lightning `state_dict` or a bare one)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: not a model checkpoint (no state_dict)")
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
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
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
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
    except (KeyError, IndexError, ValueError, ZeroDivisionError, ConfigError) as exc:
        raise CheckpointError(f"the weights do not describe a WeTok encoder/decoder ({type(exc).__name__}: {exc})") from None


def _describe_file_architecture(state: Mapping[str, torch.Tensor]) -> str:
    try:
        return infer_config(state).describe().split(" = ")[0]
    except CheckpointError:
        return "not a WeTok encoder/decoder"


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_and_load(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], file_state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `weights` into `model` strictly; on any missing, unexpected or mis-shaped key raise one
    `CheckpointError` naming a few of them and the architecture the file implies."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    misshaped = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    unexpected += [k for k in file_state if k.startswith(MODEL_PREFIXES) and k not in expected and k not in unexpected]
    if missing or unexpected or misshaped:
        problems = []
        if misshaped:
            problems.append(f"{len(misshaped)} mis-shaped ({_few(misshaped, 2)})")
        if missing:
            problems.append(f"{len(missing)} missing ({_few(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_few(unexpected)})")
        config = getattr(model, "config", None)
        wanted = config.describe() if isinstance(config, TokenizerConfig) else type(model).__name__
        raise CheckpointError(
            f"{source}: weights do not fit the model: {'; '.join(problems)}. "
            f"The file implies {_describe_file_architecture(file_state)}; the model is {wanted}"
        )
    model.load_state_dict({k: weights[k] for k in expected}, strict=True, assign=_on_meta(model))


def _on_meta(model: torch.nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


# ---- wetok's own format -----------------------------------------------------------------------
def save_tokenizer(model: torch.nn.Module, directory: str | Path) -> Path:
    """Write `model` (a `Tokenizer`) as `config.json` + `model.safetensors` into `directory`."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT_NAME}))
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": model.config.to_dict()}
    atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return directory


def read_saved_config(directory: str | Path) -> TokenizerConfig:
    """The `TokenizerConfig` of a directory written by `Tokenizer.save`."""
    path = Path(directory) / CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: no {CONFIG_FILE}: not a saved wetok model directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable model config ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or "config" not in meta:
        raise CheckpointError(f"{path}: not a wetok model config")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer wetok (format version {meta['version']})")
    try:
        return TokenizerConfig.from_dict(meta["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def read_saved_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a directory written by `Tokenizer.save` (safetensors: no code can run)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {WEIGHTS_FILE}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt weights ({_first_line(str(exc))})") from None
