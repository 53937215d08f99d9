"""Typed, validated configuration dataclasses.

Every component (attack, target, world, run) has a ``Config`` dataclass whose defaults are the
paper's values. Fields are declared with :func:`param`, which records a description and bounds
and, optionally, where the default comes from (``source``, one of :data:`SOURCES`): attacks
without public code mark every field, so no value of ours passes for the paper's.
A preset (``smoke``/``mini``/``paper``) only *scales* a config: it is a mapping of field overrides
stored on the class as ``presets``. Values are checked on construction; a wrong type or an
out-of-range value raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, ClassVar, Mapping

import yaml

from mibench.errors import ConfigError

PRESETS: dict[str, str] = {
    "smoke": "every code path in seconds (tests, CI); numbers are meaningless",
    "mini": "meaningful, separable results on a laptop CPU in minutes (default)",
    "paper": "the paper's resolution, sizes and hyper-parameters (GPU + real data)",
}
DEFAULT_PRESET = "mini"
SOURCES: dict[str, str] = {
    "paper": "stated in the attack's paper",
    "code": "the attack's official code",
    "ours": "mibench's choice (neither the paper nor official code gives it)",
}


def param(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None,
          choices: tuple[Any, ...] | None = None, source: str | None = None) -> Any:
    """Declare a config field with a description, optional bounds and allowed choices, and
    optionally the ``source`` of its default (a key of :data:`SOURCES`)."""
    if source is not None and source not in SOURCES:
        raise ConfigError(f"param source {source!r} is unknown; use one of {sorted(SOURCES)}")
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices,
            "source": source}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to the annotated type ``tp`` or raise ``ConfigError``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


@dataclasses.dataclass
class Config:
    """Base class: subclasses are dataclasses whose fields are declared with :func:`param`."""

    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    sources: ClassVar[Mapping[str, str]] = {}
    """Source (a key of :data:`SOURCES`) of fields this class inherits, for this class and its
    subclasses; fields declared here carry theirs in :func:`param`."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            where = f"{type(self).__qualname__}.{f.name}"
            value = _coerce(getattr(self, f.name), hints[f.name], where)
            _check_bounds(value, f.metadata, where)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise ``ConfigError``."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def resolve(cls, preset: str | None = None,
                overrides: Mapping[str, Any] | None = None) -> "Config":
        """Defaults, then the preset's scaling, then user overrides (YAML, ``--set``)."""
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values: dict[str, Any] = dict(cls.presets.get(preset, {})) if preset else {}
        values.update(overrides or {})
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            close = difflib.get_close_matches(unknown[0], cls.field_names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{cls.__qualname__} has no field {', '.join(map(repr, unknown))}; "
                              f"{hint}fields are: {', '.join(cls.field_names())}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def source(cls, name: str) -> str | None:
        """Where the default of field ``name`` comes from (a key of :data:`SOURCES`), or None
        where unmarked: the nearest class in the MRO that marks it (``sources``) or declares
        it (``param(source=...)``) decides."""
        if name not in cls.field_names():
            raise ConfigError(f"{cls.__qualname__} has no field {name!r}")
        for klass in cls.__mro__:
            marked = vars(klass).get("sources", {})
            if name in marked:
                return marked[name]
            if name in vars(klass).get("__annotations__", {}):
                return klass.__dataclass_fields__[name].metadata.get("source")
        return None

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(name, type, default, description) for every field, for ``--help`` and docs; the
        description ends with the default's source in brackets where it is marked."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            source = cls.source(f.name)
            text = f.metadata.get("help", "") + (f" [{source}]" if source else "")
            rows.append((f.name, _type_name(hints[f.name]), default, text))
        return rows


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _check_bounds(value: Any, meta: Mapping[str, Any], where: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: must be one of {list(choices)}, got {value!r}")
    checks = (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<"))
    for key, ok, sign in checks:
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{where}: must be {sign} {bound}, got {value!r}")


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (from ``--set``) into a key path and a YAML-typed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. world.resolution=32), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return [k for k in key.strip().split(".") if k], value


def set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    """Assign ``value`` at the nested key ``path`` in ``tree``, creating mappings on the way."""
    node = tree
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {key!r} is a value, not a section")
        node = child
    node[path[-1]] = value


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML config file; its top level must be a mapping."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the --config path") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data
