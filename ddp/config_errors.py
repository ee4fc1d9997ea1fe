"""Turn YAML and pydantic failures into lines a user can act on: file, key path, what was expected."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class ConfigError(Exception):
    """A user's configuration is wrong. `problems` are complete, printable lines."""

    def __init__(self, source: str | Path, problems: Iterable[str]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        super().__init__("\n".join(f"{self.source}: {p}" for p in self.problems))


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the schema in ddp/config.py)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"kind: expected one of {err['ctx']['expected_tags']} (got {err['ctx']['tag']!r})"
    if kind == "union_tag_not_found":
        return "kind: required key is missing (it selects the schema of this section)"
    if kind == "string_pattern_mismatch" and ":" in str(err["ctx"].get("pattern", "")):
        return f"expected an import path like package.module:factory (got {got!r})"
    message = str(err["msg"])
    # Pydantic says "Input should be ..."; say "expected ..." and show what was given.
    if message.startswith("Input should be "):
        message = "expected " + message[len("Input should be ") :]
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if got is not None and not isinstance(got, dict | list):
        message += f" (got {got!r})"
    return message


def _strip_union_tags(loc: tuple[int | str, ...], tags: frozenset[str]) -> tuple[int | str, ...]:
    # Discriminated unions add the tag ("synthetic", "digits", ...) to the location; users never typed it.
    return tuple(part for i, part in enumerate(loc) if not (i > 0 and isinstance(part, str) and part in tags))


def format_validation_error(
    source: str | Path, exc: ValidationError, union_tags: Iterable[str] = ()
) -> ConfigError:
    tags = frozenset(union_tags)
    lines = [
        f"{_key_path(_strip_union_tags(tuple(err['loc']), tags))}: {_describe(dict(err))}"
        for err in exc.errors()
    ]
    return ConfigError(source, lines)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; every failure names the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(file, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, [f"{where}invalid YAML: {problem}"]) from None
    if data is None:
        raise ConfigError(file, ["file is empty; expected a mapping of settings"])
    if not isinstance(data, dict):
        raise ConfigError(file, [f"expected a mapping at the top level, got {type(data).__name__}"])
    return data
