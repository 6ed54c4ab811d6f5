"""Reconstruction evaluation under the released protocol, exact for any number of processes.

    result = wetok.evaluation.evaluate(model, EvalConfig(data="val2017", size=256))
    result.report   # the report dict (as written to report.json)
    result.grid     # PIL image: originals, reconstructions, error heat maps (process 0)
"""

from .config import METRICS, EvalConfig, parse_metrics
from .networks import Networks, load_networks
from .report import format_table
from .run import EvalResult, PeerError, evaluate

__all__ = ["METRICS", "EvalConfig", "EvalResult", "Networks", "PeerError", "evaluate", "format_table", "load_networks",
           "parse_metrics"]
