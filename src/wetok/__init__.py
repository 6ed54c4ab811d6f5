"""wetok: the WeTok discrete image tokenizer (arXiv 2508.05599).

Public API:
    wetok.load(source=None, *, config=None, weights="ema", device=None, precision="fp32") -> Tokenizer
    wetok.Execution(precision, channels_last, compile)  how a tokenizer runs (fp32 exact, bf16/fp16 fast)
    wetok.Tokenizer(config)        encoder + group-wise LFQ + (generative) decoder
    wetok.TokenizerConfig          frozen architecture description; wetok.PRESETS the released ones
    wetok.GroupLFQ(channels, groups)  the quantizer on its own
    wetok.Codec(model, size=256, tile=TileSpec(), seed=0)  images/files <-> token sets
    wetok.read_tokens(path), wetok.write_tokens(path, tokens), wetok.TokenSet  token files
"""

from .codec import Codec
from .config import PRESETS, HubWeights, ModelIdentity, TokenizerConfig, get_preset
from .errors import CheckpointError, ConfigError, UnsafeCheckpointError, WeightsNotFoundError, WetokError
from .execution import PRECISIONS, Execution
from .images import CropBox, crop, pad_to_multiple
from .nn import GroupLFQ, QuantizerOutput
from .tiling import TileSpec
from .tokenizer import Tokenizer, TokenizerOutput, seeded_noise
from .tokens import TokenSet, read_tokens, write_tokens
from .weights import default_model_available, load

__version__ = "0.1.0"

__all__ = [
    "PRECISIONS",
    "PRESETS",
    "CheckpointError",
    "Codec",
    "Execution",
    "ConfigError",
    "CropBox",
    "GroupLFQ",
    "HubWeights",
    "ModelIdentity",
    "QuantizerOutput",
    "TileSpec",
    "TokenSet",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerOutput",
    "UnsafeCheckpointError",
    "WeightsNotFoundError",
    "WetokError",
    "crop",
    "default_model_available",
    "get_preset",
    "load",
    "pad_to_multiple",
    "read_tokens",
    "seeded_noise",
    "write_tokens",
]
