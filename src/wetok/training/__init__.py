"""Training WeTok tokenizers: configuration, state, schedules and the loop (stage 1 and stage 2).

`wetok train` (`wetok.cli.train`) is the entry point; `loop.train(config, ...)` is the same from
Python. The loop runs in one process or under `torchrun` (gloo on CPU, nccl on GPU).
"""

from .config import TrainConfig, load_train_config

__all__ = ["TrainConfig", "load_train_config"]
