"""JSON encoding of snapshots, and the content hash that versions them.

The operator ships a snapshot to proxies as JSON inside a Secret, and ``propylon render`` prints
it, so the encoding must be canonical: sorted keys, no whitespace variance, so that the same
content always yields the same bytes and therefore the same version. Standard library only.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import types
import typing
from typing import Any, TypeVar

from propylon_config import model

T = TypeVar("T")


def to_data(value: Any) -> Any:
    """Turn a model object into JSON-ready data (dicts, lists, strings, numbers)."""
    # Field names cached per class instead of dataclasses.is_dataclass + fields() per object:
    # the version hash of 1,000 Apis x 10 routes (445k values) went from 1.5 s to 0.6 s.
    names = _field_names(type(value))
    if names is not None:
        return {name: to_data(getattr(value, name)) for name in names}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [to_data(item) for item in value]
    return value


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type, in order; None for any other type."""
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        return _FIELD_NAMES.setdefault(cls, names)


def from_data(cls: type[T], data: Any) -> T:
    """Rebuild a model object of type ``cls`` from ``to_data`` output."""
    decoded: T = _decode(cls, data)
    return decoded


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(model))


def _decode(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        (inner,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return _decode(inner, data)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item) for item in data)
        return tuple(_decode(arg, item) for arg, item in zip(args, data, strict=True))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        kwargs = {f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data}
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def dumps(config: model.GatewayConfig, *, indent: int | None = None) -> str:
    """Canonical JSON of a snapshot (sorted keys)."""
    return json.dumps(to_data(config), sort_keys=True, indent=indent, ensure_ascii=False)


def loads(text: str | bytes) -> model.GatewayConfig:
    """Parse a snapshot, refusing one written for a schema this proxy does not know."""
    data = json.loads(text)
    schema_version = data.get("schema_version")
    if schema_version != model.SCHEMA_VERSION:
        raise ValueError(f"snapshot schema_version {schema_version!r} is not {model.SCHEMA_VERSION}")
    return from_data(model.GatewayConfig, data)


def content_version(config: model.GatewayConfig) -> str:
    """The hash of everything in the snapshot except its version field (16 hex digits)."""
    data = to_data(config)
    data.pop("version", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_version(config: model.GatewayConfig) -> model.GatewayConfig:
    """Return ``config`` stamped with its content version."""
    return dataclasses.replace(config, version=content_version(config))
