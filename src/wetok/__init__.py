"""wetok: the WeTok discrete image tokenizer (arXiv 2508.05599).

Public API:
    wetok.load(source, *, config=None, weights="ema", device=None) -> Tokenizer
    wetok.Tokenizer(config)        encoder + group-wise LFQ + (generative) decoder
    wetok.TokenizerConfig          frozen architecture description
    wetok.PRESETS                  the released models by name
    wetok.GroupLFQ(channels, groups)  the quantizer on its own
"""

from .config import PRESETS, HubWeights, TokenizerConfig, get_preset
from .errors import CheckpointError, ConfigError, UnsafeCheckpointError, WeightsNotFoundError, WetokError
from .loader import default_model_available, load
from .nn import GroupLFQ, QuantizerOutput
from .tokenizer import CropBox, Tokenizer, TokenizerOutput, crop, pad_to_multiple

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConfigError",
    "CropBox",
    "GroupLFQ",
    "HubWeights",
    "QuantizerOutput",
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
]
