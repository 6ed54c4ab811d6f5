"""wetok.ar: the class-conditional WeTok generator (LlamaGen-style, factorized sub-token heads).

Public API:
    wetok.ar.load(path, params=None, *, tokenizer=None, device=None) -> Transformer
        a released generation .ckpt (params: its YAML, transformer_config.params, a config or
        a preset name) or a directory written by wetok.ar.save; model.tokenizer is the paired
        tokenizer when the file carries or names one
    wetok.ar.save(model, directory)
    wetok.ar.Transformer(config)     model(tokens (B, N, G), labels (B,)) -> logits (B, N, G, 2**b)
    wetok.ar.TransformerConfig       frozen architecture; wetok.ar.PRESETS: B, L, XL
    wetok.ar.generate(model, labels, *, cfg_scale, temperature, top_k, top_p, seeds or generator)
        -> tokens (B, grid, grid, G), for model.tokenizer.decode

The tokenizer never imports this package.
"""

from .config import PRESETS, TransformerConfig, get_preset, read_released_yaml
from .model import Transformer
from .sampling import SamplingSettings, generate
from .weights import load, save

__all__ = ["PRESETS", "SamplingSettings", "Transformer", "TransformerConfig", "generate", "get_preset", "load",
           "read_released_yaml", "save"]
