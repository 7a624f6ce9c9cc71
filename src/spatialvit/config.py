"""One configuration system: typed, frozen dataclasses whose fields carry their own help text.

A config class is a frozen ``@dataclass`` deriving from :class:`Config`, with fields declared by :func:`option`
(default + help, once). The same declaration gives:

- checked construction (types, then the class's own :meth:`Config.validate`),
- ``from_dict`` / ``from_yaml`` (unknown keys named with close matches; nested configs from nested mappings),
- command-line flags (:func:`add_arguments`) whose help shows the default and a metavar, and the values the user
  gave (:func:`given`) — so YAML, the CLI and the library share one default and one help text per setting.

Precedence everywhere: the dataclass defaults, then a YAML file, then explicit overrides (flags).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ._names import UnknownNameError, unknown_name

C = TypeVar("C", bound="Config")
_METAVARS = {int: "N", float: "X", str: "TEXT"}
AUTO = "auto"  # the device (and the resume of a run) the tool chooses itself
DEFAULT_DATA = "digits"  # the bundled dataset every command uses unless told otherwise
DEVICES = ("cpu", "cuda")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A config field: its ``default`` (or ``factory`` for mutable ones), ``help``, and for the command line an
    optional ``metavar`` and ``parse`` (text -> value; default: from the field's type)."""
    meta = {"help": help, "metavar": metavar, "parse": parse}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """The evaluated annotations of a config class, computed once per class (every construction checks types)."""
    return typing.get_type_hints(cls)


class Config:
    """Base of every config dataclass: type-checked on construction, read from dicts and YAML, written back."""

    def __post_init__(self) -> None:
        hints = type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check_type(f.name, getattr(self, f.name), hints[f.name])
        self.validate()

    def validate(self) -> None:
        """Value checks beyond types (subclasses raise ``ValueError`` naming the key)."""

    @classmethod
    def from_dict(cls: type[C], values: Any, base: C | None = None) -> C:
        """A config from the mapping ``values`` on top of ``base`` (default: the defaults); nested configs take
        nested mappings; unknown keys raise ``KeyError`` with close matches."""
        if not isinstance(values, dict):
            raise ValueError(f"a {cls.__name__} must be a mapping of keys to values, got {type(values).__name__}")
        base = base if base is not None else cls()
        hints = type_hints(cls)
        valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        changes = {}
        for key, value in values.items():
            if key not in valid:
                nested = _misplaced(base, key)
                if nested:
                    raise UnknownNameError(f"config key {key!r} is a key of {nested}: write it under {nested}: "
                                           f"({nested}: {{{key}: ...}})")  # fmt: skip
                raise unknown_name("config key", str(key), valid, f"Valid keys: {', '.join(valid)}.")
            current = getattr(base, key)
            if isinstance(current, Config) and isinstance(value, dict):
                try:
                    value = type(current).from_dict(value, current)
                except ConfigTypeError as err:
                    raise ConfigTypeError(f"{key}.{err.key}", err.value, err.expected, qualified=True) from None
                except (KeyError, ValueError) as err:
                    raise _in_context(err, f"in {key}") from None
            changes[key] = _normalise(value, hints[key])
        return dataclasses.replace(base, **changes)  # type: ignore[type-var]

    @classmethod
    def from_yaml(cls: type[C], path: str | os.PathLike, base: C | None = None) -> C:
        """Read a YAML mapping of config keys (an empty file gives ``base``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"config file {str(path)!r} is not valid YAML: {err}") from err
        try:
            return cls.from_dict(values or {}, base)
        except (KeyError, ValueError) as err:
            raise _in_context(err, f"in {str(path)!r}") from err

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_yaml(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def describe(cls) -> dict[str, tuple[Any, str]]:
        """``{key: (default, help)}`` for every key, in declaration order."""
        return {f.name: (_default(f), f.metadata.get("help", "")) for f in dataclasses.fields(cls)}  # type: ignore


class ConfigTypeError(ValueError):
    """A config value of the wrong type; nested keys are named ``outer.inner``."""

    def __init__(self, key: str, value: Any, expected: str, qualified: bool = False) -> None:
        self.key, self.value, self.expected = key, value, expected
        name = (
            f"{key} must be {'an' if expected[0] in 'aeiou' else 'a'}" if qualified else f"config key {key!r} must be"
        )
        super().__init__(f"{name} {expected}, got {value!r} ({type(value).__name__})")


def _misplaced(config: Config, key: Any) -> str:
    """The nested config of ``config`` that has the key ``key`` (a top-level ``epochs:`` in a study YAML belongs
    under ``train:``), or ``""``."""
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        nested = getattr(config, f.name)
        if isinstance(nested, Config) and key in {g.name for g in dataclasses.fields(nested)}:  # type: ignore[arg-type]
            return f.name
    return ""


def _in_context(err: Exception, where: str) -> Exception:
    """``err`` (a KeyError or ValueError) with ``where`` in front of its message, of the same kind."""
    kind = UnknownNameError if isinstance(err, KeyError) else ValueError
    return kind(f"{where}: {err}")


def check_type(name: str, value: Any, hint: Any) -> None:
    """Raise :class:`ConfigTypeError` unless ``value`` fits the annotation ``hint`` (an int passes for a float, a
    bool for neither; list elements are checked too)."""
    if not _fits(value, hint):
        raise ConfigTypeError(name, value, _describe(hint))


def _options(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _fits(value: Any, hint: Any) -> bool:
    for option_ in _options(hint):
        base = typing.get_origin(option_) or option_
        if option_ is Any or (option_ is type(None) and value is None):
            return True
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if base in (str, bool, dict) and isinstance(value, base):
            return True
        if base is list and isinstance(value, list):
            (item,) = typing.get_args(option_) or (Any,)
            if all(_fits(v, item) for v in value):
                return True
        if isinstance(base, type) and issubclass(base, Config) and isinstance(value, base):
            return True
    return False


def _describe(hint: Any) -> str:
    names = []
    for option_ in _options(hint):
        base = typing.get_origin(option_) or option_
        args = typing.get_args(option_)
        if option_ is type(None):
            names.append("null")
        elif base is list and args:
            names.append(f"a list of {_describe(args[0])}")
        else:
            names.append(getattr(base, "__name__", str(base)))
    return " or ".join(names)


def _normalise(value: Any, hint: Any) -> Any:
    """A tuple for a list key becomes a list; a string for a float key a float (YAML 1.1 reads ``1e-3``, without a
    dot, as a string)."""
    if isinstance(value, tuple) and any(typing.get_origin(o) is list for o in _options(hint)):
        return list(value)
    if isinstance(value, str) and float in _options(hint):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


# ------------------------------------------------------------------------------------------------ command line


def flag_name(key: str) -> str:
    """``--key-name`` for a config key."""
    return "--" + key.replace("_", "-")


def show_default(value: Any) -> str:
    """A default as a user types it: ``on``/``off``, ``none``, comma lists."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[Config],
    *,
    keys: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    defaults: Config | None = None,
    dest_prefix: str = "",
    flags: dict[str, str] | None = None,
) -> None:
    """One flag per config key of ``cls`` (``keys`` only, without ``skip``; mappings have no flag). Flags default to
    "not given" (:func:`given` collects the rest); the help shows the default of ``defaults`` (or the class).
    ``dest_prefix`` keeps the keys of a nested config apart (``train.`` for a study's ``--epochs``); ``flags`` names
    a key's flag where the key's own name would be unclear (``{"limit": "--sweep-limit"}``)."""
    hints = type_hints(cls)
    wanted = None if keys is None else set(keys)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if (wanted is not None and f.name not in wanted) or f.name in skip:
            continue
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        hint = hints[f.name]
        flag = (flags or {}).get(f.name, flag_name(f.name))
        if hint is bool:
            parser.add_argument(
                flag,
                dest=dest_prefix + f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{help_text} (default: {show_default(default)})",
            )
            continue
        parse, metavar = _parser(hint, f)
        if parse is None:
            continue  # mappings and nested configs: YAML only
        parser.add_argument(
            flag,
            dest=dest_prefix + f.name,
            type=parse,
            metavar=metavar,
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {show_default(default)})",
        )


