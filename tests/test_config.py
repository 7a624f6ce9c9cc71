"""The shared config system: one declaration gives checked construction, YAML/dict loading with nested configs,
and command-line flags whose help shows the default."""

import argparse
from dataclasses import dataclass

import pytest

from spatialvit.config import Config, ConfigTypeError, add_arguments, given, option


@dataclass(frozen=True)
class Inner(Config):
    repeats: int = option(2, "draws per setting")
    ratios: list[float] = option(help="fractions", factory=lambda: [0.25, 0.5])


@dataclass(frozen=True)
class Outer(Config):
    name: str = option("run", "a name")
    size: int | None = option(None, "a size (none: native)")
    fast: bool = option(False, "go fast")
    inner: Inner = option(help="nested settings", factory=Inner)

    def validate(self) -> None:
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")


def test_from_dict_nested_tuples_and_errors():
    cfg = Outer.from_dict({"size": 3, "inner": {"ratios": (0.1,)}})
    assert cfg == Outer(size=3, inner=Inner(ratios=[0.1]))  # a tuple for a list key becomes a list
    with pytest.raises(KeyError, match=r"unknown config key 'nam'\. Did you mean: name\?"):
        Outer.from_dict({"nam": "x"})
    with pytest.raises(ConfigTypeError, match=r"inner\.repeats must be an int, got 1\.5"):
        Outer.from_dict({"inner": {"repeats": 1.5}})
    with pytest.raises(KeyError, match="in inner: unknown config key 'repeat'"):
        Outer.from_dict({"inner": {"repeat": 1}})
    with pytest.raises(ValueError, match="size must be positive"):
        Outer(size=0)
    with pytest.raises(ConfigTypeError, match="'size' must be int or null"):
        Outer(size="big")


def test_flags_from_the_declaration(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Outer)
    add_arguments(parser.add_argument_group("inner"), Inner, dest_prefix="inner.")
    args = parser.parse_args(["--size", "none", "--fast", "--ratios", "0.1,0.2"])
    assert given(args, Outer) == {"size": None, "fast": True}
    assert given(args, Inner, dest_prefix="inner.") == {"ratios": [0.1, 0.2]}
    assert given(parser.parse_args([]), Outer) == {}  # nothing given: the YAML or defaults stand
    parser.print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert "--size N a size (none: native) (default: none)" in text
    assert "--fast, --no-fast go fast (default: off)" in text
    assert "--ratios A,B,... fractions (default: 0.25,0.5)" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "ten"])
