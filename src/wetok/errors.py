"""Exceptions a user can cause. Each carries a one-line message fit for a command line."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class WetokError(Exception):
    """Base class of every error wetok raises for bad input (files, shapes, settings)."""


class ConfigError(WetokError, ValueError):
    """An invalid or inconsistent model configuration."""


class CheckpointError(WetokError):
    """A weights file that cannot be read as the requested model: missing, corrupt, wrong keys."""


class UnsafeCheckpointError(CheckpointError):
    """A file whose loading would need arbitrary unpickling (it could run code)."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """Released weights that are neither in the local cache nor downloadable."""