def given(args: argparse.Namespace, cls: type[Config], dest_prefix: str = "") -> dict[str, Any]:
    """The config keys of ``cls`` that were given on the command line (flags of :func:`add_arguments` with the same
    ``dest_prefix``), with their values."""
    names = {dest_prefix + f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k[len(dest_prefix) :]: v for k, v in vars(args).items() if k in names}


def from_args(
    args: argparse.Namespace, cls: type[C], *, nested: Iterable[str] = (), config_file: str | None = None
) -> C:
    """The config of a command: the defaults of ``cls``, then the YAML ``config_file``, then the flags given
    (:func:`given`); each key of ``nested`` names a nested config whose flags were added with the ``KEY.`` prefix."""
    base = cls.from_yaml(config_file) if config_file else cls()
    values = given(args, cls)
    for key in nested:
        values[key] = given(args, type(getattr(base, key)), dest_prefix=f"{key}.")
    return cls.from_dict(values, base)


def _parser(hint: Any, f: dataclasses.Field) -> tuple[Callable[[str], Any] | None, str]:
    """The argparse ``type`` and metavar of a field (``None``: no flag)."""
    options = [o for o in _options(hint) if o is not type(None)]
    optional = type(None) in _options(hint)
    base = typing.get_origin(options[0]) or options[0]
    if f.metadata.get("parse") is not None:
        parse = f.metadata["parse"]
    elif base is list:
        (item,) = typing.get_args(options[0]) or (str,)
        item = item if item in (int, float) else str
        parse = _list_parser(item)
    elif base in (int, float, str):
        parse = base
    else:
        return None, ""
    metavar = f.metadata.get("metavar") or ("A,B,..." if base is list else _METAVARS.get(base, f.name.upper()))

    def parse_value(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return None
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{text!r} is not {_describe(hint)} ({err})") from None

    parse_value.__name__ = getattr(base, "__name__", "value")
    return parse_value, metavar


def _list_parser(item: type) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

    return parse
