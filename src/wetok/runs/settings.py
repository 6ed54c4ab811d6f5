"""Run settings: YAML read into frozen dataclasses, unknown keys and wrong types one-line errors.

A trainer's settings are a frozen dataclass of sections, each a frozen dataclass of fields
annotated with int, float, str, bool, `X | None`, `tuple[X, ...]`, fixed tuples or another such
dataclass. `settings_from_dict` checks and converts plain YAML values to them (an unknown key or
a wrong type names the key: `optim.lr: expected a number, got 'fast'`); the dataclasses'
`__post_init__` checks how the values fit together. `--set section.key=value` overrides a key
after the file is read (`parse_overrides`: the value is parsed as YAML).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..config import read_yaml_config
from ..errors import ConfigError

T = TypeVar("T")


def settings_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """`cls` built from nested mappings (what YAML gives); unknown sections/keys and values of
    the wrong type are `ConfigError`s naming the key."""
    return _build(cls, data, "")


def settings_to_dict(obj: Any) -> dict[str, Any]:
    """A settings dataclass as a plain nested dict (tuples as lists), readable back by `settings_from_dict`."""
    return _plain(dataclasses.asdict(obj))


def settings_to_yaml(obj: Any) -> str:
    """A settings dataclass as YAML text (what RUN_DIR/config.yaml holds); `load_settings` reads it."""
    import yaml

    return yaml.safe_dump(settings_to_dict(obj), sort_keys=False)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["optim.lr=2e-4", "train.stage=2"]` -> nested dict; values are parsed as YAML."""
    import yaml

    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects section.key=value, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML") from None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def load_settings(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read a YAML settings file (`wetok.config.read_yaml_config`; the defaults when `path` is
    None), apply the `--set` overrides and build `cls`; every problem is one `ConfigError`, naming
    the file when there is one."""
    doc: Any = {}
    if path is not None:
        path = Path(path)
        doc = read_yaml_config(path) or {}
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{path}: a training config is a mapping of sections")
    merged = _merge(dict(doc), parse_overrides(overrides or []))
    try:
        return settings_from_dict(cls, merged)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a YAML value to the field's annotated type (int, float, str, bool, tuples, optional)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of keys, got {value!r}")
        return _build(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r}")  # a programming error, not user input


def _build(cls: Any, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        place = f"section {prefix!r}" if prefix else "the top level"
        raise ConfigError(f"unknown key(s) in {place}: {', '.join(map(str, unknown))} (known: {', '.join(sorted(fields))})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


class RunSettings:
    """What a trainer's top-level config dataclass inherits: `to_dict`, `to_yaml` and `from_dict`
    (the frozen dataclass itself holds the sections)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), readable back by `from_dict`."""
        return settings_to_dict(self)

    def to_yaml(self) -> str:
        """The config as YAML text (what RUN_DIR/config.yaml holds; `load_settings` reads it)."""
        return settings_to_yaml(self)

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Build from nested mappings; unknown sections/keys and wrong types are `ConfigError`s."""
        return settings_from_dict(cls, data)
