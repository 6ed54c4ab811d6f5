"""Building blocks of the WeTok networks: encoder, decoder, group-wise lookup-free quantizer."""

from .decoder import Decoder
from .encoder import Encoder
from .quantizer import GroupLFQ, QuantizerOutput

__all__ = ["Decoder", "Encoder", "GroupLFQ", "QuantizerOutput"]
