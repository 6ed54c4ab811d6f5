"""Training class-conditional generators on token shards (`wetok train-ar`)."""

from .config import ARTrainConfig, load_ar_train_config
from .loop import export_latest, train_ar

__all__ = ["ARTrainConfig", "export_latest", "load_ar_train_config", "train_ar"]
